"""Creating rooms in Postgres: the rooms asked for at the same moment go in one statement.

Each create is a write and a commit; what costs is not the row but the round trip, the connection
taken from the pool and the commit. Creates gathered within one turn of the event loop share all
three, the way `GuardedRedis` gathers Redis calls. Each request keeps its own answer: its room, or
its key found taken, or its own failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from common.db import rooms
from common.db.outbox import Outboxed
from common.db.pool import Pool, connection
from common.db.rooms import NewRoom
from common.errors import NoFreeRoomCode
from common.metrics import Metrics
from common.rooms.model import Room
from common.service.idempotency import Claim
from common.tracing import current_traceparent

log = logging.getLogger(__name__)

# With 26^10 codes a collision is already rare; five in a row means something else is wrong.
_CODE_ATTEMPTS = 5

Made = tuple[Room, Outboxed] | None  # None: the request's Idempotency-Key is taken


class _Alone:
    """The batch met a taken room code: each of its requests inserts on its own, drawing again if
    its own code was the one taken."""


@dataclass(slots=True)
class _Waiting:
    room: NewRoom
    since: float  # loop time it was asked for: its bound runs from here
    answer: asyncio.Future[Made | _Alone]


class RoomInserts:
    def __init__(self, pool: Pool, timeout: float, metrics: Metrics, new_code: Callable[[], str]) -> None:
        self._pool = pool
        self._timeout = timeout
        self._metrics = metrics
        self._new_code = new_code
        self._gathering: list[_Waiting] = []
        self._in_flight: set[asyncio.Task[None]] = set()  # batches being sent: referenced until done

    async def insert(
        self,
        host_id: UUID,
        max_participants: int,
        ttl_seconds: int,
        claim: Claim | None,
        *,
        metadata: str | None = None,
        cohost_ids: tuple[UUID, ...] = (),
    ) -> Made:
        """A new room with a fresh code and its `room.created` event, or None if `claim`'s key is taken;
        `metadata` as compact JSON. Raises `DatabaseUnavailable` (Postgres down or slower than the bound)
        and `NoFreeRoomCode`."""
        loop = asyncio.get_running_loop()
        # The traceparent is taken here, in the request's own context: the statement may be another's.
        room = NewRoom(
            self._new_code(),
            host_id,
            max_participants,
            ttl_seconds,
            claim,
            traceparent=current_traceparent(),
            metadata=metadata,
            cohost_ids=cohost_ids,
        )
        waiting = _Waiting(room, loop.time(), loop.create_future())
        self._gathering.append(waiting)
        if len(self._gathering) == 1:
            loop.call_soon(self._send_gathered)  # after every request of this turn has had its say
        made = await waiting.answer
        if isinstance(made, _Alone):
            return await self._insert_alone(waiting.room)
        return made

    def _send_gathered(self) -> None:
        """Send what was gathered. Within one statement the rows have distinct codes (a code drawn
        twice is drawn again: the rows are told apart by it) and distinct keys (Postgres claims a key
        once per statement): a second request with a key waits for the statement of the first, then
        goes in the next one and finds the key taken."""
        batch: list[_Waiting] = []
        later: list[_Waiting] = []
        keys: set[tuple[UUID, str]] = set()
        codes: set[str] = set()
        for waiting in self._gathering:
            if waiting.answer.done():
                continue  # cancelled before it left: never sent
            claim = waiting.room.idempotency
            if claim is not None and (waiting.room.host_id, claim[0]) in keys:
                later.append(waiting)
                continue
            if claim is not None:
                keys.add((waiting.room.host_id, claim[0]))
            while waiting.room.room_id in codes:
                waiting.room = waiting.room._replace(room_id=self._new_code())
            codes.add(waiting.room.room_id)
            batch.append(waiting)
        self._gathering = later
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            if later:
                task.add_done_callback(lambda _: self._send_gathered())

    async def _send(self, batch: list[_Waiting]) -> None:
        """One statement for the batch, bounded by the earliest bound among its requests."""
        left = batch[0].since + self._timeout - asyncio.get_running_loop().time()
        made: list[Made] | None = None
        try:
            async with connection(self._pool, max(left, 0.001)) as conn:
                made = await rooms.create_rooms(conn, [waiting.room for waiting in batch])
        except asyncpg.UniqueViolationError as exc:
            outcome: BaseException | _Alone = _Alone() if exc.constraint_name == "meetings_room_id_key" else exc
            for waiting in batch:
                _settle(waiting, outcome)
            return
        except asyncpg.DeadlockDetectedError:
            # The statement claims its keys in one order (see rooms.create_rooms), but another
            # writer of the key table may not: each request tries again on its own.
            log.warning("creating %d rooms met a deadlock; each is tried again on its own", len(batch))
            for waiting in batch:
                _settle(waiting, _Alone())
            return
        except Exception as exc:  # each request raises it, as it would have alone
            for waiting in batch:
                _settle(waiting, exc)
            return
        finally:  # cancelled (the app stopping): nobody is left waiting
            for waiting in batch:
                if not waiting.answer.done() and made is None:
                    waiting.answer.cancel()
        for waiting, one in zip(batch, made, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(one)

    async def _insert_alone(self, room: NewRoom) -> Made:
        """The room in a statement of its own, drawing another code while the drawn one is taken."""
        for attempt in range(_CODE_ATTEMPTS):
            if attempt:
                room = room._replace(room_id=self._new_code())
            try:
                async with connection(self._pool, self._timeout) as conn:
                    return (await rooms.create_rooms(conn, [room]))[0]
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "meetings_room_id_key":
                    raise
                self._metrics.incr("room_code_collisions_total")
                log.warning("room code %s was taken; drawing another", room.room_id)
        raise NoFreeRoomCode(f"no free room code after {_CODE_ATTEMPTS} attempts")


def _settle(waiting: _Waiting, outcome: BaseException | _Alone) -> None:
    if waiting.answer.done():
        return
    if isinstance(outcome, _Alone):
        waiting.answer.set_result(outcome)
    else:
        waiting.answer.set_exception(outcome)
