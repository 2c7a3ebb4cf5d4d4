"""A retried Idempotency-Key waits alone: the creates of other keys, in the same process, neither wait
for it nor inherit its deadline (common/service/inserts.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from common.db.pool import Pool, close_pool, create_pool
from common.errors import DatabaseUnavailable
from common.metrics import Metrics
from common.rooms.codes import generate_room_code
from common.service.idempotency import claim_for
from common.service.inserts import RoomInserts
from tests.support.settings import make_settings
from tests.support.waiting import eventually

TTL = 3600
# Each create's bound. Long enough for a slow machine to see the held lock and send the others
# well within it; the others must answer in half of it.
BOUND = 4.0


@pytest.fixture
async def pool(database_url: str, redis_url: str) -> AsyncIterator[Pool]:
    settings = make_settings(database_url, redis_url)
    made = await create_pool(settings, command_timeout=BOUND)  # the statements' bound is the creates'
    yield made
    await close_pool(made, settings)


@pytest.fixture
def room_inserts(pool: Pool) -> RoomInserts:
    return RoomInserts(pool, timeout=BOUND, metrics=Metrics(), new_code=generate_room_code)


async def a_statement_waits_on_a_lock(db) -> bool:
    return bool(
        await db.fetchval(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


async def test_a_retry_held_by_its_key_holds_up_no_other_create(room_inserts, db, new_host) -> None:
    host = new_host()
    assert await room_inserts.insert(host, 4, TTL, claim_for("key-1", 4)) is not None
    loop = asyncio.get_running_loop()

    async with db.transaction():
        # Another connection holds the key's row (as a slow first request of another process
        # would): a claim of the key waits for it.
        await db.execute("SELECT 1 FROM idempotency_keys WHERE host_id = $1 AND key = 'key-1' FOR UPDATE", host)
        retries = [asyncio.ensure_future(room_inserts.insert(host, 4, TTL, claim_for("key-1", 4))) for _ in range(2)]
        await eventually(lambda: a_statement_waits_on_a_lock(db), within=BOUND / 2, what="the retry waits")

        started = loop.time()
        others = await asyncio.gather(
            *(room_inserts.insert(new_host(), 4, TTL, claim_for(f"other-{i}", 4)) for i in range(3)),
            *(room_inserts.insert(new_host(), 4, TTL, None) for _ in range(3)),
            return_exceptions=True,
        )
        elapsed = loop.time() - started
        still_waiting = not any(retry.done() for retry in retries)

    # Not 503 for a deadline inherited from the retry, and not held until the retry's statement ended.
    assert not [one for one in others if isinstance(one, BaseException)], others
    assert all(one is not None for one in others)
    assert elapsed < BOUND / 2, f"the other creates took {elapsed:.2f}s"
    assert still_waiting
    # The lock gone, each retry finds the key taken: the service answers with the first room.
    assert await asyncio.gather(*retries) == [None, None]
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", host) == 1


async def test_a_retry_gives_up_at_its_own_bound(room_inserts, db, new_host) -> None:
    host = new_host()
    assert await room_inserts.insert(host, 4, TTL, claim_for("key-1", 4)) is not None
    loop = asyncio.get_running_loop()

    async with db.transaction():
        await db.execute("SELECT 1 FROM idempotency_keys WHERE host_id = $1 AND key = 'key-1' FOR UPDATE", host)
        started = loop.time()
        first = asyncio.ensure_future(room_inserts.insert(host, 4, TTL, claim_for("key-1", 4)))
        await eventually(lambda: a_statement_waits_on_a_lock(db), within=BOUND / 2, what="the first waits")
        retry_started = loop.time()
        retry = asyncio.ensure_future(room_inserts.insert(host, 4, TTL, claim_for("key-1", 4)))
        with pytest.raises(DatabaseUnavailable):
            await first
        # The first gave up at its bound; the retry goes on, alone, until its own.
        assert loop.time() - started < BOUND + 1.0
        with pytest.raises(DatabaseUnavailable):
            await retry
        assert BOUND - 0.1 <= loop.time() - retry_started < BOUND + 1.0

    # Afterwards, creates have their whole bound again.
    assert await room_inserts.insert(new_host(), 4, TTL, None) is not None


async def test_the_same_key_three_times_at_once_makes_one_room_beside_the_others(room_inserts, db, new_host) -> None:
    host, other = new_host(), new_host()
    made = await asyncio.gather(
        *(room_inserts.insert(host, 4, TTL, claim_for("key-1", 4)) for _ in range(3)),
        *(room_inserts.insert(other, 4, TTL, claim_for(f"key-{i}", 4)) for i in range(5)),
    )
    assert [one is None for one in made[:3]].count(False) == 1
    assert all(one is not None for one in made[3:])
    # The first of the key went in one statement with the others; the retries each went alone.
    assert await db.fetchval("SELECT count(DISTINCT xmin::text) FROM meetings WHERE host_id = $1", other) == 1
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", host) == 1
