"""Co-hosts and host transfer: who they are stored as (Postgres, the room object in Redis, the events),
what they may do, what only the host may do, and the listing by role, against real Postgres and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.db import rooms
from common.redis.keys import room_key
from common.tickets.keys import write_new_key
from tests.support.rooms import create, raw_data_of


def user() -> dict[str, str]:
    return {"X-User-Id": str(uuid.uuid4())}


def user_id(headers: dict[str, str]) -> str:
    return headers["X-User-Id"]


async def stored(db, code: str) -> tuple[str, list[str], int]:
    """The room's host, co-hosts and version as Postgres has them."""
    row = await db.fetchrow("SELECT host_id, cohost_ids, version FROM meetings WHERE room_id = $1", code)
    return str(row["host_id"]), [str(c) for c in row["cohost_ids"]], row["version"]


async def stored_limit(db, code: str) -> int:
    return int(await db.fetchval("SELECT max_participants FROM meetings WHERE room_id = $1", code))


async def test_cohosts_go_wherever_the_room_goes(client, host, db, redis_client, stream_name) -> None:
    alice, bob = user(), user()
    cohosts = [user_id(alice), user_id(bob)]
    body = await create(client, host, cohostIds=cohosts)
    code = body["roomId"]
    assert body["cohostIds"] == cohosts

    assert (await stored(db, code))[1] == cohosts
    assert json.loads(await redis_client.get(room_key(code)))["cohostIds"] == cohosts
    hit = await client.get(f"/rooms/{code}", headers=alice)  # a co-host's view names the co-hosts
    assert hit.json()["cohostIds"] == cohosts
    await redis_client.delete(room_key(code))
    assert (await client.get(f"/rooms/{code}", headers=alice)).json() == hit.json()  # from Postgres, the same body
    listed = (await client.get("/rooms", headers=host)).json()["rooms"]
    assert [room["cohostIds"] for room in listed] == [cohosts]
    (created,) = await raw_data_of(redis_client, stream_name, code, "room.created")
    assert created["cohostIds"] == cohosts

    replaced = await client.patch(f"/rooms/{code}", headers=host, json={"cohostIds": [user_id(bob)]})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["cohostIds"] == [user_id(bob)]
    assert json.loads(await redis_client.get(room_key(code)))["cohostIds"] == [user_id(bob)]
    cleared = await client.patch(f"/rooms/{code}", headers=host, json={"cohostIds": []})
    assert cleared.json()["cohostIds"] == []
    assert (await stored(db, code))[1:] == ([], 3)
    # The room object and the event leave the field out when there are none; clients always see it.
    assert "cohostIds" not in json.loads(await redis_client.get(room_key(code)))
    assert (await client.get(f"/rooms/{code}", headers=host)).json()["cohostIds"] == []
    updated = await raw_data_of(redis_client, stream_name, code, "room.updated")
    assert [data.get("cohostIds") for data in updated] == [[user_id(bob)], None]


@pytest.mark.one_topology
async def test_a_cohost_may_change_the_limit_and_metadata_and_end_the_room(client, host, db) -> None:
    cohost = user()
    code = (await create(client, host, cohostIds=[user_id(cohost)]))["roomId"]

    changed = await client.patch(
        f"/rooms/{code}", headers=cohost, json={"maxParticipants": 3, "metadata": {"topic": "retro"}}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["maxParticipants"], changed.json()["metadata"]) == (3, {"topic": "retro"})
    assert changed.json()["hostId"] == user_id(host)  # a co-host's change leaves the hosts as they were
    assert (await client.get(f"/rooms/{code}/history", headers=cohost)).status_code == 200

    assert (await client.delete(f"/rooms/{code}", headers=cohost)).status_code == 204
    assert (await client.get(f"/rooms/{code}")).status_code == 410
    assert (await client.delete(f"/rooms/{code}", headers=cohost)).status_code == 204  # again: no change
    assert (await client.patch(f"/rooms/{code}", headers=cohost, json={"maxParticipants": 4})).status_code == 410
    assert await db.fetchval("SELECT is_active FROM meetings WHERE room_id = $1", code) is False


