"""The presence pass, every ROOMS_PRESENCE_CHECK_SECONDS: each room that may have news is checked in
Redis (presence.lua), which ends it there if it has been empty or unused for its timeout; then the pass
records what it learnt in Postgres: the sessions (with `session.started` and `session.ended`), the
sessions Redis lost, and the rooms it ended (`room.ended`, reason `empty` or `unused`). The relay
publishes the events.

The rooms that may have news: those whose session key Redis holds (a SCAN of every primary finds
them: a session in progress, or ended and not yet recorded, or the room empty since its last); the
live rooms the database has in session (Redis may have lost it) or past a timeout's deadline; and the
rooms ended since the last pass, whose end closed their last session. A room nobody has joined whose
timeouts are not due is not visited: the pass's cost follows the rooms in use, not the rooms that exist.

A room whose check Redis or Postgres refuses (another writer's value at one of its keys, figures the
table refuses) is logged, counted (presence_checks_refused_total) and left out: it holds up nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
from redis.exceptions import OutOfMemoryError

from common.db import sessions as db
from common.db.pool import connection
from common.db.sessions import AutoEnd, CheckedRoom, SessionRow
from common.redis.commands import CommandQueue
from common.redis.sessions import (
    Check,
    Session,
    epoch_ms,
    moment,
    parse_check,
    queue_check,
    queue_forget_recorded,
    queue_forget_room,
    rooms_with_sessions,
)
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# One pass at a time across all workers: two would record the same sessions twice over.
_PRESENCE_LOCK = 0x50726573  # "Pres"
_PAGE = 1000
_SCAN_COUNT = 1000  # keys SCAN looks at a step: most are not session keys
# A room's end is published (and marked) by a transaction that may commit after a pass has read past
# its mark time: each pass looks back this far over the last one's, and records nothing twice.
_LOOK_BACK = timedelta(seconds=60)


async def check_presence(ctx: dict[str, Any]) -> int:
    """One pass: the rooms whose sessions Redis keeps, the live rooms the database says may have news,
    and the rooms ended since the last pass, each checked once; returns how many were checked. Rooms
    nobody ever joined whose timeouts are not due have nothing to say, and are not visited."""
    res: WorkerResources = ctx["resources"]
    visit = _Visit(res)
    async with connection(res.pool, res.settings.worker_db_timeout_seconds, whole=False) as walk:
        if not await walk.fetchval("SELECT pg_try_advisory_lock($1)", _PRESENCE_LOCK):
            return 0
        try:
            ended_since, started = await db.progress(walk)
            found: list[str] = []
            async for codes in rooms_with_sessions(res.guarded, _SCAN_COUNT):
                if codes is None:
                    visit.complete = False  # Redis did not answer: not every room was found
                    break
                found += codes
                if len(found) >= _PAGE:
                    await visit.check(await db.rooms_by_id(walk, visit.unseen(found)))
                    found = []
            if found:
                await visit.check(await db.rooms_by_id(walk, visit.unseen(found)))
            await visit.check(await db.due_rooms(walk))
            await visit.check(await db.ended_rooms_since(walk, ended_since))
            if visit.complete:  # else the ended rooms are visited again next time
                await db.advance(walk, started - _LOOK_BACK)
                res.monitor.rooms_live.set(await db.live_rooms(walk))
                res.monitor.rooms_in_session.set(visit.in_session)
        finally:
            await walk.execute("SELECT pg_advisory_unlock($1)", _PRESENCE_LOCK)
    return visit.checked


class _Visit:
    """One pass's rooms: each checked once, a page at a time, and whether every check was answered."""

    def __init__(self, res: WorkerResources) -> None:
        self._res = res
        self._seen: set[str] = set()
        self.complete = True
        self.checked = 0
        self.in_session = 0

    def unseen(self, codes: Sequence[str]) -> list[str]:
        return list({code for code in codes if code not in self._seen})

    async def check(self, rooms: Sequence[CheckedRoom]) -> None:
        rooms = [room for room in rooms if room.room_id not in self._seen]
        self._seen.update(room.room_id for room in rooms)
        for first in range(0, len(rooms), _PAGE):
            page = rooms[first : first + _PAGE]
            in_session = await _check(self._res, page)
            self.complete &= in_session is not None
            self.in_session += in_session or 0
            self.checked += len(page)


