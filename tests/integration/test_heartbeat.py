"""heartbeat.lua (JoinContract.heartbeat) against the real Redis of the suite: it keeps a live member's
slot and never admits anyone, whoever asks: a stranger, a member whose heartbeat lapsed, one who left.
The tests about keys and clocks run on every Redis topology; those about the script's own answers on one."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.exceptions import ResponseError

from common.redis.keys import PRESENCE_GRACE_MS, participants_key, room_key
from common.settings import Settings
from common.signaling.contract import HEARTBEAT, JoinContract
from tests.support.waiting import eventually

HEARTBEAT_MS = 30_000
EARLY_JOIN_SECONDS = 120


@pytest.fixture
def settings(settings_with) -> Settings:
    # An early-join allowance the calendar test can be admitted within; no other test books a room.
    return settings_with(early_join_seconds=EARLY_JOIN_SECONDS)


@pytest.fixture
def contract(redis_client) -> JoinContract:
    return JoinContract(redis_client)


async def create_room(client, host, **body: object) -> str:
    response = await client.post("/rooms", headers=host, json={"maxParticipants": 4, **body})
    assert response.status_code == 201, response.text
    return response.json()["roomId"]


async def members(redis_client, room_id: str) -> dict[str, float]:
    """The participant set as it stands, members and expiries, lapsed ones too."""
    entries = await redis_client.zrange(participants_key(room_id), 0, -1, withscores=True)
    return {member.decode(): score for member, score in entries}


async def redis_now_ms(redis_client, room_id: str) -> int:
    """TIME, as the scripts read it, on the server (the cluster node) holding the room."""
    script = "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)"
    return int(await redis_client.eval(script, 1, room_key(room_id)))


async def both_ttls(redis_client, room_id: str) -> list[int]:
    """The room key's and the participant set's TTLs (ms), read at one instant, on one node."""
    script = "return {redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])}"
    return list(await redis_client.eval(script, 2, room_key(room_id), participants_key(room_id)))


async def test_alive_moves_the_expiry_and_adds_nobody(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    for member in ("alice", "bob"):
        assert (await contract.join(room_id, member, 10_000)).outcome == "admitted"
    before = await members(redis_client, room_id)

    result = await contract.heartbeat(room_id, "alice", 60_000)

    assert (result.outcome, result.count, result.max_participants) == ("alive", 2, 4)
    after = await members(redis_client, room_id)
    assert after.keys() == {"alice", "bob"}
    assert after["alice"] - before["alice"] >= 50_000  # now + the new TTL
    assert after["bob"] == before["bob"]


async def test_a_stranger_is_not_member_and_is_not_added(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)

    alone = await contract.heartbeat(room_id, "mallory", HEARTBEAT_MS)

    assert (alone.outcome, alone.count, alone.max_participants) == ("not_member", 0, 4)
    assert not await redis_client.exists(participants_key(room_id))

    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    before = await members(redis_client, room_id)
    among_others = await contract.heartbeat(room_id, "mallory", HEARTBEAT_MS)

    assert (among_others.outcome, among_others.count, among_others.max_participants) == ("not_member", 1, 4)
    assert await members(redis_client, room_id) == before


async def test_a_lapsed_member_is_not_member_and_its_entry_is_removed(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", 200)).outcome == "admitted"
    assert (await contract.join(room_id, "bob", 60_000)).outcome == "admitted"
    lapses_at = (await members(redis_client, room_id))["alice"]

    async def lapsed() -> bool:
        return await redis_now_ms(redis_client, room_id) > lapses_at

    await eventually(lapsed, within=10, what="alice's heartbeat lapses by the server's clock")
    late = await contract.heartbeat(room_id, "alice", HEARTBEAT_MS)
    again = await contract.heartbeat(room_id, "alice", HEARTBEAT_MS)

    # Where join.lua without a ticket would have admitted her anew, she must join again.
    assert (late.outcome, late.count, late.max_participants) == ("not_member", 1, 4)
    assert again.outcome == "not_member"
    assert (await members(redis_client, room_id)).keys() == {"bob"}


async def test_a_member_who_left_is_not_member(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    assert await contract.leave(room_id, "alice") is True

    result = await contract.heartbeat(room_id, "alice", HEARTBEAT_MS)

    assert (result.outcome, result.count) == ("not_member", 0)
    assert not await redis_client.exists(participants_key(room_id))


@pytest.mark.one_topology
async def test_a_participant_the_host_removed_is_not_member(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    for participant in (alice, bob):
        assert (await contract.join(room_id, participant, HEARTBEAT_MS)).outcome == "admitted"
    response = await client.delete(f"/rooms/{room_id}/participants/{alice}", headers=host)
    assert response.status_code == 204, response.text

    result = await contract.heartbeat(room_id, alice, HEARTBEAT_MS)

    assert (result.outcome, result.count, result.max_participants) == ("not_member", 1, 4)
    assert (await members(redis_client, room_id)).keys() == {bob}
    assert (await contract.join(room_id, alice, HEARTBEAT_MS)).outcome == "removed"  # barred from joining again

    # A writer that left a barred member in the set (a process of a release before removals): the
    # heartbeat reads the bar from the object, and takes them out.
    await redis_client.zadd(participants_key(room_id), {alice: int(time.time() * 1000) + HEARTBEAT_MS})
    again = await contract.heartbeat(room_id, alice, HEARTBEAT_MS)
    assert (again.outcome, again.count) == ("not_member", 1)
    assert (await members(redis_client, room_id)).keys() == {bob}


async def test_a_room_its_host_deleted_is_gone(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    assert (await client.delete(f"/rooms/{room_id}", headers=host)).status_code == 204

    result = await contract.heartbeat(room_id, "alice", HEARTBEAT_MS)

    assert (result.outcome, result.count, result.max_participants) == ("room_gone", 0, 0)
    assert not await redis_client.exists(participants_key(room_id))  # not written again
    assert (await client.get(f"/rooms/{room_id}")).status_code == 410  # Signaling disconnects everyone


async def test_a_missing_room_key_is_gone_until_get_caches_it_again(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await redis_client.delete(room_key(room_id))
    before = await members(redis_client, room_id)

    gone = await contract.heartbeat(room_id, "alice", 120_000)

    assert (gone.outcome, gone.count, gone.max_participants) == ("room_gone", 0, 0)
    assert await members(redis_client, room_id) == before  # nothing changed
    assert (await client.get(f"/rooms/{room_id}")).status_code == 200  # the room lives: cached again
    back = await contract.heartbeat(room_id, "alice", 120_000)
    assert (back.outcome, back.count, back.max_participants) == ("alive", 1, 4)


async def test_the_participants_key_expires_with_the_room_key(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await redis_client.pexpire(room_key(room_id), 5_000)  # the room's end, moved sooner behind join.lua's back

    assert (await contract.heartbeat(room_id, "alice", HEARTBEAT_MS)).outcome == "alive"

    room_ttl, participants_ttl = await both_ttls(redis_client, room_id)
    assert 0 < participants_ttl - PRESENCE_GRACE_MS <= room_ttl <= 5_000


@pytest.mark.one_topology
async def test_a_room_object_without_expiry_keeps_the_set_until_its_last_heartbeat(
    client, host, contract, redis_client
) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", 1_000)).outcome == "admitted"
    assert (await contract.join(room_id, "bob", 2_000)).outcome == "admitted"
    await redis_client.persist(room_key(room_id))

    assert (await contract.heartbeat(room_id, "bob", 5_000)).outcome == "alive"

    # bob's 5 s, the last heartbeat in the set (with a slow machine's 2 s to spare); not the room's day.
    assert 3_000 < await redis_client.pttl(participants_key(room_id)) - PRESENCE_GRACE_MS <= 5_000


@pytest.mark.one_topology
async def test_an_unreadable_room_object_judges_membership_alone(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", 10_000)).outcome == "admitted"
    for value in (b"not json", b"42", b"[1, 2]", json.dumps({"maxParticipants": "4"}).encode()):
        await redis_client.set(room_key(room_id), value, keepttl=True)
        asked_at = await redis_now_ms(redis_client, room_id)

        member = await contract.heartbeat(room_id, "alice", 60_000)
        stranger = await contract.heartbeat(room_id, "mallory", 60_000)

        assert (member.outcome, member.count, member.max_participants) == ("alive", 1, 0), value
        assert (stranger.outcome, stranger.count, stranger.max_participants) == ("not_member", 1, 0), value
        after = await members(redis_client, room_id)
        assert after.keys() == {"alice"}
        assert after["alice"] >= asked_at + 60_000  # refreshed


@pytest.mark.one_topology
async def test_before_the_room_opens_membership_alone_decides(client, host, contract, redis_client) -> None:
    # Admitted within the early-join allowance; then the host moves the start an hour later, so the
    # room no longer opens before its members' heartbeats.
    room_id = await create_room(client, host, startsAt=(datetime.now(UTC) + timedelta(seconds=60)).isoformat())
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await client.patch(f"/rooms/{room_id}", headers=host, json={"startsAt": later})).status_code == 200
    assert (await contract.join(room_id, "bob", HEARTBEAT_MS)).outcome == "not_started"

    member = await contract.heartbeat(room_id, "alice", HEARTBEAT_MS)
    stranger = await contract.heartbeat(room_id, "bob", HEARTBEAT_MS)

    assert (member.outcome, member.count, member.max_participants) == ("alive", 1, 4)
    assert (stranger.outcome, stranger.count, stranger.max_participants) == ("not_member", 1, 4)
    assert (await members(redis_client, room_id)).keys() == {"alice"}


# (participant id, TTL, what the error names): each as join.lua refuses it.
BAD_ARGUMENTS = [
    ("", "60000", "participant id"),
    ("alice", "0", "heartbeat ttl"),
    ("alice", "-5", "heartbeat ttl"),
    ("alice", "abc", "heartbeat ttl"),
    ("alice", "1.5", "heartbeat ttl"),
    ("alice", "6e4", "heartbeat ttl"),
    ("alice", " 60000", "heartbeat ttl"),
    ("alice", "", "heartbeat ttl"),
    ("alice", "1" * 16, "heartbeat ttl"),  # past 15 digits now + ttl is no longer exact
]


@pytest.mark.one_topology
async def test_bad_arguments_are_error_replies(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", 10_000)).outcome == "admitted"
    before = await members(redis_client, room_id)

    async def reply(participant: str, ttl: str) -> str:
        try:
            answer = await redis_client.eval(
                HEARTBEAT.source, 2, room_key(room_id), participants_key(room_id), participant, ttl
            )
        except ResponseError as error:
            return str(error)
        return f"no error: {answer}"

    replies = {(participant, ttl, error): await reply(participant, ttl) for participant, ttl, error in BAD_ARGUMENTS}

    assert {case: text for case, text in replies.items() if case[2] not in text} == {}
    assert await members(redis_client, room_id) == before  # alice's expiry untouched


@pytest.mark.one_topology
async def test_a_wrong_layout_is_an_error_reply(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    keys = (room_key(room_id), participants_key(room_id))

    with pytest.raises(ResponseError, match="2 keys"):
        await redis_client.eval(HEARTBEAT.source, 1, participants_key(room_id), "alice", "60000")
    with pytest.raises(ResponseError, match="2 keys"):
        await redis_client.eval(HEARTBEAT.source, 2, *keys, "alice", "60000", str(uuid.uuid4()))
    with pytest.raises(ResponseError, match="heartbeat ttl"):
        await contract.heartbeat(room_id, "alice", 0)
    assert not await redis_client.exists(participants_key(room_id))
