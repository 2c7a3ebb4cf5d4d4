"""The room stream's history consumer: records every event in Postgres, with daily aggregates.

A consumer group spreads entries over the workers. An entry is acknowledged only after its effect is
committed, and the effect is idempotent by `eventId`, so redelivery (after a crash, or to another
worker that claims it) never counts twice.

An entry goes to the dead-letter stream for a failure of its own: it cannot be decoded, Postgres
refuses it, or it was delivered `max_deliveries` times to consumers that vanished without an answer
(an entry that kills its worker). Waiting is not failing: a consumer renews its hold on the entries
in hand while it works on them (above all while it waits out a Postgres outage), so no other
consumer claims them, and the delivery count grows only when a consumer dies or stops with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg
from redis.exceptions import RedisError, ResponseError
from redis.typing import StreamIdT

from common.db.history import record_history
from common.db.pool import connection
from common.errors import DatabaseUnavailable
from common.redis.keys import dead_letter_stream
from common.redis.stream import retention_floor
from common.rooms.events import InvalidEntry, RoomEvent, from_stream_fields
from worker.backoff import Backoff
from worker.monitor import CONSUMER_LOOP
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# How long XREADGROUP waits for new entries; also how quickly a stop request is noticed.
_BLOCK_MS = 1000
# Consumers that have been idle this long and hold nothing are removed from the group.
_FORGET_CONSUMERS_AFTER_MS = 24 * 3600 * 1000

Entry = tuple[bytes, dict[bytes, bytes]]


class HistoryConsumer:
    """One member of the consumer group. `run` loops until `stop` is set."""

    def __init__(self, res: WorkerResources, name: str | None = None, block_ms: int = _BLOCK_MS) -> None:
        self._res = res
        self._redis = res.redis
        settings = res.settings
        self._stream = settings.stream_name
        self._group = settings.consumer_group
        self._batch = settings.consumer_batch_size
        self._claim_idle_ms = int(settings.claim_idle_seconds * 1000)
        self._max_deliveries = settings.max_deliveries
        self._timeout = settings.worker_redis_timeout_seconds
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._block_ms = block_ms
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        await self.ensure_group()
        # Entries this consumer was given but did not acknowledge (it failed mid-batch) come first.
        own_backlog = True
        next_claim = 0.0
        while not stop.is_set():
            self._res.monitor.beat(CONSUMER_LOOP)
            if time.monotonic() >= next_claim:
                await self.claim_abandoned()
                next_claim = time.monotonic() + self._claim_idle_ms / 2000
            entries = await self.read(own_backlog)
            if own_backlog and not entries:
                own_backlog = False
                continue
            await self.handle(entries)

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if needed; a group made now starts at the stream's beginning."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, own_backlog: bool) -> list[Entry]:
        async with asyncio.timeout(self._timeout + self._block_ms / 1000):
            reply = await self._redis.xreadgroup(
                self._group,
                self.name,
                {self._stream: "0" if own_backlog else ">"},
                count=self._batch,
                block=None if own_backlog else self._block_ms,
            )
        return [(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries if fields]

    async def handle(self, entries: Sequence[Entry]) -> None:
        """Record a batch and acknowledge it. A Postgres outage is waited out, holding the batch; if the
        worker is stopping meanwhile, this raises and the batch stays pending, to be re-read or claimed later."""
        if not entries:
            return
        async with self._holding([entry_id for entry_id, _ in entries]):
            await self._record_and_ack(entries)

    async def _record_and_ack(self, entries: Sequence[Entry]) -> None:
        events: list[tuple[bytes, RoomEvent]] = []
        for entry_id, fields in entries:
            try:
                events.append((entry_id, from_stream_fields(fields)))
            except InvalidEntry as exc:
                await self.dead_letter(entry_id, fields, str(exc))
        try:
            await self._record([event for _, event in events])
        except asyncpg.PostgresError:
            # Something in the batch is refused by the database (not an outage, which raises
            # DatabaseUnavailable): find the culprit one event at a time.
            for entry_id, event in events:
                try:
                    await self._record([event])
                except asyncpg.PostgresError as exc:
                    await self.dead_letter(entry_id, dict(entries)[entry_id], f"refused by the database: {exc}")
        await self._ack([entry_id for entry_id, _ in events])

    @contextlib.asynccontextmanager
    async def _holding(self, entry_ids: list[bytes]) -> AsyncIterator[None]:
        """Keep the entries this consumer's while the block runs, however long it waits."""
        renewing = asyncio.ensure_future(self._renew_hold(entry_ids))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _renew_hold(self, entry_ids: list[bytes]) -> None:
        """Reset the entries' idle time well within the claim idle time, so that no other consumer's
        XAUTOCLAIM takes them. XCLAIM with JUSTID does not count a delivery; entries acknowledged
        meanwhile are no longer pending and are left alone."""
        ids: list[StreamIdT] = list(entry_ids)
        while True:
            await asyncio.sleep(self._claim_idle_ms / 3000)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._redis.xclaim(self._stream, self._group, self.name, 0, ids, justid=True)
            except (RedisError, OSError, TimeoutError) as exc:
                # Redis is away too: nobody can claim them meanwhile. Try again at the next turn.
                log.warning("could not renew the hold on %d stream entries: %r", len(entry_ids), exc)

    async def claim_abandoned(self) -> None:
        """Take over entries left pending by a consumer that died; dead-letter those tried too often."""
        start = "0-0"
        while True:
            async with asyncio.timeout(self._timeout):
                next_start, claimed, _deleted = await self._redis.xautoclaim(
                    self._stream, self._group, self.name, self._claim_idle_ms, start_id=start, count=self._batch
                )
            claimed = [(entry_id, fields) for entry_id, fields in claimed if fields]
            if claimed:
                log.info("claimed %d entries abandoned by another consumer", len(claimed))
                await self.handle(await self._drop_exhausted(claimed))
            if next_start in (b"0-0", "0-0"):
                break
            start = next_start
        await self._forget_idle_consumers()

    async def dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        log.error("dead-lettering stream entry %s: %s", entry_id.decode(), reason)
        extra = {b"originalId": entry_id, b"reason": reason.encode(), b"consumer": self.name.encode()}
        async with asyncio.timeout(self._timeout):
            await self._redis.xadd(
                dead_letter_stream(self._stream),
                {**fields, **extra},  # type: ignore[dict-item]
                minid=retention_floor(self._res.settings.stream_retention_seconds),
                approximate=True,
            )
        await self._ack([entry_id])

    async def _drop_exhausted(self, claimed: list[Entry]) -> list[Entry]:
        """Dead-letter the claimed entries delivered more than `max_deliveries` times; return the rest.
        A delivery counts only when a consumer went away without an answer (see `_renew_hold`)."""
        pipe = self._redis.pipeline(transaction=False)
        for entry_id, _ in claimed:
            pipe.xpending_range(self._stream, self._group, min=entry_id, max=entry_id, count=1)
        async with asyncio.timeout(self._timeout):
            details = await pipe.execute()
        keep: list[Entry] = []
        for (entry_id, fields), detail in zip(claimed, details, strict=True):
            deliveries = detail[0]["times_delivered"] if detail else 0
            if deliveries > self._max_deliveries:
                await self.dead_letter(entry_id, fields, f"delivered {deliveries} times without success")
            else:
                keep.append((entry_id, fields))
        return keep

    async def _forget_idle_consumers(self) -> None:
        async with asyncio.timeout(self._timeout):
            consumers = await self._redis.xinfo_consumers(self._stream, self._group)
            for consumer in consumers:
                name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
                if name != self.name and consumer["pending"] == 0 and consumer["idle"] > _FORGET_CONSUMERS_AFTER_MS:
                    await self._redis.xgroup_delconsumer(self._stream, self._group, name)

    async def _record(self, events: list[RoomEvent]) -> None:
        """Record, waiting out a Postgres outage here, the batch held (see `_holding`): re-reading it after
        a restart would count as another delivery, and enough of those would send good events to the
        dead-letter stream."""
        if not events:
            return
        backoff = Backoff(self._stop)
        while True:
            try:
                async with connection(self._res.pool, self._res.settings.worker_db_timeout_seconds) as conn:
                    await record_history(conn, events)
            except DatabaseUnavailable:
                if self._stop.is_set():
                    raise  # leave the batch pending; it is claimed or re-read later
                log.warning("Postgres unavailable; retrying a batch of %d events in %.1fs", len(events), backoff.delay)
                await backoff.wait()
                self._res.monitor.beat(CONSUMER_LOOP)  # waiting out an outage, not stuck
            else:
                self._res.monitor.recorded(len(events))
                return

    async def _ack(self, entry_ids: list[bytes]) -> None:
        if entry_ids:
            async with asyncio.timeout(self._timeout):
                await self._redis.xack(self._stream, self._group, *entry_ids)
