"""Sessions as Signaling's scripts keep them in Redis (docs/signaling.md, "Sessions"): a span with at least
one participant, from the join into an empty room to the moment it emptied, with its peak, its distinct
participants and its participant-ms, exact to the ms of Redis TIME: a lapsed heartbeat is a departure at
its expiry, however late a script notices it. On every topology."""

from __future__ import annotations

import uuid

from common.redis.keys import joined_key, participants_key, room_key, session_key, sessions_key
from common.redis.sessions import Session, epoch_ms, parse_session
from common.signaling.contract import JoinContract
from tests.support.rooms import create
from tests.support.waiting import eventually


def someone() -> str:
    return str(uuid.uuid4())


async def ended_sessions(redis_client, room_id: str) -> list[Session]:
    return [parse_session(record.decode()) for record in await redis_client.lrange(sessions_key(room_id), 0, -1)]


async def stint(redis_client, room_id: str, participant: str) -> tuple[int, int]:
    """When the participant joined and when its heartbeat lapses (Unix ms), as the scripts keep them."""
    joined = await redis_client.hget(joined_key(room_id), participant)
    expiry = await redis_client.zscore(participants_key(room_id), participant)
    return int(joined), int(expiry)


async def redis_ms(redis_client) -> int:
    seconds, micros = await redis_client.time()
    return seconds * 1000 + micros // 1000


async def test_a_session_runs_from_the_first_join_to_the_last_lapse_exactly(client, host, redis_client) -> None:
    contract = JoinContract(redis_client)
    room_id = (await create(client, host))["roomId"]
    alice, bob = someone(), someone()
    assert (await contract.join(room_id, alice, 1_000)).outcome == "admitted"
    assert (await contract.join(room_id, bob, 2_000)).outcome == "admitted"
    assert (await contract.join(room_id, alice, 1_000)).outcome == "already_in"  # no new stint, no new peak
    alice_joined, alice_lapses = await stint(redis_client, room_id, alice)
    bob_joined, bob_lapses = await stint(redis_client, room_id, bob)
    assert await redis_client.hget(session_key(room_id), "startedAt") == str(alice_joined).encode()

    async def both_lapsed() -> bool:
        return await redis_ms(redis_client) > bob_lapses + 50

    await eventually(both_lapsed, 30, "both heartbeats lapsed")
    assert await ended_sessions(redis_client, room_id) == []  # nobody has noticed yet
    carol = someone()
    assert (await contract.join(room_id, carol, 30_000)).outcome == "admitted"  # into an empty room

    # The first session ended when bob's heartbeat lapsed, not when carol's join noticed it.
    [first] = await ended_sessions(redis_client, room_id)
    participant_ms = (alice_lapses - alice_joined) + (bob_lapses - bob_joined)
    assert first == Session(alice_joined, bob_lapses, 2, 2, participant_ms, "empty")
    carol_joined, _ = await stint(redis_client, room_id, carol)
    assert await redis_client.hget(session_key(room_id), "startedAt") == str(carol_joined).encode()
    assert await redis_client.hget(session_key(room_id), "emptySince") == str(bob_lapses).encode()


async def test_a_leave_a_rejoin_and_a_removal_count_each_stint_and_each_participant_once(
    client, host, redis_client
) -> None:
    contract = JoinContract(redis_client)
    room_id = (await create(client, host))["roomId"]
    alice, bob = someone(), someone()
    assert (await contract.join(room_id, alice, 30_000)).outcome == "admitted"
    first_joined, _ = await stint(redis_client, room_id, alice)
    assert (await contract.join(room_id, bob, 30_000)).outcome == "admitted"
    bob_joined, _ = await stint(redis_client, room_id, bob)

    before = await redis_ms(redis_client)
    assert await contract.leave(room_id, alice) is True
    assert (await contract.join(room_id, alice, 30_000)).outcome == "admitted"  # the same session goes on
    second_joined, _ = await stint(redis_client, room_id, alice)
    assert await ended_sessions(redis_client, room_id) == []

    response = await client.delete(f"/rooms/{room_id}/participants/{bob}", headers=host)
    assert response.status_code == 204
    assert await contract.leave(room_id, alice) is True  # the last one out
    after = await redis_ms(redis_client)

    [session] = await ended_sessions(redis_client, room_id)
    assert (session.started_ms, session.peak, session.distinct, session.reason) == (first_joined, 2, 2, "empty")
    assert session.ended_ms is not None
    assert before <= session.ended_ms <= after
    # alice's two stints and bob's one: each left within [before, after], alice the last at ended_ms.
    lowest = (before - first_joined) + (session.ended_ms - second_joined) + (before - bob_joined)
    highest = (after - first_joined) + (session.ended_ms - second_joined) + (after - bob_joined)
    assert lowest <= session.participant_ms <= highest
    assert not await redis_client.exists(joined_key(room_id))  # nobody's stint is open


