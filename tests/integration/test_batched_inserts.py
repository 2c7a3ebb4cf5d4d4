"""Creates of one moment share one Postgres statement (`RoomInserts`), and the marks that follow them
(`DeferredMarks`). Statements are counted on the Postgres side by the transaction that wrote each row
(`xmin`), each request still getting its own answer."""

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
from common.service.publish import DeferredMarks
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


async def test_rooms_of_one_statement_keep_their_own_cohosts(room_inserts, db, new_host) -> None:
    # Each room's list goes through unnest as an array literal: rooms with none, one and several
    # co-hosts, and metadata on some, side by side in one statement.
    host = new_host()
    wanted = [tuple(uuid.uuid4() for _ in range(i % 4)) for i in range(12)]
    made = await asyncio.gather(
        *(
            room_inserts.insert(host, 4, TTL, None, metadata=f'{{"i":{i}}}' if i % 2 else None, cohost_ids=cohosts)
            for i, cohosts in enumerate(wanted)
        )
    )

    assert await transactions_that_wrote(db, host) == 1
    rooms = [one[0] for one in made if one is not None]
    assert [room.cohost_ids for room in rooms] == wanted
    assert [room.metadata for room in rooms] == [{"i": i} if i % 2 else None for i in range(12)]
    for room, cohosts in zip(rooms, wanted, strict=True):
        stored = await db.fetchval("SELECT cohost_ids FROM meetings WHERE room_id = $1", room.room_id)
        assert tuple(stored) == cohosts
    assert [one[1].event.data.cohost_ids for one in made if one is not None] == wanted  # the events' data too


async def test_concurrent_creates_share_one_statement_and_each_gets_its_own_room(room_inserts, db, new_host) -> None:
    host = new_host()
    made = await asyncio.gather(*(room_inserts.insert(host, 2 + i % 3, TTL, None) for i in range(50)))

    rooms = [one[0] for one in made if one is not None]
    assert [room.max_participants for room in rooms] == [2 + i % 3 for i in range(50)]
    assert len({room.room_id for room in rooms}) == 50
    assert all(event.event.data.room_id == room.room_id for room, event in (one for one in made if one))
    assert await transactions_that_wrote(db, host) == 1  # one by one, it would be 50


async def test_one_key_twice_at_once_makes_one_room(room_inserts, db, new_host) -> None:
    host = new_host()
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


async def test_a_taken_code_in_a_batch_leaves_the_others_their_codes(pool, db, new_host) -> None:
    taken = generate_room_code()
    await db.execute(
        "INSERT INTO meetings (room_id, host_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')",
        taken,
        new_host(),
    )
    mine, others, fresh = generate_room_code(), generate_room_code(), generate_room_code()
    metrics = Metrics()
    shared = inserts(pool, metrics, codes=iter([taken, mine, others, fresh]))
    host = new_host()

    made = await asyncio.gather(*(shared.insert(host, 4, TTL, None) for _ in range(3)))

    assert [one[0].room_id for one in made if one] == [fresh, mine, others]
    assert metrics.count("room_code_collisions_total") == 1


async def test_a_code_drawn_twice_at_once_is_drawn_again(pool, db, new_host) -> None:
    twice, third = generate_room_code(), generate_room_code()
    shared = inserts(pool, codes=iter([twice, twice, third]))
    host = new_host()

    made = await asyncio.gather(shared.insert(host, 3, TTL, None), shared.insert(host, 4, TTL, None))

    assert [(one[0].room_id, one[0].max_participants) for one in made if one] == [(twice, 3), (third, 4)]


async def test_statements_with_the_same_keys_never_deadlock(room_inserts, caplog, new_host) -> None:
    """Each key twice in one moment: the second ones go in a later statement, gathered in another
    order. Statements that claimed keys in the order they came would deadlock (and fail) here."""
    host = new_host()
    keys = [f"key-{i}" for i in range(8)]
    for round_number in range(100):
        order = keys + keys[::-1] if round_number % 2 else keys[::-1] + keys
        made = await asyncio.gather(
            *(room_inserts.insert(host, 4, TTL, claim_for(f"{round_number}-{key}", 4)) for key in order)
        )
        assert sum(one is not None for one in made) == len(keys)  # one room per key, no error
    assert "deadlock" not in caplog.text  # not even one that a retry then hid


async def test_a_flush_waits_for_the_one_under_way(pool, db, new_host) -> None:
    """A change flushes the marks before it reads whether its room has events waiting: a flush the
    background loop has under way must be committed by then, not skipped as nothing pending."""
    made = await inserts(pool).insert(new_host(), 4, TTL, None)
    assert made is not None
    room, created = made
    marks = DeferredMarks(pool, timeout=5)
    await marks.add([created])

    async with db.transaction():  # holds the outbox row, so the first flush's UPDATE waits
        await db.execute("SELECT 1 FROM room_events WHERE id = $1 FOR UPDATE", created.outbox_id)
        under_way = asyncio.ensure_future(marks.flush())
        await asyncio.sleep(0.2)
        second = asyncio.ensure_future(marks.flush())
        await asyncio.sleep(0.2)
        assert not second.done()  # it waits for the first, rather than find nothing pending
    await asyncio.gather(under_way, second)

    assert await db.fetchval("SELECT published_at IS NOT NULL FROM room_events WHERE id = $1", created.outbox_id)
    assert room.room_id == created.event.room_id
