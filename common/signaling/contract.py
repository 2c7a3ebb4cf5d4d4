"""The join contract with the Signaling service: join.lua and leave.lua beside this module, and a typed
way to call them (tickets.py verifies the join ticket a join presents).

The scripts are the source of truth (docs/signaling.md). Signaling runs them from its own code; this
module is how this repository calls and tests them.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

import msgspec
import redis.asyncio as redis

from common.redis.keys import participants_key, room_key, used_ticket_key
from common.redis.scripts import lua_script
from common.tickets.claims import TicketClaims

JOIN = lua_script(__package__, "join.lua")
LEAVE = lua_script(__package__, "leave.lua")

Outcome = Literal["admitted", "already_in", "full", "not_cached", "not_started", "ticket_used"]
_OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))


class JoinResult(msgspec.Struct, frozen=True, kw_only=True):
    """What join.lua answered: the outcome, the participant count after it, and the room's limit."""

    outcome: Outcome
    count: int
    max_participants: int


class JoinContract:
    """Runs join.lua and leave.lua: EVALSHA, loading the script on NOSCRIPT."""

    def __init__(self, client: redis.Redis) -> None:
        self._join = client.register_script(JOIN.source)
        self._leave = client.register_script(LEAVE.source)

    async def join(
        self, room_id: str, participant_id: str, heartbeat_ms: int, *, ticket: TicketClaims | None = None
    ) -> JoinResult:
        """Join, or rejoin to refresh the heartbeat. With `ticket` (verified: common/signaling/tickets.py,
        its `sub` the participant), a ticket admits once: presented again it answers `ticket_used`.
        Raises redis ResponseError on bad arguments."""
        keys = [room_key(room_id), participants_key(room_id)]
        args: list[str | int] = [participant_id, heartbeat_ms]
        if ticket is not None:
            keys.append(used_ticket_key(room_id, ticket.jti))
            args += [ticket.jti, ticket.exp]
        outcome, count, limit = await self._join(keys=keys, args=args)
        text = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if text not in _OUTCOMES:
            raise ValueError(f"join.lua answered an unknown outcome {text!r}")
        return JoinResult(outcome=cast(Outcome, text), count=int(count), max_participants=int(limit))

    async def leave(self, room_id: str, participant_id: str) -> bool:
        """Leave at once. Returns whether the participant was a live member."""
        keys = [room_key(room_id), participants_key(room_id)]
        return bool(await self._leave(keys=keys, args=[participant_id]))
