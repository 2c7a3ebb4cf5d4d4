"""The join contract with the Signaling service: join.lua, heartbeat.lua and leave.lua beside this module,
and a typed way to call them (tickets.py verifies the join ticket a join presents).

The scripts are the source of truth (docs/signaling.md). Signaling runs them from its own code; this
module is how this repository calls and tests them.
"""

from __future__ import annotations

from typing import Any, Literal, cast, get_args

import msgspec
import redis.asyncio as redis

from common.redis.keys import participants_key, room_key, used_ticket_key
from common.redis.scripts import lua_script
from common.tickets.claims import TicketClaims

JOIN = lua_script(__package__, "join.lua")
HEARTBEAT = lua_script(__package__, "heartbeat.lua")
LEAVE = lua_script(__package__, "leave.lua")

Outcome = Literal["admitted", "already_in", "full", "not_cached", "not_started", "removed", "ticket_used"]
HeartbeatOutcome = Literal["alive", "not_member", "room_gone"]


class JoinResult(msgspec.Struct, frozen=True, kw_only=True):
    """What join.lua answered: the outcome, the participant count after it, and the room's limit."""

    outcome: Outcome
    count: int
    max_participants: int


class HeartbeatResult(msgspec.Struct, frozen=True, kw_only=True):
    """What heartbeat.lua answered: the outcome, the live members, and the room's limit (0 when the room
    is gone or its object cannot be read)."""

    outcome: HeartbeatOutcome
    count: int
    max_participants: int


def _outcome(reply: Any, known: Any, script: str) -> str:
    """The outcome of a script's reply, checked against the literal `known` that names them all."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    if text not in get_args(known):
        raise ValueError(f"{script} answered an unknown outcome {text!r}")
    return text


class JoinContract:
    """Runs join.lua, heartbeat.lua and leave.lua: EVALSHA, loading the script on NOSCRIPT."""

    def __init__(self, client: redis.Redis) -> None:
        self._join = client.register_script(JOIN.source)
        self._heartbeat = client.register_script(HEARTBEAT.source)
        self._leave = client.register_script(LEAVE.source)

    async def join(
        self, room_id: str, participant_id: str, heartbeat_ms: int, *, ticket: TicketClaims | None = None
    ) -> JoinResult:
        """Join (a live member joining again answers `already_in`, its heartbeat refreshed). With `ticket`
        (verified: common/signaling/tickets.py, its `sub` the participant), a ticket admits once: presented
        again it answers `ticket_used`. Heartbeats use `heartbeat`, which never admits.
        Raises redis ResponseError on bad arguments."""
        keys = [room_key(room_id), participants_key(room_id)]
        args: list[str | int] = [participant_id, heartbeat_ms]
        if ticket is not None:
            keys.append(used_ticket_key(room_id, ticket.jti))
            args += [ticket.jti, ticket.exp]
        outcome, count, limit = await self._join(keys=keys, args=args)
        text = _outcome(outcome, Outcome, "join.lua")
        return JoinResult(outcome=cast(Outcome, text), count=int(count), max_participants=int(limit))

    async def heartbeat(self, room_id: str, participant_id: str, heartbeat_ms: int) -> HeartbeatResult:
        """Keep a live member's slot for `heartbeat_ms` more: `alive`. `not_member` (never admitted, left,
        or lapsed: join again) adds nobody; `room_gone` changes nothing. Raises redis ResponseError on bad
        arguments."""
        keys = [room_key(room_id), participants_key(room_id)]
        outcome, count, limit = await self._heartbeat(keys=keys, args=[participant_id, heartbeat_ms])
        text = _outcome(outcome, HeartbeatOutcome, "heartbeat.lua")
        return HeartbeatResult(outcome=cast(HeartbeatOutcome, text), count=int(count), max_participants=int(limit))

    async def leave(self, room_id: str, participant_id: str) -> bool:
        """Leave at once. Returns whether the participant was a live member."""
        keys = [room_key(room_id), participants_key(room_id)]
        return bool(await self._leave(keys=keys, args=[participant_id]))