@pytest.mark.one_topology
@pytest.mark.parametrize(
    "body",
    [
        {"cohostIds": []},
        {"hostId": "cohost"},
        {"hostId": "stranger"},
        {"maxParticipants": 3, "cohostIds": ["cohost"]},  # refused whole: the limit does not change either
    ],
    ids=["cohosts", "transfer to self", "transfer", "limit with cohosts"],
)
async def test_only_the_host_changes_the_hosts(client, host, db, redis_client, stream_name, body) -> None:
    cohost, stranger = user(), user()
    names = {"cohost": user_id(cohost), "stranger": user_id(stranger)}
    code = (await create(client, host, cohostIds=[user_id(cohost)]))["roomId"]
    before = await stored(db, code)
    cached = await redis_client.get(room_key(code))

    def named(value: Any) -> Any:
        return [names[v] for v in value] if isinstance(value, list) else names.get(value, value)

    response = await client.patch(f"/rooms/{code}", headers=cohost, json={k: named(v) for k, v in body.items()})

    assert response.status_code == 403, response.text
    assert response.json() == {
        "error": "not_room_host",
        "detail": "only the room's host may change its co-hosts or hand it to another host",
    }
    assert await stored(db, code) == before
    assert await redis_client.get(room_key(code)) == cached
    assert await raw_data_of(redis_client, stream_name, code, "room.updated") == []
    assert await db.fetchval("SELECT max_participants FROM meetings WHERE room_id = $1", code) == 4


async def test_the_host_hands_the_room_over(client, host, db, redis_client, stream_name, settings) -> None:
    cohost, other = user(), user()
    code = (await create(client, host, cohostIds=[user_id(cohost), user_id(other)]))["roomId"]

    handed = await client.patch(f"/rooms/{code}", headers=host, json={"hostId": user_id(cohost)})

    assert handed.status_code == 200, handed.text
    # The new host leaves the co-hosts; the old one is nothing now, not having named themselves.
    assert (handed.json()["hostId"], handed.json()["cohostIds"]) == (user_id(cohost), [user_id(other)])
    assert await stored(db, code) == (user_id(cohost), [user_id(other)], 2)
    cached = json.loads(await redis_client.get(room_key(code)))
    assert (cached["hostId"], cached["cohostIds"]) == (user_id(cohost), [user_id(other)])
    (updated,) = await raw_data_of(redis_client, stream_name, code, "room.updated")
    assert (updated["hostId"], updated["cohostIds"]) == (user_id(cohost), [user_id(other)])

    refused = await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 3})
    assert (refused.status_code, refused.json()["detail"]) == (403, "only the room's host or a co-host may change it")
    assert (await client.get(f"/rooms/{code}/history", headers=host)).status_code == 403
    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 403

    # The new host hands it back and stays on as a co-host, in one change.
    back = await client.patch(
        f"/rooms/{code}", headers=cohost, json={"hostId": user_id(host), "cohostIds": [user_id(cohost)]}
    )
    assert back.status_code == 200, back.text
    assert await stored(db, code) == (user_id(host), [user_id(cohost)], 3)
    listed = (await client.get("/rooms", headers=host)).json()["rooms"]
    assert [room["roomId"] for room in listed] == [code]


@pytest.mark.one_topology
async def test_tickets_name_the_cohost_role(settings_with, tmp_path, host) -> None:
    write_new_key(tmp_path / "ticket-key.pem")
    cohost, guest = user(), user()
    async with AsyncTestClient(app=create_app(settings_with(ticket_keys=str(tmp_path / "ticket-key.pem")))) as client:
        code = (await create(client, host, cohostIds=[user_id(cohost)]))["roomId"]

        async def role(who: dict[str, str]) -> str:
            response = await client.post(f"/rooms/{code}/tickets", headers=who)
            assert response.status_code == 201, response.text
            return str(response.json()["role"])

        assert [await role(who) for who in (host, cohost, guest)] == ["host", "cohost", "guest"]
        await client.patch(f"/rooms/{code}", headers=host, json={"hostId": user_id(cohost)})
        assert [await role(who) for who in (host, cohost, guest)] == ["guest", "host", "guest"]


