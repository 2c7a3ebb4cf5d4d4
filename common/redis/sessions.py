"""What Redis keeps of a room's sessions, as the worker's presence pass reads it: presence.lua's check
of one room (docs/signaling.md, "Sessions"), and forgetting what the database has recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from redis.asyncio.cluster import ClusterNode, RedisCluster

from common.redis.client import RedisClient
from common.redis.commands import CommandQueue
from common.redis.guarded import GuardedRedis
from common.redis.keys import distinct_key, ended_room_key, participants_key, room_key, session_key, sessions_key
from common.redis.scripts import lua_script

PRESENCE = lua_script(__package__, "lua/presence.lua")


class Session(NamedTuple):
    """A session as the scripts keep it: times in Unix ms; `ended_ms` and `reason` None while in progress."""

    started_ms: int
    ended_ms: int | None
    peak: int
    distinct: int
    participant_ms: int
    reason: str | None


class Check(NamedTuple):
    """presence.lua's answer for one room."""

    verdict: str  # live | absent | empty | unused (ended by this check) | ending (by an earlier one)
    now_ms: int  # Redis TIME at the check
    decided_ms: int  # of `empty`, `unused` and `ending`: when the room ended (else now_ms)
    end_reason: str | None  # of those three: empty or unused
    empty_since_ms: int  # when its last session ended, as far as Redis knows (0: none)
    open: Session | None
    ended: list[Session]
    ended_records: list[str]  # as kept, to forget each once recorded


# Every room that ever had a session keeps its session key until its keys expire (a day past its end).
_SESSION_KEYS = session_key("*")
_BEFORE_ID, _AFTER_ID = session_key("\0").split("\0")


async def rooms_with_sessions(guarded: GuardedRedis, count: int) -> AsyncIterator[list[str] | None]:
    """The codes of the rooms whose session keys Redis holds, one SCAN step (about `count` keys looked
    at) after another, on every primary of a cluster. A code may come twice (SCAN's promise is every key
    there from start to end, at least once). A step Redis does not answer yields None and ends the scan:
    then not every room was found."""
    primaries = await guarded.call(_primaries, None)
    if primaries is None:
        yield None
        return
    for node in primaries:
        cursor = 0
        while True:
            step = await guarded.call(lambda client: _scan(client, node, cursor, count), None)  # noqa: B023
            if step is None:
                yield None
                return
            cursor, keys = step
            yield [_room_of(key.decode() if isinstance(key, bytes) else key) for key in keys]
            if cursor == 0:
                break


def _room_of(session_key: str) -> str:
    return session_key[len(_BEFORE_ID) : -len(_AFTER_ID)]


async def _primaries(client: RedisClient) -> list[ClusterNode | None]:
    if isinstance(client, RedisCluster):
        await client.initialize()  # a no-op once it knows the cluster
        return list(client.get_primaries())
    return [None]


async def _scan(client: RedisClient, node: ClusterNode | None, cursor: int, count: int) -> tuple[int, list[bytes]]:
    if node is None:
        return await client.scan(cursor, match=_SESSION_KEYS, count=count, _type="hash")  # type: ignore[no-any-return]
    cursors, keys = await client.scan(cursor, match=_SESSION_KEYS, count=count, _type="hash", target_nodes=node)
    return cursors[node.name], keys


def queue_check(
    queue: CommandQueue, room_id: str, *, start_ms: int, empty_ms: int, unused_ms: int, last_end_ms: int
) -> None:
    """presence.lua for the room; `start_ms` 0 for a room that has ended (its sessions are only read)."""
    queue.execute_command(
        "EVALSHA",
        PRESENCE.sha,
        3,
        room_key(room_id),
        ended_room_key(room_id),
        participants_key(room_id),
        str(start_ms),
        str(empty_ms),
        str(unused_ms),
        str(last_end_ms),
    )


def parse_check(reply: list[Any]) -> Check:
    verdict, now, empty_since, started, peak, distinct, participant_ms, *records = (
        value.decode() if isinstance(value, bytes) else str(value) for value in reply
    )
    now_ms = int(now)
    decided_ms, end_reason = now_ms, None
    if verdict.startswith("ending "):  # 'ending <reason> <ms>', as the earlier check's mark says
        _, end_reason, at = verdict.split()
        verdict, decided_ms = "ending", int(at)
    elif verdict in ("empty", "unused"):
        end_reason = verdict
    open_session = None
    if started != "0":
        open_session = Session(int(started), None, int(peak), int(distinct), int(participant_ms), None)
    return Check(
        verdict=verdict,
        now_ms=now_ms,
        decided_ms=decided_ms,
        end_reason=end_reason,
        empty_since_ms=int(empty_since),
        open=open_session,
        ended=[parse_session(record) for record in records],
        ended_records=records,
    )


def parse_session(record: str) -> Session:
    """One ended session as close_session (in every script's presence block) writes it."""
    started, ended, peak, distinct, participant_ms, reason = record.split()
    return Session(int(started), int(ended), int(peak), int(distinct), int(participant_ms), reason)


def queue_forget_recorded(queue: CommandQueue, room_id: str, records: list[str]) -> None:
    """Take ended sessions the database now has off the room's list. Each record names its session (its
    start), so removing it by value is safe against another pass, and against new ones appended since."""
    for record in records:
        queue.lrem(sessions_key(room_id), 1, record)


def queue_forget_room(queue: CommandQueue, room_id: str) -> None:
    """All a room kept of its sessions, once it has ended and the database has them."""
    queue.delete(session_key(room_id), distinct_key(room_id), sessions_key(room_id))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def moment(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)  # exact, where a float of seconds could round


def epoch_ms(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(milliseconds=1)
