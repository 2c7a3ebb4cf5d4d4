"""Rooms booked ahead through the API: the bounds of `startsAt` and `expiresAt` on create (422
invalid_schedule, nothing made), the status a room shows before and after its start, from Redis and
from Postgres, the listing by status, tickets before a room opens (409 room_not_started), and
Idempotency-Keys with a schedule. Changes to a schedule are test_schedule_changes.py's."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from common.redis.keys import room_key
from common.settings import Settings
from common.tickets.keys import write_new_key
from tests.support.rooms import create
from tests.support.waiting import eventually

# Only HTTP and the standalone server's keys: the room object on every topology is test_join_schedule.py's.
pytestmark = pytest.mark.one_topology

# Bounds of the test's app, small enough to reach and unlike the defaults, so a detail naming them
# shows it reads the settings.
SCHEDULE_DAYS = 2
ROOM_SECONDS = 3600
TTL_SECONDS = 600


@pytest.fixture
def early_join_seconds() -> int:
    return 0  # a room opens at its start (a test parametrizes it to change it)


@pytest.fixture
def settings(settings_with, early_join_seconds: int, tmp_path: Path) -> Settings:
    write_new_key(tmp_path / "key.pem")
    return settings_with(
        max_schedule_days=SCHEDULE_DAYS,
        max_room_seconds=ROOM_SECONDS,
        room_ttl_seconds=TTL_SECONDS,
        early_join_seconds=early_join_seconds,
        ticket_keys=str(tmp_path / "key.pem"),
    )


@pytest.fixture
def host(new_host) -> dict[str, str]:
    return {"X-User-Id": str(new_host())}  # its rooms are deleted after the test


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def rows_of(db, host: dict[str, str]) -> tuple[int, int]:
    """How many rooms and Idempotency-Keys Postgres holds for `host`."""
    host_id = uuid.UUID(host["X-User-Id"])
    rooms = await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", host_id)
    keys = await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE host_id = $1", host_id)
    return rooms, keys


SECOND = timedelta(seconds=1)
MS = timedelta(milliseconds=1)
PAST = "startsAt must be at most 60 s in the past"
AHEAD = f"startsAt must be at most {SCHEDULE_DAYS} days ahead (ROOMS_MAX_SCHEDULE_DAYS)"
NOT_AFTER = "expiresAt must be after startsAt"
TOO_SOON = "expiresAt must be at least 10 s from now"
TOO_LONG = f"expiresAt must be at most {ROOM_SECONDS} s after startsAt (ROOMS_MAX_ROOM_SECONDS)"
LATER = timedelta(minutes=10)  # a start comfortably ahead


@pytest.mark.parametrize(
    ("schedule", "detail"),
    [
        (lambda now: {"startsAt": now - 70 * SECOND}, PAST),
        (lambda now: {"startsAt": now + timedelta(days=SCHEDULE_DAYS, minutes=1)}, AHEAD),
        (lambda now: {"startsAt": now + LATER, "expiresAt": now + LATER}, NOT_AFTER),
        (lambda now: {"startsAt": now + LATER, "expiresAt": now + LATER - SECOND}, NOT_AFTER),
        (lambda now: {"expiresAt": now + 5 * SECOND}, TOO_SOON),
        (lambda now: {"startsAt": now + LATER, "expiresAt": now + 5 * SECOND}, TOO_SOON),
        (lambda now: {"startsAt": now + LATER, "expiresAt": now + LATER + ROOM_SECONDS * SECOND + MS}, TOO_LONG),
        (lambda now: {"expiresAt": now + (ROOM_SECONDS + 60) * SECOND}, TOO_LONG),  # from now, without a start
    ],
    ids=["start past", "start too far", "end at start", "end before start", "end too soon",
         "end too soon, start later", "too long", "too long from now"],
)  # fmt: skip
async def test_a_schedule_out_of_bounds_makes_nothing(client, host, db, schedule, detail) -> None:
    body = {k: v.isoformat() for k, v in schedule(datetime.now(UTC)).items()}

    refused = await client.post("/rooms", headers=host | {"Idempotency-Key": "k1"}, json=body | {"maxParticipants": 3})

    assert refused.status_code == 422, refused.text
    assert refused.json() == {"error": "invalid_schedule", "detail": detail}
    assert await rows_of(db, host) == (0, 0)  # no room, and the key is not claimed
    assert (await client.get("/rooms", headers=host)).json()["rooms"] == []


@pytest.mark.parametrize(
    ("schedule", "length"),
    [
        (lambda now: {"startsAt": now + LATER, "expiresAt": now + LATER + ROOM_SECONDS * SECOND}, ROOM_SECONDS),
        (lambda now: {"startsAt": now - 50 * SECOND, "expiresAt": now + (ROOM_SECONDS - 50) * SECOND}, ROOM_SECONDS),
        (lambda now: {"startsAt": now + timedelta(days=SCHEDULE_DAYS) - LATER}, TTL_SECONDS),
        (lambda now: {"startsAt": now + LATER, "expiresAt": now + LATER + MS}, 0.001),
        (lambda now: {"expiresAt": now + 20 * SECOND}, None),
    ],
    ids=["longest", "started within the skew", "latest start", "shortest", "soonest end"],
)
async def test_a_schedule_within_bounds_is_kept_to_the_microsecond(client, host, db, schedule, length) -> None:
    asked = schedule(datetime.now(UTC))

    room = await create(client, host, **{k: v.isoformat() for k, v in asked.items()})

    for field, value in asked.items():
        assert moment(room[field]) == value
    if length is not None:
        assert (moment(room["expiresAt"]) - moment(room["startsAt"])).total_seconds() == length
    expected_status = "scheduled" if "startsAt" in asked and asked["startsAt"] > datetime.now(UTC) else "active"
    assert room["status"] == expected_status
    stored = await db.fetchrow("SELECT starts_at, expires_at FROM meetings WHERE room_id = $1", room["roomId"])
    assert (stored["starts_at"], stored["expires_at"]) == (moment(room["startsAt"]), moment(room["expiresAt"]))


@pytest.mark.parametrize(
    "body",
    [{"startsAt": "2030-01-01T00:00:00"}, {"expiresAt": "2030-01-01T00:00:00"}, {"startsAt": 1893456000},
     {"expiresAt": True}, {"startsAt": "next tuesday"}, {"expiresAt": ["2030-01-01T00:00:00Z"]}],
    ids=["start without offset", "end without offset", "start a number", "end a boolean", "start no time",
         "end a list"],
)  # fmt: skip
async def test_a_time_that_names_no_instant_is_a_bad_body(client, host, db, body) -> None:
    refused = await client.post("/rooms", headers=host, json=body)

    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_body"
    assert f"$.{next(iter(body))}" in refused.json()["detail"]
    assert await rows_of(db, host) == (0, 0)


SOON = timedelta(seconds=3)  # long enough to see a room scheduled on a slow machine, short to keep the file quick


@pytest.mark.parametrize("source", ["redis", "postgres"])
async def test_a_booked_room_is_scheduled_until_its_start_then_active(client, host, redis_client, source) -> None:
    starts_at = datetime.now(UTC) + SOON
    code = (await create(client, host, startsAt=starts_at.isoformat()))["roomId"]

    async def status(headers: dict[str, str]) -> str:
        if source == "postgres":
            await redis_client.delete(room_key(code))
        asked_at = datetime.now(UTC)
        response = await client.get(f"/rooms/{code}", headers=headers)
        answered_at = datetime.now(UTC)
        assert response.status_code == 200, response.text
        view = response.json()
        assert moment(view["startsAt"]) == starts_at
        assert ("hostId" in view) == bool(headers)  # the public view leaves the hosts out, not the schedule
        if source == "postgres":
            assert await redis_client.exists(room_key(code))  # read from Postgres, and cached again
        # By the same clock as the API's: scheduled only before the start, active only after it.
        assert view["status"] == "scheduled" or answered_at >= starts_at, view
        assert view["status"] == "active" or asked_at < starts_at, view
        return str(view["status"])

    assert await status(host) == "scheduled"
    assert await status({}) == "scheduled"

    async def started() -> bool:
        return await status(host) == "active"

    await eventually(started, within=SOON.total_seconds() + 30, what=f"{code} active after its start")
    assert await status({}) == "active"


async def test_the_list_by_status(client, host) -> None:
    booked = (await create(client, host, startsAt=(datetime.now(UTC) + LATER).isoformat()))["roomId"]
    active = (await create(client, host))["roomId"]
    ended = (await create(client, host))["roomId"]
    assert (await client.delete(f"/rooms/{ended}", headers=host)).status_code == 204

    async def listed(status: str) -> dict[str, str]:
        response = await client.get("/rooms", headers=host, params={"status": status})
        assert response.status_code == 200, response.text
        return {room["roomId"]: room["status"] for room in response.json()["rooms"]}

    assert await listed("scheduled") == {booked: "scheduled"}
    assert await listed("active") == {active: "active"}
    assert await listed("ended") == {ended: "ended"}
    assert await listed("all") == {booked: "scheduled", active: "active", ended: "ended"}


def claims_of(ticket: str) -> dict[str, Any]:
    """The claims of a compact JWS (its signature is test_tickets.py's)."""
    payload = ticket.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize(
    ("early_join_seconds", "starts_in"), [(0, 60), (120, 180)], ids=["at its start", "before its start"]
)
async def test_no_ticket_before_a_room_opens(client, host, starts_in) -> None:
    starts_at = datetime.now(UTC) + timedelta(seconds=starts_in)
    code = (await create(client, host, startsAt=starts_at.isoformat()))["roomId"]

    refused = await client.post(f"/rooms/{code}/tickets", headers=host)

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "room_not_started"
    assert moment(refused.json()["startsAt"]) == starts_at
    # Seconds until it opens to joins (its start, less the early join): 60, less this test's time.
    assert 50 <= int(refused.headers["retry-after"]) <= 60


@pytest.mark.parametrize("early_join_seconds", [120])
async def test_the_early_join_allowance_issues_tickets_that_end_with_the_room(client, host) -> None:
    starts_at = datetime.now(UTC) + timedelta(seconds=60)
    ends_at = starts_at + timedelta(seconds=30, milliseconds=500)  # before a ticket's own 120 s are up
    room = await create(client, host, startsAt=starts_at.isoformat(), expiresAt=ends_at.isoformat())
    before = int(time.time())

    issued = await client.post(f"/rooms/{room['roomId']}/tickets", headers=host)

    assert issued.status_code == 201, issued.text
    claims = claims_of(issued.json()["ticket"])
    assert (claims["room"], claims["role"]) == (room["roomId"], "host")
    assert before <= claims["nbf"] < starts_at.timestamp()  # valid now, before the room's start
    assert claims["exp"] == int(ends_at.timestamp())  # whole seconds, rounded down: never past the end
    assert moment(issued.json()["expiresAt"]).timestamp() == claims["exp"]


async def test_an_idempotency_key_claims_the_instants_not_their_spelling(client, host, db) -> None:
    starts_at = (datetime.now(UTC) + LATER).replace(microsecond=250_000)
    expires_at = starts_at + timedelta(minutes=30)
    keyed = host | {"Idempotency-Key": "booking-1"}
    body = {"startsAt": starts_at.isoformat(), "expiresAt": expires_at.isoformat()}

    first = await client.post("/rooms", headers=keyed, json=body)
    again = await client.post("/rooms", headers=keyed, json=body)
    india = timezone(timedelta(hours=5, minutes=30))
    respelled = await client.post(
        "/rooms",
        headers=keyed,
        json={"startsAt": starts_at.astimezone(india).isoformat(), "expiresAt": expires_at.isoformat()},
    )
    moved = await client.post("/rooms", headers=keyed, json=body | {"startsAt": (starts_at + SECOND).isoformat()})
    no_end = await client.post("/rooms", headers=keyed, json={"startsAt": starts_at.isoformat()})

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    for replay in (again, respelled):
        assert replay.status_code == 201, replay.text
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()
    for reused in (moved, no_end):
        assert reused.status_code == 422, reused.text
        assert reused.json()["error"] == "idempotency_key_reused"
    assert await rows_of(db, host) == (1, 1)


async def test_a_retry_answers_the_room_it_made_once_its_times_are_out_of_bounds(client, host, db) -> None:
    # An end 11 s away is within bounds when asked, and 2 s later no longer is: the retry of that same
    # request, lost answer and all, must still get the room it made rather than 422.
    keyed = host | {"Idempotency-Key": "booking-2"}
    body = {"expiresAt": (datetime.now(UTC) + 11 * SECOND).isoformat()}
    first = await client.post("/rooms", headers=keyed, json=body)
    assert first.status_code == 201, first.text

    async def past_the_bound() -> bool:
        return datetime.now(UTC) > moment(body["expiresAt"]) - 10 * SECOND + 100 * MS

    await eventually(past_the_bound, within=30, what="the end less than 10 s away")
    retry = await client.post("/rooms", headers=keyed, json=body)
    anew = await client.post("/rooms", headers=host | {"Idempotency-Key": "booking-3"}, json=body)

    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["roomId"] == first.json()["roomId"]
    assert (anew.status_code, anew.json()["detail"]) == (422, TOO_SOON)  # the bound holds for a new request
    assert await rows_of(db, host) == (1, 1)