async def _check(res: WorkerResources, rooms: Sequence[CheckedRoom]) -> int | None:
    """Check a page of rooms in Redis and record what it said. Returns how many live ones have a session
    in progress, or None if Redis did not answer for all of them."""

    def queue(q: CommandQueue) -> None:
        for room in rooms:
            queue_check(
                q,
                room.room_id,
                start_ms=epoch_ms(room.start) if room.live else 0,
                empty_ms=room.empty_timeout_seconds * 1000,
                unused_ms=room.unused_timeout_seconds * 1000,
                last_end_ms=_last_known_end_ms(room),
            )

    replies = await res.guarded.pipeline_results(queue)
    if replies is None:
        return None
    found: list[_Found] = []
    unanswered = 0
    for room, reply in zip(rooms, replies, strict=True):
        if isinstance(reply, OutOfMemoryError):
            log.warning("presence check of %s failed: %s", room.room_id, reply)
            unanswered += 1
        elif isinstance(reply, Exception):
            # A key of the room's sessions holds another writer's value (WRONGTYPE): no later pass
            # would fare better, and the pass must not stall on it. The room is left out until the
            # value is removed; an operator finds it by this line and the counter.
            log.error("presence check of %s refused, the room is left out: %s", room.room_id, reply)
            res.monitor.presence_refused.inc()
        else:
            found.append(_found(room, parse_check(reply)))
    recorded = await _record(res, found)
    await _forget(res, recorded)
    if unanswered:
        return None
    return sum(1 for item in recorded if item.room.live and item.check.open is not None)


class _Found(NamedTuple):
    """What a room's check found, as rows to record."""

    room: CheckedRoom
    check: Check
    sessions: list[SessionRow]
    lost: list[tuple[UUID, datetime]]
    ends: list[AutoEnd]


def _found(room: CheckedRoom, check: Check) -> _Found:
    sessions = [_row(room, session, check) for session in check.ended]
    if check.open is not None:
        sessions.append(_row(room, check.open, check))
    lost = [(room.meeting_id, room.newest_started)] if _lost(room, check) and room.newest_started else []
    ends = []
    if check.end_reason is not None and room.live:
        ends.append(AutoEnd(room.meeting_id, check.end_reason, moment(check.decided_ms)))
    return _Found(room, check, sessions, lost, ends)


async def _record(res: WorkerResources, found: list[_Found]) -> list[_Found]:
    """Record the page in one transaction. Should Postgres refuse it for one room's figures, record
    room by room, and leave the rooms it refuses out (logged, their Redis records kept): one bad room
    must not hold up the others, nor the rooms after them. Returns the rooms recorded."""
    timeout = res.settings.worker_db_timeout_seconds
    batches = [found]
    try:
        async with connection(res.pool, timeout) as conn:
            ended = await db.record(conn, *_rows(found))
    except asyncpg.PostgresError as error:
        log.warning("Postgres refused a page of the presence pass (%s); recording room by room", error)
        ended, batches = [], []
        for item in found:
            try:
                async with connection(res.pool, timeout) as conn:
                    ended += await db.record(conn, *_rows([item]))
                batches.append([item])
            except asyncpg.PostgresError:
                log.exception("could not record the sessions of room %s; the room is left out", item.room.room_id)
                res.monitor.presence_refused.inc()
    for room_id, reason in ended:
        res.metrics.rooms_ended(reason)
        log.info("ended room %s: %s for its timeout", room_id, reason)
    return [item for batch in batches for item in batch]


def _rows(found: list[_Found]) -> tuple[list[SessionRow], list[tuple[UUID, datetime]], list[AutoEnd]]:
    return (
        [row for item in found for row in item.sessions],
        [lost for item in found for lost in item.lost],
        [end for item in found for end in item.ends],
    )


def _row(room: CheckedRoom, session: Session, check: Check) -> SessionRow:
    return SessionRow(
        meeting_id=room.meeting_id,
        started_at=moment(session.started_ms),
        ended_at=None if session.ended_ms is None else moment(session.ended_ms),
        peak=session.peak,
        distinct=session.distinct,
        participant_ms=session.participant_ms,
        reason=session.reason,
        # A session can begin ahead of Redis's clock (after the last one's end, by a clock that has since
        # stepped back): it is not seen before it began.
        seen_at=moment(max(check.now_ms, session.started_ms) if session.ended_ms is None else session.ended_ms),
    )


def _last_known_end_ms(room: CheckedRoom) -> int:
    """When the room last emptied as far as the database knows (its Redis may have lost it): the end
    of its newest session, or the last moment one in progress was seen; 0 if it never had one."""
    last = room.newest_ended or room.newest_seen
    return 0 if last is None else epoch_ms(last)


def _lost(room: CheckedRoom, check: Check) -> bool:
    """Whether the session the database has in progress is gone from Redis: neither in progress there
    nor among the ended ones it keeps (a restart without its data took it)."""
    if room.newest_started is None or room.newest_ended is not None:
        return False
    started = epoch_ms(room.newest_started)
    in_redis = [s.started_ms for s in check.ended] + ([check.open.started_ms] if check.open else [])
    return started not in in_redis


async def _forget(res: WorkerResources, recorded: Sequence[_Found]) -> None:
    """Take what is now recorded off Redis: the ended sessions, and all that an ended room kept."""

    def queue(q: CommandQueue) -> None:
        for item in recorded:
            if not item.room.live and item.check.open is None:
                queue_forget_room(q, item.room.room_id)
            elif item.check.ended_records:
                queue_forget_recorded(q, item.room.room_id, item.check.ended_records)

    if any(not item.room.live or item.check.ended_records for item in recorded):
        await res.guarded.pipeline_results(queue)  # what stays is recorded again, harmlessly, next time