async def test_a_room_ended_with_people_in_it_ends_their_session_with_it(client, host, redis_client) -> None:
    contract = JoinContract(redis_client)
    room_id = (await create(client, host))["roomId"]
    alice, bob = someone(), someone()
    for member in (alice, bob):
        assert (await contract.join(room_id, member, 30_000)).outcome == "admitted"
    before = await redis_ms(redis_client)

    assert (await client.delete(f"/rooms/{room_id}", headers=host)).status_code == 204

    async def recorded_end() -> bool:  # the relay may apply the end, if the API could not at once
        return bool(await redis_client.lrange(sessions_key(room_id), 0, -1))

    await eventually(recorded_end, 30, "the session ended with the room")
    [session] = await ended_sessions(redis_client, room_id)
    assert session.reason == "room_ended"
    assert session.peak == session.distinct == 2
    assert session.ended_ms is not None
    assert session.ended_ms >= before
    assert not await redis_client.exists(participants_key(room_id))
    # Kept past the room's end, for the worker to record.
    assert await redis_client.pttl(sessions_key(room_id)) > 3_600_000


async def test_a_stint_never_outlasts_the_room(client, host, redis_client, db) -> None:
    """alice leaves after the room key expired but before its end was applied: she was in the room
    until its end, and the session ended with the room."""
    contract = JoinContract(redis_client)
    room_id = (await create(client, host))["roomId"]
    end = await db.fetchval(
        "UPDATE meetings SET expires_at = now() + interval '2 seconds' WHERE room_id = $1 RETURNING expires_at", room_id
    )
    await redis_client.delete(room_key(room_id))
    assert (await client.get(f"/rooms/{room_id}")).status_code == 200  # cached again, to end with the row
    assert (await contract.join(room_id, "alice", 30_000)).outcome == "admitted"
    joined, _ = await stint(redis_client, room_id, "alice")

    async def past_end() -> bool:
        return not await redis_client.exists(room_key(room_id))

    await eventually(past_end, 30, "the room key expired")
    assert await contract.leave(room_id, "alice") is True

    [session] = await ended_sessions(redis_client, room_id)
    end_ms = epoch_ms(end)
    assert session == Session(joined, end_ms, 1, 1, end_ms - joined, "room_ended")


async def test_a_session_whose_members_left_unseen_ends_lost_and_the_next_join_begins_anew(
    client, host, redis_client
) -> None:
    """A script that keeps no sessions (a release before them, during a rolling upgrade) took the last
    member out: the next join ends that session, lost, and begins another."""
    contract = JoinContract(redis_client)
    room_id = (await create(client, host))["roomId"]
    assert (await contract.join(room_id, "alice", 30_000)).outcome == "admitted"
    await redis_client.zrem(participants_key(room_id), "alice")  # what an earlier leave.lua did

    assert (await contract.join(room_id, "bob", 30_000)).outcome == "admitted"

    [lost] = await ended_sessions(redis_client, room_id)
    assert lost.reason == "lost"
    bob_joined, _ = await stint(redis_client, room_id, "bob")
    assert lost.ended_ms == bob_joined  # noticed then
    # The next session begins after it, a ms later: no two sessions of a room begin at one moment.
    assert int(await redis_client.hget(session_key(room_id), "startedAt")) == bob_joined + 1
    assert await redis_client.pttl(session_key(room_id)) > 3_600_000  # kept its expiry through the close


async def test_a_room_that_empties_and_fills_again_never_begins_two_sessions_at_one_moment(
    client, host, redis_client
) -> None:
    """A session begins after the last one ended, even if the clock says otherwise (within one ms, or
    a Redis clock that stepped back after a failover): sessions are named by their start."""
    contract = JoinContract(redis_client)
    room_id = (await create(client, host))["roomId"]
    assert (await contract.join(room_id, "alice", 30_000)).outcome == "admitted"
    await contract.leave(room_id, "alice")
    [first] = await ended_sessions(redis_client, room_id)
    assert first.ended_ms is not None
    ahead = first.ended_ms + 10_000  # as if the last session ended 10 s ahead of this clock
    await redis_client.hset(session_key(room_id), "emptySince", ahead)

    assert (await contract.join(room_id, "alice", 30_000)).outcome == "admitted"

    assert int(await redis_client.hget(session_key(room_id), "startedAt")) == ahead + 1


async def test_a_room_ends_even_if_a_key_of_its_sessions_holds_another_writers_value(
    client, host, redis_client
) -> None:
    contract = JoinContract(redis_client)
    room_id = (await create(client, host))["roomId"]
    assert (await contract.join(room_id, "alice", 30_000)).outcome == "admitted"
    await redis_client.set(sessions_key(room_id), "not a list")

    assert (await client.delete(f"/rooms/{room_id}", headers=host)).status_code == 204

    assert not await redis_client.exists(room_key(room_id))
    assert (await contract.join(room_id, "bob", 30_000)).outcome == "not_cached"
