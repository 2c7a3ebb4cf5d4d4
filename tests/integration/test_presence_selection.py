"""Which rooms the presence pass visits (worker/jobs/presence.py): those whose session key Redis holds,
found by a SCAN of every primary, and those the database says may have news; not the rooms nobody
joined whose timeouts are not due. And a room whose check Redis refuses holds up no other."""

from __future__ import annotations

import pytest

from common.db.sessions import due_rooms
from common.redis.keys import joined_key, participants_key, session_key, sessions_key
from common.redis.sessions import rooms_with_sessions
from common.signaling.contract import JoinContract
from tests.support.metrics import metric_value
from tests.support.presence import HEARTBEAT_MS, recorded, room_with
from tests.support.waiting import eventually
from worker.jobs.presence import check_presence


async def test_the_pass_finds_rooms_in_use_by_their_session_keys_and_due_ones_in_the_database(
    client, host, redis_client, worker_res, db
) -> None:
    contract = JoinContract(redis_client)
    idle = await room_with(client, host, unusedTimeoutSeconds=3600)
    used = await room_with(client, host, unusedTimeoutSeconds=3600)
    due = await room_with(client, host, unusedTimeoutSeconds=1)
    assert (await contract.join(used, "alice", HEARTBEAT_MS)).outcome == "admitted"

    found: set[str] = set()
    async for codes in rooms_with_sessions(worker_res.guarded, 100):
        assert codes is not None
        found.update(codes)
    assert used in found
    assert not {idle, due} & found

    async def past_its_deadline() -> bool:
        return due in {room.room_id for room in await due_rooms(db)}

    await eventually(past_its_deadline, 15, "the room nobody joined is due for its unused timeout")
    listed = {room.room_id for room in await due_rooms(db)}
    assert idle not in listed
    assert used not in listed  # the database knows nothing of it yet: Redis tells

    await check_presence({"resources": worker_res})
    [row] = await recorded(db, used)
    assert row["ended_at"] is None
    assert used in {room.room_id for room in await due_rooms(db)}  # in session now, as far as it knows
    assert not await db.fetchval("SELECT is_active FROM meetings WHERE room_id = $1", due)
    assert await db.fetchval("SELECT is_active FROM meetings WHERE room_id = $1", idle)


@pytest.mark.one_topology  # what the pass records in Postgres: the same on every topology
async def test_a_room_whose_check_redis_refuses_holds_up_no_other(client, host, redis_client, worker_res, db) -> None:
    contract = JoinContract(redis_client)
    bad, good = await room_with(client, host), await room_with(client, host)
    for room in (bad, good):
        assert (await contract.join(room, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await contract.leave(good, "alice")
    # Another writer's value where the ended sessions go, and the members taken out without their
    # session being closed: closing it there fails (WRONGTYPE), on every pass.
    await redis_client.set(sessions_key(bad), "not a list")
    await redis_client.delete(participants_key(bad), joined_key(bad))

    await check_presence({"resources": worker_res})

    [row] = await recorded(db, good)
    assert row["end_reason"] == "empty"
    exposed = worker_res.metrics.exposition().decode()
    assert (metric_value(exposed, "roomservice_presence_checks_refused_total") or 0) >= 1  # the suite's others too
    assert (metric_value(exposed, "roomservice_rooms_live") or 0) >= 2  # the pass went through to the end
    assert await redis_client.get(sessions_key(bad)) == b"not a list"  # nothing of it was touched


@pytest.mark.one_topology
async def test_a_session_begun_ahead_of_the_clock_and_lost_ends_no_earlier_than_it_began(
    client, host, redis_client, worker_res, db
) -> None:
    contract = JoinContract(redis_client)
    room_id = await room_with(client, host)
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await contract.leave(room_id, "alice")
    await check_presence({"resources": worker_res})
    [first] = await recorded(db, room_id)
    # The last session ended 5 s ahead of Redis's clock (one that stepped back): the next begins after it.
    ahead = int(first["ended_at"].timestamp() * 1000) + 5_000
    await redis_client.hset(session_key(room_id), "emptySince", ahead)
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await check_presence({"resources": worker_res})
    # Redis loses the session (a restart without its data).
    await redis_client.delete(session_key(room_id), participants_key(room_id), joined_key(room_id))

    await check_presence({"resources": worker_res})

    _, second = await recorded(db, room_id)
    assert second["end_reason"] == "lost"
    assert second["ended_at"] == second["started_at"]  # seen no earlier than it began
