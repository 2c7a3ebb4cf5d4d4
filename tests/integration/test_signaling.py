"""The join contract (common/signaling/join.lua, leave.lua) run against the real Redis of the suite."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from redis.crc import key_slot
from redis.exceptions import ResponseError

from common.redis.keys import PRESENCE_GRACE_MS, participants_key, room_key, used_ticket_key
from common.signaling.contract import JOIN, LEAVE, JoinContract
from tests.support.claims import ticket

HEARTBEAT_MS = 30_000


@pytest.fixture
def contract(redis_client) -> JoinContract:
    return JoinContract(redis_client)


async def create_room(client, host, max_participants: int = 4) -> str:
    response = await client.post("/rooms", headers=host, json={"maxParticipants": max_participants})
    assert response.status_code == 201, response.text
    return response.json()["roomId"]


def someone() -> str:
    return str(uuid.uuid4())


async def fill(contract: JoinContract, room_id: str, n: int, heartbeat_ms: int = HEARTBEAT_MS) -> list[str]:
    members = [someone() for _ in range(n)]
    for member in members:
        assert (await contract.join(room_id, member, heartbeat_ms)).outcome == "admitted"
    return members


async def test_concurrent_joins_admit_exactly_the_limit(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host, max_participants=4)

    results = await asyncio.gather(*(contract.join(room_id, someone(), HEARTBEAT_MS) for _ in range(200)))

    outcomes = [r.outcome for r in results]
    assert outcomes.count("admitted") == 4
    assert outcomes.count("full") == 196
    assert all(r.max_participants == 4 for r in results)
    assert sorted(r.count for r in results if r.outcome == "admitted") == [1, 2, 3, 4]
    assert all(r.count == 4 for r in results if r.outcome == "full")
    assert await redis_client.zcard(participants_key(room_id)) == 4


async def test_rejoin_counts_once_and_refreshes_the_heartbeat(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    first = await contract.join(room_id, "alice", 1_000)
    before = await redis_client.zscore(participants_key(room_id), "alice")

    again = await contract.join(room_id, "alice", 60_000)

    assert (first.outcome, first.count) == ("admitted", 1)
    assert (again.outcome, again.count, again.max_participants) == ("already_in", 1, 4)
    after = await redis_client.zscore(participants_key(room_id), "alice")
    assert after - before >= 59_000  # the heartbeat moved to now + the new TTL
    await fill(contract, room_id, 3)  # alice holds one slot, not two


async def test_a_member_stays_in_when_the_room_is_full(client, host, contract) -> None:
    room_id = await create_room(client, host, max_participants=2)
    alice, _ = await fill(contract, room_id, 2)

    assert (await contract.join(room_id, alice, HEARTBEAT_MS)).outcome == "already_in"
    assert (await contract.join(room_id, someone(), HEARTBEAT_MS)).outcome == "full"


async def test_an_expired_heartbeat_frees_its_slot(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    await fill(contract, room_id, 3)
    await fill(contract, room_id, 1, heartbeat_ms=1000)
    newcomer = someone()
    assert (await contract.join(room_id, newcomer, HEARTBEAT_MS)).outcome == "full"

    await asyncio.sleep(1.1)
    result = await contract.join(room_id, newcomer, HEARTBEAT_MS)

    assert (result.outcome, result.count) == ("admitted", 4)
    assert await redis_client.zcard(participants_key(room_id)) == 4


async def test_leave_frees_a_slot_at_once(client, host, contract) -> None:
    room_id = await create_room(client, host)
    members = await fill(contract, room_id, 4)
    newcomer = someone()
    assert (await contract.join(room_id, newcomer, HEARTBEAT_MS)).outcome == "full"

    assert await contract.leave(room_id, members[0]) is True
    assert await contract.leave(room_id, members[0]) is False
    assert await contract.leave(room_id, "never-joined") is False
    result = await contract.join(room_id, newcomer, HEARTBEAT_MS)

    assert (result.outcome, result.count) == ("admitted", 4)


async def test_leave_reports_a_lapsed_member_as_absent(client, host, contract) -> None:
    room_id = await create_room(client, host)
    [member] = await fill(contract, room_id, 1, heartbeat_ms=50)
    await asyncio.sleep(0.08)

    assert await contract.leave(room_id, member) is False


async def test_a_missing_room_key_answers_not_cached_until_get_recaches(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    await redis_client.delete(room_key(room_id))

    missed = await contract.join(room_id, "alice", HEARTBEAT_MS)
    assert (missed.outcome, missed.count, missed.max_participants) == ("not_cached", 0, 0)
    assert not await redis_client.exists(participants_key(room_id))

    response = await client.get(f"/rooms/{room_id}")
    assert response.status_code == 200
    assert await redis_client.exists(room_key(room_id))  # GET re-cached the room
    result = await contract.join(room_id, "alice", HEARTBEAT_MS)

    assert (result.outcome, result.count, result.max_participants) == ("admitted", 1, 4)


async def test_an_unreadable_room_object_answers_not_cached(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    for value in (b"not json", b"42", b"[1, 2]", json.dumps({"maxParticipants": "4"}).encode()):
        await redis_client.set(room_key(room_id), value, keepttl=True)
        assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "not_cached"


async def test_a_lower_limit_set_by_patch_applies_to_the_next_join(client, host, contract) -> None:
    room_id = await create_room(client, host)
    members = await fill(contract, room_id, 3)

    response = await client.patch(f"/rooms/{room_id}", headers=host, json={"maxParticipants": 2})
    assert response.status_code == 200

    refused = await contract.join(room_id, someone(), HEARTBEAT_MS)
    stays = await contract.join(room_id, members[0], HEARTBEAT_MS)
    assert (refused.outcome, refused.count, refused.max_participants) == ("full", 3, 2)
    assert (stays.outcome, stays.count, stays.max_participants) == ("already_in", 3, 2)
    await contract.leave(room_id, members[1])
    await contract.leave(room_id, members[2])
    assert (await contract.join(room_id, someone(), HEARTBEAT_MS)).outcome == "admitted"  # 2 of 2
    assert (await contract.join(room_id, someone(), HEARTBEAT_MS)).outcome == "full"


async def test_a_deleted_room_admits_nobody(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    await fill(contract, room_id, 2)

    assert (await client.delete(f"/rooms/{room_id}", headers=host)).status_code == 204

    assert (await contract.join(room_id, someone(), HEARTBEAT_MS)).outcome == "not_cached"
    assert not await redis_client.exists(participants_key(room_id))  # its participants went with it
    # The caller's GET, as the contract says, answers 410: no retry admits anyone.
    assert (await client.get(f"/rooms/{room_id}")).status_code == 410
    assert (await contract.join(room_id, someone(), HEARTBEAT_MS)).outcome == "not_cached"


async def test_a_lower_limit_takes_effect_on_the_next_join(client, host, contract, redis_client) -> None:
    # The same as PATCH does, written directly: the script reads whatever the room object says.
    room_id = await create_room(client, host)
    members = await fill(contract, room_id, 3)
    ttl_before = await redis_client.pttl(room_key(room_id))
    room = json.loads(await redis_client.get(room_key(room_id)))
    room["maxParticipants"] = 2
    await redis_client.set(room_key(room_id), json.dumps(room), keepttl=True)
    assert 0 < await redis_client.pttl(room_key(room_id)) <= ttl_before

    refused = await contract.join(room_id, someone(), HEARTBEAT_MS)
    stays = await contract.join(room_id, members[0], HEARTBEAT_MS)

    assert (refused.outcome, refused.count, refused.max_participants) == ("full", 3, 2)
    assert (stays.outcome, stays.count, stays.max_participants) == ("already_in", 3, 2)


async def both_ttls(redis_client, room_id: str) -> list[int]:
    """The room key's and the participant set's TTLs (ms), read at one instant: a script touches both
    keys at once, on one server or on the node of their shared cluster slot."""
    script = "return {redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])}"
    return list(await redis_client.eval(script, 2, room_key(room_id), participants_key(room_id)))


async def test_participants_share_the_room_slot_and_expire_a_day_after_it(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    assert participants_key(room_id) == "{room:" + room_id + "}:participants"
    assert key_slot(participants_key(room_id).encode()) == key_slot(room_key(room_id).encode())

    await contract.join(room_id, "alice", HEARTBEAT_MS)
    room_ttl, participants_ttl = await both_ttls(redis_client, room_id)
    # Until the room's end, and the day past it that its sessions keep for the worker to record.
    assert 86_000_000 < participants_ttl - PRESENCE_GRACE_MS <= room_ttl

    # The set follows the room key's expiry on every write, also when the room's ends sooner.
    await redis_client.pexpire(room_key(room_id), 5_000)
    await contract.join(room_id, "bob", HEARTBEAT_MS)
    room_ttl, participants_ttl = await both_ttls(redis_client, room_id)
    assert 0 < participants_ttl - PRESENCE_GRACE_MS <= room_ttl <= 5_000


async def test_a_room_object_without_expiry_keeps_the_set_only_until_its_last_heartbeat(
    client, host, contract, redis_client
) -> None:
    room_id = await create_room(client, host)
    await redis_client.persist(room_key(room_id))

    await contract.join(room_id, "alice", 5_000)
    await contract.join(room_id, "bob", 2_000)

    # Still alice's 5 s, not bob's 2 s (with a slow machine's 2 s to spare).
    assert 3_000 < await redis_client.pttl(participants_key(room_id)) - PRESENCE_GRACE_MS <= 5_000


@pytest.mark.parametrize(
    ("participant", "ttl"),
    [
        ("", "1000"),
        ("alice", "0"),
        ("alice", "-5"),
        ("alice", "abc"),
        ("alice", "1.5"),
        ("alice", "1e3"),
        ("alice", ""),
    ],
)
async def test_join_rejects_bad_arguments(client, host, redis_client, participant, ttl) -> None:
    room_id = await create_room(client, host)
    keys = (room_key(room_id), participants_key(room_id))

    with pytest.raises(ResponseError, match=r"participant id|heartbeat ttl"):
        await redis_client.eval(JOIN.source, 2, *keys, participant, ttl)
    assert not await redis_client.exists(participants_key(room_id))


async def test_scripts_reject_a_wrong_layout_and_an_empty_leave(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    keys = (room_key(room_id), participants_key(room_id))

    with pytest.raises(ResponseError, match="2 keys"):
        await redis_client.eval(JOIN.source, 1, participants_key(room_id), "alice", "1000")
    with pytest.raises(ResponseError, match="2 keys"):
        await redis_client.eval(LEAVE.source, 1, participants_key(room_id), "alice")
    with pytest.raises(ResponseError, match="participant id"):
        await contract.leave(room_id, "")
    with pytest.raises(ResponseError, match="heartbeat ttl"):
        await contract.join(room_id, "alice", 0)
    assert await redis_client.eval(LEAVE.source, 2, *keys, "alice") == 0


# -- join tickets: one ticket, one admission ----------------------------------------------------


async def test_a_ticket_admits_once(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    alice = ticket(room_id, "alice")

    first = await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=alice)
    replayed = await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=alice)
    by_another = await contract.join(room_id, "mallory", HEARTBEAT_MS, ticket=alice)
    await contract.leave(room_id, "alice")
    after_leaving = await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=alice)

    assert (first.outcome, first.count) == ("admitted", 1)
    assert [r.outcome for r in (replayed, by_another, after_leaving)] == ["ticket_used"] * 3
    assert (replayed.count, replayed.max_participants) == (0, 0)
    assert await redis_client.zrange(participants_key(room_id), 0, -1) == []  # nothing changed
    mark = used_ticket_key(room_id, alice.jti)
    assert key_slot(mark.encode()) == key_slot(room_key(room_id).encode())  # the room's slot
    assert await redis_client.get(mark) == b"alice"
    # Kept until the ticket's exp plus the verifiers' 5 s of leeway.
    assert 120_000 < await redis_client.pttl(mark) <= 125_000


async def test_a_new_ticket_or_none_lets_the_same_participant_back(client, host, contract) -> None:
    room_id = await create_room(client, host)
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=ticket(room_id, "alice"))).outcome == "admitted"

    rejoined = await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=ticket(room_id, "alice"))
    heartbeat = await contract.join(room_id, "alice", HEARTBEAT_MS)  # the old argument list
    await contract.leave(room_id, "alice")
    back = await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=ticket(room_id, "alice"))

    assert (rejoined.outcome, rejoined.count) == ("already_in", 1)
    assert (heartbeat.outcome, heartbeat.count) == ("already_in", 1)
    assert (back.outcome, back.count) == ("admitted", 1)


async def test_a_refused_join_leaves_its_ticket_usable(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host, max_participants=2)
    members = await fill(contract, room_id, 2)
    carol = ticket(room_id, "carol")

    assert (await contract.join(room_id, "carol", HEARTBEAT_MS, ticket=carol)).outcome == "full"
    assert not await redis_client.exists(used_ticket_key(room_id, carol.jti))
    await redis_client.delete(room_key(room_id))
    assert (await contract.join(room_id, "carol", HEARTBEAT_MS, ticket=carol)).outcome == "not_cached"
    assert (await client.get(f"/rooms/{room_id}")).status_code == 200  # cached again
    await contract.leave(room_id, members[0])

    assert (await contract.join(room_id, "carol", HEARTBEAT_MS, ticket=carol)).outcome == "admitted"


async def test_the_used_mark_expires_with_the_ticket(client, host, contract, redis_client) -> None:
    room_id = await create_room(client, host)
    # Expired 2 s ago: still within a verifier's 5 s of leeway, for 2 to 3 more seconds (a slow
    # machine's join may take one of them).
    late = ticket(room_id, "alice", lifetime=-2)
    leeway_ends = late.exp + 5
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=late)).outcome == "admitted"
    asked_at = time.time()
    mark_ttl_ms = await redis_client.pttl(used_ticket_key(room_id, late.jti))
    assert 0 < mark_ttl_ms <= (leeway_ends - asked_at) * 1000 + 50
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=late)).outcome == "ticket_used"

    await asyncio.sleep(max(0.0, leeway_ends - time.time()) + 0.1)

    assert not await redis_client.exists(used_ticket_key(room_id, late.jti))
    # No verifier accepts it any more; join.lua no longer needs to remember it.
    stale = ticket(room_id, "bob", lifetime=-10)
    assert (await contract.join(room_id, "bob", HEARTBEAT_MS, ticket=stale)).outcome == "admitted"
    assert not await redis_client.exists(used_ticket_key(room_id, stale.jti))


@pytest.mark.parametrize(
    ("mark", "jti", "exp", "error"),
    [
        ("its own", "", "1900000000", "ticket jti"),
        ("its own", "abc", "0", "ticket exp"),
        ("its own", "abc", "19e8", "ticket exp"),
        ("its own", "abc", "", "ticket exp"),
        ("another ticket's", "abc", "1900000000", "ticket mark"),
        ("not a ticket mark", "abc", "1900000000", "ticket mark"),
    ],
)
async def test_join_rejects_bad_ticket_arguments(client, host, redis_client, mark, jti, exp, error) -> None:
    room_id = await create_room(client, host)
    # Every mark has the room's hash tag: a key of another slot a cluster would refuse before the script runs.
    marks = {
        "its own": used_ticket_key(room_id, jti),
        "another ticket's": used_ticket_key(room_id, "other"),
        "not a ticket mark": "{" + room_key(room_id) + "}:elsewhere",
    }
    keys = (room_key(room_id), participants_key(room_id), marks[mark])

    with pytest.raises(ResponseError, match=error):
        await redis_client.eval(JOIN.source, 3, *keys, "alice", "1000", jti, exp)
    assert not await redis_client.exists(participants_key(room_id))


async def test_join_takes_a_ticket_with_both_of_its_arguments_or_none(client, host, redis_client) -> None:
    room_id = await create_room(client, host)
    keys = (room_key(room_id), participants_key(room_id), used_ticket_key(room_id, "abc"))

    for count, arguments in [(3, ("alice", "1000", "abc")), (2, ("alice", "1000", "abc", "1900000000"))]:
        with pytest.raises(ResponseError, match="2 keys"):
            await redis_client.eval(JOIN.source, count, *keys[:count], *arguments)
    assert not await redis_client.exists(participants_key(room_id))