@pytest.mark.one_topology
@pytest.mark.parametrize(
    ("body", "error", "detail"),
    [
        ({"cohostIds": ["host"]}, "invalid_cohosts", "cohostIds must not name the room's host"),
        ({"cohostIds": ["a", "a"]}, "invalid_cohosts", "cohostIds must not name a user twice"),
        ({"cohostIds": ["a", "A"]}, "invalid_cohosts", "cohostIds must not name a user twice"),  # as UUIDs
        ({"cohostIds": [str(i) for i in range(11)]}, "invalid_body", "Expected `array` of length <= 10"),
        ({"cohostIds": ["0123456789abcdef0123456789abcdef"]}, "invalid_body", "Expected `str` matching regex"),
        ({"cohostIds": ["not a uuid"]}, "invalid_body", "Expected `str` matching regex"),
        ({"cohostIds": ["a\n"]}, "invalid_body", "Expected `str` matching regex"),
        ({"cohostIds": None}, "invalid_body", "Expected `array`, got `null`"),
        ({"cohostIds": "a"}, "invalid_body", "Expected `array`, got `str`"),
    ],
    ids=[
        "the host",
        "twice",
        "twice in another case",
        "eleven",
        "bare hex",
        "not a uuid",
        "a final newline",
        "null",
        "a string",
    ],
)
async def test_bad_cohosts_are_refused_on_create_with_nothing_made(client, host, db, body, error, detail) -> None:
    ids = {
        "host": user_id(host),
        "a": "9a2b3c4d-0000-4000-8000-00000000000a",
        "A": "9A2B3C4D-0000-4000-8000-00000000000A",
    }
    ids |= {str(i): str(uuid.uuid4()) for i in range(11)}
    value = body["cohostIds"]
    sent = {
        "cohostIds": [ids.get(v, ids["a"] + "\n" if v == "a\n" else v) for v in value]
        if isinstance(value, list)
        else value
    }

    response = await client.post("/rooms", headers=host, json=sent)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert detail in response.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(user_id(host))) == 0


@pytest.mark.one_topology
@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"cohostIds": ["host"]}, 400, "invalid_cohosts"),  # only the statement knows who the host is
        ({"hostId": "new", "cohostIds": ["new"]}, 400, "invalid_cohosts"),
        ({"hostId": "new", "cohostIds": ["a", "a"]}, 400, "invalid_cohosts"),
        ({"maxParticipants": 3, "cohostIds": ["host"]}, 400, "invalid_cohosts"),  # the limit stays too
        ({"hostId": "not a uuid"}, 400, "invalid_body"),
        ({"hostId": "new\n"}, 400, "invalid_body"),
        ({"hostId": None}, 400, "invalid_body"),
        ({}, 400, "invalid_body"),
    ],
    ids=[
        "the host",
        "the new host",
        "twice",
        "the host beside a limit",
        "a bad host",
        "a final newline",
        "a null host",
        "nothing",
    ],
)
async def test_bad_changes_of_the_hosts_change_nothing(client, host, db, body, status, error) -> None:
    code = (await create(client, host, cohostIds=[str(uuid.uuid4())]))["roomId"]
    before = await stored(db, code)
    new = str(uuid.uuid4())
    ids = {"host": user_id(host), "new": new, "new\n": new + "\n", "a": str(uuid.uuid4())}

    def named(value: Any) -> Any:
        return [ids.get(v, v) for v in value] if isinstance(value, list) else ids.get(value, value)

    response = await client.patch(f"/rooms/{code}", headers=host, json={k: named(v) for k, v in body.items()})

    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert await stored(db, code) == before
    assert await stored_limit(db, code) == 4


