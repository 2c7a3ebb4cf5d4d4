"""Every Redis key the service writes, named in one place.

`room:{roomId}` is read by Signaling (docs/signaling.md). The other keys of a room carry the hash tag
`{room:<roomId>}`, so on a Redis Cluster they share the room object's slot and one script or MGET can
touch them together.
"""

from __future__ import annotations


def room_key(room_id: str) -> str:
    """The room object Signaling reads. Part of the contract in docs/signaling.md."""
    return f"room:{room_id}"


def participants_key(room_id: str) -> str:
    """The room's participant set (common/signaling/join.lua)."""
    return "{" + room_key(room_id) + "}:participants"


def joined_key(room_id: str) -> str:
    """When each participant joined (common/signaling/join.lua derives it from the room key)."""
    return "{" + room_key(room_id) + "}:joined"


# How long what a room keeps for its sessions outlives the room's end (Unix ms), for the worker to record
# its last session: PRESENCE_GRACE_MS in every script that keeps it (common/signaling/join.lua).
PRESENCE_GRACE_MS = 86_400_000


def session_key(room_id: str) -> str:
    """The room's open session and when it last emptied (common/signaling/join.lua keeps it)."""
    return "{" + room_key(room_id) + "}:session"


def distinct_key(room_id: str) -> str:
    """A set of the open session's participants, each once (common/signaling/join.lua)."""
    return "{" + room_key(room_id) + "}:distinct"


def sessions_key(room_id: str) -> str:
    """The room's ended sessions that the worker has yet to record (common/signaling/join.lua)."""
    return "{" + room_key(room_id) + "}:sessions"


def ended_room_key(room_id: str) -> str:
    """Marks a room that has ended, until its lifetime is over: no writer may cache it again."""
    return "{" + room_key(room_id) + "}:ended"


def missing_room_key(room_id: str) -> str:
    """Marks a code recently found not to exist."""
    return "{" + room_key(room_id) + "}:missing"


def used_ticket_key(room_id: str, jti: str) -> str:
    """Marks a join ticket (by its `jti`) as used, until it expires (common/signaling/join.lua)."""
    return "{" + room_key(room_id) + "}:ticket:" + jti


def rate_counter_key(kind: str, client: str, minute: int) -> str:
    """A client's counter of `kind` (miss, create, ticket) for one clock minute since the epoch."""
    return f"ratelimit:{kind}:{client}:{minute}"


def dead_letter_stream(stream: str) -> str:
    """Where the history consumer puts entries of `stream` it cannot record."""
    return f"{stream}:dead"
