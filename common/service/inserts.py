"""Creating rooms in Postgres: the rooms asked for at the same moment go in one statement.

Each create is a write and a commit; what costs is not the row but the round trip, the connection
taken from the pool and the commit. Creates gathered within one turn of the event loop share all
three, the way `GuardedRedis` gathers Redis calls. Each request keeps its own answer: its room, or
its key found taken, or its own failure, within its own bound.

A statement may claim an Idempotency-Key once only, and a second claim of a key waits for the
first's transaction. So a request whose key another request of this process is claiming (a client's
retry) waits alone: for that claim to end, then in a statement of its own. It never joins a batch,
so the creates of other keys never wait on it, nor inherit its deadline.
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
from common.errors import DatabaseUnavailable, NoFreeRoomCode
from common.metrics import Metrics
from common.rooms.model import Room
from common.service.checks import UNSCHEDULED, Schedule
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
        # The keys requests of this process are claiming, each with the event set when its claim ends.
        self._claiming: dict[tuple[UUID, str], asyncio.Event] = {}

    async def insert(
        self,
        host_id: UUID,
        max_participants: int,
        ttl_seconds: int,
        claim: Claim | None,
        *,
        metadata: str | None = None,
        cohost_ids: tuple[UUID, ...] = (),
        schedule: Schedule = UNSCHEDULED,
        timeouts: tuple[int, int] = (0, 0),
    ) -> Made:
        """A new room with a fresh code and its `room.created` event, or None if `claim`'s key is taken;
        `metadata` as compact JSON; `schedule` checked (common/service/checks.py); `timeouts` its empty
        and unused timeouts, in seconds (0: never). Raises
        `DatabaseUnavailable` (Postgres down or slower than the bound) and `NoFreeRoomCode`."""
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
            starts_at=schedule.starts_at,
            expires_at=schedule.expires_at,
            empty_timeout_seconds=timeouts[0],
            unused_timeout_seconds=timeouts[1],
        )
        since = loop.time()
        if claim is None:
            return await self._insert_gathered(room, since)
        # One claim of a key at a time in this process: the first goes with its turn's batch, any
        # other (a retry) waits for the claims before it to end, then goes alone.
        key = (host_id, claim.key)
        retry = key in self._claiming
        while (claimed := self._claiming.get(key)) is not None:
            await self._wait_for(claimed, since)
        self._claiming[key] = claim_ended = asyncio.Event()
        try:
            return await (self._insert_alone(room, since) if retry else self._insert_gathered(room, since))
        finally:
            claim_ended.set()
            del self._claiming[key]

    async def _insert_gathered(self, room: NewRoom, since: float) -> Made:
        """The room in the statement of this turn's creates."""
        waiting = _Waiting(room, since, asyncio.get_running_loop().create_future())
        self._gathering.append(waiting)
        if len(self._gathering) == 1:
            asyncio.get_running_loop().call_soon(self._send_gathered)  # after every request of this turn
        made = await waiting.answer
        if isinstance(made, _Alone):
            return await self._insert_alone(waiting.room, since)
        return made

    async def _wait_for(self, claimed: asyncio.Event, since: float) -> None:
        """Wait for another request's claim of the same key, within this request's own bound."""
        try:
            async with asyncio.timeout(self._left(since)):
                await claimed.wait()
        except TimeoutError as exc:
            raise DatabaseUnavailable("database unavailable: an earlier request with this key is under way") from exc

    def _left(self, since: float) -> float:
        """What is left of the bound of a request asked for at `since` (loop time)."""
        return max(since + self._timeout - asyncio.get_running_loop().time(), 0.001)

    def _send_gathered(self) -> None:
        """Send what was gathered in one statement. Within it the rows have distinct codes (a code
        drawn twice is drawn again: the rows are told apart by it); their keys are distinct already,
        since a key being claimed never joins a batch (see `insert`)."""
        batch: list[_Waiting] = []
        codes: set[str] = set()
        for waiting in self._gathering:
            if waiting.answer.done():
                continue  # cancelled before it left: never sent
            while waiting.room.room_id in codes:
                waiting.room = waiting.room._replace(room_id=self._new_code())
            codes.add(waiting.room.room_id)
            batch.append(waiting)
        self._gathering = []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _send(self, batch: list[_Waiting]) -> None:
        """One statement for the batch, bounded by the earliest bound among its requests (all of them
        asked within the turn that sent it)."""
        made: list[Made] | None = None
        try:
            async with connection(self._pool, self._left(min(waiting.since for waiting in batch))) as conn:
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

    async def _insert_alone(self, room: NewRoom, since: float) -> Made:
        """The room in a statement of its own, drawing another code while the drawn one is taken,
        within the bound of the request asked for at `since`."""
        for attempt in range(_CODE_ATTEMPTS):
            if attempt:
                room = room._replace(room_id=self._new_code())
            try:
                async with connection(self._pool, self._left(since)) as conn:
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
