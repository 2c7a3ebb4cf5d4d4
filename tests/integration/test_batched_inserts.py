"""Creates of one moment share one Postgres statement (`RoomInserts`): counted on the Postgres side by
the transaction that wrote each row (`xmin`), each request still getting its own answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from common.db.pool import Pool, close_pool, create_pool
from common.metrics import Metrics
from common.rooms.codes import generate_room_code
from common.service.idempotency import claim_for
from common.service.inserts import RoomInserts
from tests.support.settings import make_settings

TTL = 3600


@pytest.fixture
async def pool(database_url: str, redis_url: str) -> AsyncIterator[Pool]:
    settings = make_settings(database_url, redis_url)
    made = await create_pool(settings)
    yield made
    await close_pool(made, settings)


def inserts(pool: Pool, metrics: Metrics | None = None, codes: Iterator[str] | None = None) -> RoomInserts:
    new_code: Callable[[], str] = (lambda: next(codes)) if codes is not None else generate_room_code
    return RoomInserts(pool, timeout=5, metrics=metrics or Metrics(), new_code=new_code)


async def transactions_that_wrote(db, host: uuid.UUID) -> int:
    return int(await db.fetchval("SELECT count(DISTINCT xmin::text) FROM meetings WHERE host_id = $1", host))


@pytest.fixture
def room_inserts(pool: Pool) -> RoomInserts:
    """As the service has it: one for the process, so that concurrent requests meet in it."""
    return inserts(pool)


async def test_concurrent_creates_share_one_statement_and_each_gets_its_own_room(room_inserts, db) -> None:
    host = uuid.uuid4()
    made = await asyncio.gather(*(room_inserts.insert(host, 2 + i % 3, TTL, None) for i in range(50)))

    rooms = [one[0] for one in made if one is not None]
    assert [room.max_participants for room in rooms] == [2 + i % 3 for i in range(50)]
    assert len({room.room_id for room in rooms}) == 50
    assert all(event.event.data.room_id == room.room_id for room, event in (one for one in made if one))
    assert await transactions_that_wrote(db, host) == 1  # one by one, it would be 50


async def test_one_key_twice_at_once_makes_one_room(room_inserts, db) -> None:
    host = uuid.uuid4()
    first, second, other = await asyncio.gather(
        room_inserts.insert(host, 4, TTL, claim_for("key-1", 4)),
        room_inserts.insert(host, 4, TTL, claim_for("key-1", 4)),
        room_inserts.insert(host, 4, TTL, claim_for("key-2", 4)),
    )
    # The second of the pair goes in the next statement, and either may reach Postgres first: one
    # makes the room, the other finds the key taken (the service then answers with that room).
    assert [first is None, second is None].count(True) == 1
    assert other is not None
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", host) == 2


async def test_a_taken_code_in_a_batch_costs_the_others_nothing(pool, db) -> None:
    taken = generate_room_code()
    await db.execute(
        "INSERT INTO meetings (room_id, host_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')",
        taken,
        uuid.uuid4(),
    )
    mine, others, fresh = generate_room_code(), generate_room_code(), generate_room_code()
    metrics = Metrics()
    shared = inserts(pool, metrics, codes=iter([taken, mine, others, fresh]))
    host = uuid.uuid4()

    made = await asyncio.gather(*(shared.insert(host, 4, TTL, None) for _ in range(3)))

    assert [one[0].room_id for one in made if one] == [fresh, mine, others]
    assert "roomservice_room_code_collisions_total 1" in metrics.render()
