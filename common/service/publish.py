"""Publishing committed changes: Redis brought in line with them (cache first), their events appended
to the stream, their outbox rows marked. The one path the API, the outbox relay and expiry all use.

The order is the contract: a consumer that reads `room.created` finds `room:{roomId}`, and one that
reads `room.ended` no longer does. An event counts as published only once the stream has it; one
that was not marked (the process died, Postgres was away) is published again by the relay, and
consumers drop the copy by its `eventId`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from common.db import outbox
from common.db.outbox import Outboxed, marks_of
from common.db.pool import Pool, connection
from common.errors import DatabaseUnavailable
from common.redis.room_cache import RoomCache
from common.redis.stream import EventStream
from common.rooms.model import CachedRoom

log = logging.getLogger(__name__)

# Published outbox rows waiting to be marked while Postgres is away; past this, the relay repeats them.
_MAX_PENDING_MARKS = 100_000

Mark = Callable[[Sequence[Outboxed]], Awaitable[None]]


class Publisher:
    def __init__(self, cache: RoomCache, stream: EventStream) -> None:
        self._cache = cache
        self._stream = stream

    @property
    def stream(self) -> EventStream:
        return self._stream

    async def publish(self, changes: Sequence[Outboxed], mark: Mark) -> bool:
        """Apply the changes to the cache and append their events, in one round trip, then `mark` the
        outbox rows of exactly the events the stream took. Returns whether it took them all: the rows
        of the others stay for the relay (none is marked that is not on the stream, and none that is
        on it is left unmarked, so no event goes out twice because another command failed)."""
        appended = await self._apply(changes, then_append=True)
        if appended is None:
            return False
        published = [change for change, on_stream in zip(changes, appended, strict=True) if on_stream]
        if published:
            await mark(published)
        return len(published) == len(changes)

    async def apply_only(self, changes: Sequence[Outboxed]) -> None:
        """Apply the events' effect on the cache without publishing them: what the API does when an
        earlier event of the room still waits in the outbox, for the relay to publish both in order
        (and apply them again, harmlessly, if this did not reach Redis)."""
        await self._apply(changes, then_append=False)

    async def _apply(self, changes: Sequence[Outboxed], *, then_append: bool) -> list[bool] | None:
        """Whether each event reached the stream (all False without `then_append`); None if Redis
        could not be reached. A room whose cache write Redis refused is logged and counted by the
        cache; its event still goes out (on one server it already has, in the same round trip), and
        the sweep puts the room object back."""
        # What an event says the cache should become: its room object, or no room at all. Both the
        # object and the event's data are the outbox row's JSON, as the database made it.
        # put_room.lua keeps newer objects in place and ended rooms out, so a late repeat is harmless.
        events = [(change.event, change.data) for change in changes]
        done = await self._cache.write_each(
            put=[CachedRoom(event.data, data) for event, data in events if event.changes_room and not event.ends_room],
            end=[event.data for event, _ in events if event.ends_room],
            then=(lambda queue: self._stream.queue_append(queue, events)) if then_append else None,
        )
        if done is None:
            return None
        appended = [not isinstance(result, Exception) for result in done.then]
        for result in done.then:
            if isinstance(result, Exception):
                log.warning("the stream refused an event: %s", result)
                break
        return appended if then_append else [False] * len(changes)


class DeferredMarks:
    """Outbox rows whose events are on the stream, marked published many per statement.

    Marking is bookkeeping, not part of the answer: one UPDATE per request would cost every create a
    second Postgres round trip. The relay leaves rows younger than `relay_grace_seconds` alone, so a
    row marked a moment late is not published twice.
    """

    def __init__(self, pool: Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._pending: list[tuple[int, int]] = []  # (outbox id, generation)
        self._flushing = asyncio.Lock()

    async def add(self, changes: Sequence[Outboxed]) -> None:
        """A `Mark` for `Publisher.publish`: the rows are marked by the next `flush`."""
        self._pending.extend(marks_of(changes))

    async def flush(self) -> None:
        """Mark what is pending. Never raises: a batch that could not be marked is kept (bounded) for
        the next round. Returns once every mark added before the call is committed (or kept): a
        flush already under way is waited for, not overtaken."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        marked = False
        try:
            async with connection(self._pool, self._timeout) as conn:
                await outbox.mark_published(conn, batch)
            marked = True
        except DatabaseUnavailable as exc:
            log.warning("could not mark %d events published yet: %s", len(batch), exc)
        except Exception:  # runs in a background task, which must outlive any one failure
            log.exception("could not mark %d events published", len(batch))
        finally:
            if not marked:  # failed or cancelled: keep them for the next round (or the final flush)
                # Past the bound, the relay publishes the rest again and consumers drop the copies.
                self._pending = (batch + self._pending)[-_MAX_PENDING_MARKS:]