@pytest.mark.one_topology
async def test_the_list_by_role(client, host, db) -> None:
    cohost = user()
    hosted_by_them = [
        (await create(client, host, cohostIds=[user_id(cohost)]))["roomId"],
        (await create(client, host))["roomId"],  # not theirs at all
        (await create(client, host, cohostIds=[user_id(cohost)]))["roomId"],
    ]
    own = (await create(client, cohost))["roomId"]
    # Created in one order within a moment: listed newest first by the database's own clock.
    newest_first = [
        row["room_id"]
        for row in await db.fetch(
            "SELECT room_id FROM meetings WHERE room_id = ANY($1) ORDER BY created_at DESC, id DESC",
            [hosted_by_them[0], hosted_by_them[2], own],
        )
    ]

    async def listed(**query: Any) -> list[str]:
        response = await client.get("/rooms", headers=cohost, params=query)
        assert response.status_code == 200, response.text
        return [room["roomId"] for room in response.json()["rooms"]]

    assert await listed() == [own]  # the default: the rooms they host
    assert await listed(role="host") == [own]
    assert await listed(role="cohost") == [code for code in newest_first if code != own]
    assert await listed(role="any") == newest_first

    # Page by page, the cursor keeps the role.
    first = (await client.get("/rooms", headers=cohost, params={"role": "any", "limit": 2})).json()
    rest = (
        await client.get("/rooms", headers=cohost, params={"role": "any", "limit": 2, "cursor": first["nextCursor"]})
    ).json()
    assert [room["roomId"] for room in first["rooms"] + rest["rooms"]] == newest_first
    assert rest["nextCursor"] is None
    # Ended rooms keep their co-hosts, for the listing too.
    assert (await client.delete(f"/rooms/{hosted_by_them[0]}", headers=cohost)).status_code == 204
    assert await listed(role="cohost", status="ended") == [hosted_by_them[0]]
    assert await listed(role="cohost", status="active") == [hosted_by_them[2]]

    refused = await client.get("/rooms", headers=cohost, params={"role": "guest"})
    assert refused.status_code == 400, refused.text


@pytest.mark.one_topology
async def test_an_idempotent_retry_names_the_same_cohosts(client, host) -> None:
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    key = {**host, "Idempotency-Key": f"cohosts-{uuid.uuid4()}"}
    first = await client.post("/rooms", headers=key, json={"cohostIds": [alice, bob]})
    assert first.status_code == 201, first.text

    again = await client.post("/rooms", headers=key, json={"cohostIds": [bob, alice]})  # a set: any order
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()

    other = await client.post("/rooms", headers=key, json={"cohostIds": [alice]})
    assert other.status_code == 422, other.text
    assert other.json()["error"] == "idempotency_key_reused"


@pytest.mark.one_topology
@pytest.mark.parametrize(("role", "index"), [("cohost", "meetings_cohost_ids_idx"), ("any", "meetings_cohost_ids_idx")])
async def test_the_listing_can_use_its_index(db, role, index) -> None:
    # The statement must repeat the partial index's predicate, or no plan can use the index: with
    # sequential scans priced out, the plan names it only if it may.
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        plan = await db.fetch("EXPLAIN " + rooms.USER_ROOMS[role], uuid.uuid4(), None, None, "all", 21)
    assert index in "\n".join(row[0] for row in plan)


@pytest.mark.one_topology
async def test_a_new_host_has_every_power_and_an_ended_room_keeps_its_hosts(client, host, db) -> None:
    stranger, cohost = user(), user()
    code = (await create(client, host))["roomId"]
    handed = await client.patch(f"/rooms/{code}", headers=host, json={"hostId": user_id(stranger)})
    assert handed.status_code == 200, handed.text

    named = await client.patch(f"/rooms/{code}", headers=stranger, json={"cohostIds": [user_id(cohost)]})
    assert named.status_code == 200, named.text
    assert (await client.get(f"/rooms/{code}/history", headers=stranger)).status_code == 200
    assert (await client.delete(f"/rooms/{code}", headers=stranger)).status_code == 204

    late = await client.patch(f"/rooms/{code}", headers=stranger, json={"hostId": user_id(host)})
    assert late.status_code == 410, late.text
    assert await stored(db, code) == (user_id(stranger), [user_id(cohost)], 4)


@pytest.mark.one_topology
async def test_a_change_racing_the_removal_of_its_cohost(client, host, db) -> None:
    # Postgres decides on the row as it is when the UPDATE takes it: the co-host's change lands if it
    # came first, and is refused whole (403, the limit left) if their removal did.
    for _ in range(5):
        cohost = user()
        code = (await create(client, host, cohostIds=[user_id(cohost)]))["roomId"]

        change, removal = await asyncio.gather(
            client.patch(f"/rooms/{code}", headers=cohost, json={"maxParticipants": 3}),
            client.patch(f"/rooms/{code}", headers=host, json={"cohostIds": []}),
        )

        assert removal.status_code == 200, removal.text
        assert change.status_code in (200, 403), change.text
        landed = change.status_code == 200
        assert await stored(db, code) == (user_id(host), [], 3 if landed else 2)
        assert await stored_limit(db, code) == (3 if landed else 4)
