"""The API description against the server: schemathesis sends what the description allows (and what it
forbids) to the real app on real Postgres and Redis, on every operation with every check, and follows
the description's links from a created room to the operations on it. It must find nothing.

Runs as `schemathesis run --checks all` would, all phases (examples, coverage, fuzzing, stateful), in
this process. Derandomized (the same requests every run) and without Hypothesis's example database, so
a run is reproducible and leaves no files behind.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
import redis
import schemathesis
from schemathesis.engine import events, from_schema
from schemathesis.python import asgi

from api.app import create_app
from api.cursors import encode_cursor
from common.tickets.keys import write_new_key

pytestmark = pytest.mark.one_topology

# The host every request of a run acts as: the rooms one operation makes are the next one's to change.
CALLER = str(uuid.uuid4())

# Sent as every request's `cursor`: a string of cursor characters is no page position unless this API
# returned it (the API answers 400 otherwise), which the description says in words, no pattern can.
# A room list's position is a moment and a room's id; a history's, a moment and an event's version.
A_CURSOR = encode_cursor(datetime(2026, 11, 25, 10, tzinfo=UTC), uuid.UUID(int=1))
A_HISTORY_CURSOR = encode_cursor(datetime(2026, 11, 25, 10, tzinfo=UTC), 1)
# A room's sessions' position is a moment alone: their starts are unique in a room.
A_SESSIONS_CURSOR = encode_cursor(datetime(2026, 11, 25, 10, tzinfo=UTC), "")

# Schemathesis's defaults, and 410: a room that has ended. Like a 404 it is about the room, not the
# request: the same well-formed request was accepted while the room was live.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "410", "429"]

# Schemathesis's defaults for a refused request, and 413: a body over ROOMS_MAX_BODY_BYTES is refused
# before it is read, whatever else is wrong with it.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

CONFIG = {
    "checks": {
        "enabled": True,
        "positive_data_acceptance": {"expected-statuses": ACCEPTED},
        "negative_data_rejection": {"expected-statuses": REFUSED},
    },
    "generation": {"max-examples": 50, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"max-steps": 6}},
    "auth": {"openapi": {"userId": {"api_key": CALLER}}},
    "parameters": {"query.cursor": A_CURSOR},
    # Each entry names its one operation (`include-name`): `include-path` beside `include-method` would
    # select every operation matching either.
    "operations": [
        # An Idempotency-Key used before with other options answers 422 idempotency_key_reused (the
        # status the IETF Idempotency-Key draft gives): a rule across requests, which no schema can state.
        # Metadata over ROOMS_METADATA_MAX_BYTES as compact JSON answers 413 metadata_too_large: a bound
        # on an encoded size, which JSON Schema cannot state (the description says it in words).
        # `cohostIds` naming the host, or one user twice in two cases, answers 400 invalid_cohosts: the
        # first is a rule between the body and the caller, and `uniqueItems` compares strings, not UUIDs.
        # A `startsAt` or `expiresAt` out of its bounds answers 422 invalid_schedule: the bounds are
        # relative to now, to the room's other moment and to settings, which JSON Schema cannot state.
        {
            "include-name": "POST /rooms",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "413", "422"]}},
        },
        {
            "include-name": "PATCH /rooms/{room_id}",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "413", "422"]}},
        },
        # `from` must not be after `to`, and the range at most ROOMS_STATS_MAX_DAYS long: rules between
        # two parameters, or one and today, which JSON Schema cannot state, so requests that break them
        # are well formed to it; the API refuses them (400 invalid_date_range, as its description says).
        {"include-path": "/stats/daily", "checks": {"positive_data_acceptance": {"enabled": False}}},
        # Ending a room (DELETE) adds `room.ended` to its history rather than removing it: the history
        # outlives the room on purpose, which this check takes for a deleted resource still served.
        {
            "include-name": "GET /rooms/{room_id}/history",
            "checks": {"use_after_free": {"enabled": False}},
            "parameters": {"query.cursor": A_HISTORY_CURSOR},
        },
        # The same of a room's sessions: they outlive the room, as its history does.
        {
            "include-name": "GET /rooms/{room_id}/sessions",
            "checks": {"use_after_free": {"enabled": False}},
            "parameters": {"query.cursor": A_SESSIONS_CURSOR},
        },
    ],
}


def test_the_server_answers_as_its_description_says(settings_with, tmp_path) -> None:
    # No rate limits: a run asks for hundreds of unknown codes and makes dozens of rooms and tickets a
    # minute as one client, and past a limit every answer would be the 429 rather than the behaviour
    # under test (the limits have tests of their own, tests/integration/test_abuse.py, test_tickets.py).
    # A ticket key, so that tickets are issued rather than answered 503 not configured.
    write_new_key(tmp_path / "ticket-key.pem")
    settings = settings_with(
        miss_limit_per_minute=0,
        create_limit_per_minute=0,
        ticket_limit_per_minute=0,
        ticket_keys=str(tmp_path / "ticket-key.pem"),
    )
    app = create_app(settings)
    first_minute = int(time.time() // 60)
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG))
    try:
        found = list(from_schema(schema).execute())
    finally:
        # Schemathesis started the app (its lifespan) on first use: stop it, closing its pools, while
        # the servers are still there.
        asgi.shutdown_lifespans()
        _forget_anonymous_misses(settings.redis_url, first_minute)
    failures = [
        event
        for event in found
        if isinstance(event, events.ScenarioFinished) and event.status not in ("success", "skip")
    ]
    errors = [event for event in found if isinstance(event, (events.NonFatalError, events.FatalError))]
    report = [_describe(event) for event in failures] + [repr(event) for event in errors]
    assert not report, "\n\n".join(report)


def _forget_anonymous_misses(redis_url: str, first_minute: int) -> None:
    """The run asks for hundreds of unknown codes as one anonymous client (its peer address), counted
    though its app limits nothing. Left in Redis, the count would put the next tests that ask
    anonymously from that address over their limit (429) until the clock minute ends."""
    prefix = "ratelimit:miss:"
    last_minute = int(time.time() // 60)
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match=f"{prefix}*"):
            name = key.decode()
            who, _, minute = name[len(prefix) :].rpartition(":")
            try:
                uuid.UUID(who)
                continue  # a user's count, not the anonymous one
            except ValueError:
                pass
            if minute.isdigit() and first_minute <= int(minute) <= last_minute:
                client.delete(key)


def _describe(event: events.ScenarioFinished) -> str:
    lines = [f"{event.phase} {event.recorder.label}: {event.status}"]
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.failure_info is not None:
                case = event.recorder.cases[case_id].value
                interaction = event.recorder.interactions.get(case_id)
                status = interaction.response.status_code if interaction and interaction.response else None
                lines.append(
                    f"  {check.name}: {check.failure_info.failure.title}: {check.failure_info.failure.message}"
                )
                sent = f"query={case.query} headers={case.headers} body={case.body!r}"
                lines.append(f"    {case.method} {case.formatted_path} {sent} -> {status}")
    return "\n".join(lines)


# -- the facts themselves, each named, so that a regression says which one went ------------------------

ROOM_PATHS = ("/rooms/{room_id}", "/rooms/{room_id}/history", "/rooms/{room_id}/sessions", "/rooms/{room_id}/tickets")
NEEDS_CALLER = {
    ("/rooms", "post"),
    ("/rooms", "get"),
    ("/rooms/{room_id}", "patch"),
    ("/rooms/{room_id}", "delete"),
    ("/rooms/{room_id}/history", "get"),
    ("/rooms/{room_id}/sessions", "get"),
    ("/rooms/{room_id}/participants", "get"),
    ("/rooms/{room_id}/participants/{participant_id}", "delete"),
    ("/stats/daily", "get"),
    ("/rooms/{room_id}/tickets", "post"),
}


def parameter(operation: dict, name: str) -> dict:
    return next(p for p in operation["parameters"] if p["name"] == name)


async def test_the_description_states_the_patterns_the_server_checks(client, settings) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for path in ROOM_PATHS:
        for operation in paths[path].values():
            assert parameter(operation, "room_id")["schema"]["pattern"] == "^[A-Za-z]{3}-?[A-Za-z]{4}-?[A-Za-z]{3}$"
    create, listing = paths["/rooms"]["post"], paths["/rooms"]["get"]
    assert parameter(create, "Idempotency-Key")["schema"] == {
        "type": "string",
        "pattern": "^[!-~]{1,255}$",
        "description": parameter(create, "Idempotency-Key")["description"],
    }
    body = create["requestBody"]["content"]["application/json"]["schema"]["properties"]["maxParticipants"]
    assert (body["minimum"], body["maximum"]) == (2, settings.max_participants_limit)
    assert parameter(listing, "limit")["schema"]["minimum"] == 1
    assert "maximum" not in parameter(listing, "limit")["schema"]  # above 100 is served as 100, not refused
    assert parameter(listing, "status")["schema"]["enum"] == ["scheduled", "active", "ended", "all"]
    history, sessions = paths["/rooms/{room_id}/history"]["get"], paths["/rooms/{room_id}/sessions"]["get"]
    for paged, most in ((listing, 100), (history, 500), (sessions, 500)):
        assert parameter(paged, "limit")["schema"]["minimum"] == 1
        assert f"served as {most}" in parameter(paged, "limit")["description"]
        assert parameter(paged, "cursor")["schema"] == {
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]+={0,2}$",  # at least one character: an empty cursor answers 400
            "description": parameter(paged, "cursor")["description"],
        }
    for name in ("from", "to"):
        schema = parameter(paths["/stats/daily"]["get"], name)["schema"]
        assert (schema["type"], schema["format"]) == ("string", "date")


async def test_the_caller_is_a_security_scheme_of_the_operations_that_need_one(client) -> None:
    description = (await client.get("/schema/openapi.json")).json()
    assert description["components"]["securitySchemes"]["userId"] == {
        "type": "apiKey",
        "name": "X-User-Id",
        "in": "header",
        "description": description["components"]["securitySchemes"]["userId"]["description"],
    }
    for path, item in description["paths"].items():
        for method, operation in item.items():
            assert all(p["name"] != "X-User-Id" for p in operation.get("parameters", []))
            if (path, method) in NEEDS_CALLER:
                assert operation["security"] == [{"userId": []}], (path, method)
                assert "401" in operation["responses"], (path, method)
            else:
                assert "security" not in operation, (path, method)


async def test_every_answer_is_described_with_its_headers(client) -> None:
    description = (await client.get("/schema/openapi.json")).json()
    assert description["components"]["headers"]["X-Request-Id"]["schema"] == {
        "type": "string",
        "pattern": r"^[\x21-\x7e]{1,128}$",
    }
    for path, item in description["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                headers = response.get("headers", {})
                assert headers["X-Request-Id"] == {"$ref": "#/components/headers/X-Request-Id"}, (path, method, status)
                if status >= "400" and path != "/health/ready":
                    schema = response["content"]["application/json"]["schema"]
                    # A ticket asked before the room opens says when it starts, and when to ask again.
                    not_started = (path, method, status) == ("/rooms/{room_id}/tickets", "post", "409")
                    body = "NotStartedBody" if not_started else "ErrorBody"
                    assert schema == {"$ref": f"#/components/schemas/{body}"}, (path, method, status)
                    retry_after = status in ("429", "503") or not_started
                    assert ("Retry-After" in headers) == retry_after, (path, method, status)
    created = description["paths"]["/rooms"]["post"]["responses"]["201"]
    assert created["headers"]["Location"]["required"] is True
    assert created["headers"]["Idempotent-Replayed"]["schema"] == {"type": "string", "enum": ["true"]}
    linked = {link["operationId"] for link in created["links"].values()}
    assert linked == {
        description["paths"][path][method]["operationId"]
        for path, method in [
            ("/rooms/{room_id}", "get"),
            ("/rooms/{room_id}", "patch"),
            ("/rooms/{room_id}", "delete"),
            ("/rooms/{room_id}/history", "get"),
            ("/rooms/{room_id}/sessions", "get"),
            ("/rooms/{room_id}/tickets", "post"),
        ]
    }
    assert all(link["parameters"] == {"room_id": "$response.body#/roomId"} for link in created["links"].values())
    ticket = description["paths"]["/rooms/{room_id}/tickets"]["post"]["responses"]["201"]
    assert ticket["headers"]["Cache-Control"]["schema"] == {"type": "string", "enum": ["no-store"]}
    assert ticket["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TicketView"}
    jwks = description["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"]
    assert jwks["headers"]["Cache-Control"]["required"] is True
    assert jwks["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JwkSet"}


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/rooms", "GET, OPTIONS, POST"),
        ("/rooms/abc-defg-hij", "DELETE, GET, OPTIONS, PATCH"),
        ("/rooms/abc-defg-hij/history", "GET, OPTIONS"),
        ("/rooms/abc-defg-hij/sessions", "GET, OPTIONS"),
        ("/rooms/abc-defg-hij/tickets", "OPTIONS, POST"),
        ("/.well-known/jwks.json", "GET, OPTIONS"),
        ("/stats/daily", "GET, OPTIONS"),
    ],
)
async def test_options_answers_the_methods_of_the_path(client, path, allow) -> None:
    response = await client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow
