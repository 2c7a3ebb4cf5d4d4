"""The errors the use cases raise for the API to answer: what the domain refuses, and what is unavailable.

api/errors.py maps each to one HTTP status. Infrastructure errors are not `RoomError`s: a room that
does not exist and a database that does not answer are different kinds of news.
"""

from __future__ import annotations

from datetime import datetime


class RoomError(Exception):
    """A request the room domain refuses or cannot carry out."""


class RoomNotFound(RoomError):
    pass


class RoomGone(RoomError):
    """The room existed but was ended or has expired."""


class NotRoomHost(RoomError):
    """The caller is not the room's host, nor a co-host where one would do."""


class InvalidCohosts(RoomError):
    """Co-hosts the service does not take: more than MAX_COHOSTS, one named twice, or the host."""


class ParticipantLimitOutOfRange(RoomError):
    pass


class MetadataTooLarge(RoomError):
    """Metadata over ROOMS_METADATA_MAX_BYTES, measured as compact JSON."""


class InvalidSchedule(RoomError):
    """A start or an end outside the calendar's bounds; the message names the field and the bound."""


class RoomStarted(RoomError):
    """A new start asked of a room that has started."""


class RoomNotStarted(RoomError):
    """The room does not admit joins yet: it opens at `opens_at` (its start, less the early-join allowance)."""

    def __init__(self, message: str, starts_at: datetime, retry_after: int) -> None:
        super().__init__(message)
        self.starts_at = starts_at
        self.retry_after = retry_after


class RemovedFromRoom(RoomError):
    """The caller was removed from the room by its host or a co-host: barred until the room ends."""


class TooManyRemoved(RoomError):
    """A room bars at most MAX_REMOVED participants."""


class IdempotencyKeyReused(RoomError):
    """An Idempotency-Key came back with a different request."""


class RateLimited(RoomError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoFreeRoomCode(RoomError):
    """Every code drawn was taken: with 26^10 codes, a sign of a broken generator, not bad luck."""


class DatabaseUnavailable(Exception):
    """Postgres could not be reached or did not answer in time: infrastructure, not a `RoomError`."""


class PresenceUnavailable(Exception):
    """Redis, which alone knows who is in a room, is unavailable: infrastructure, not a `RoomError`."""


class TicketsNotConfigured(Exception):
    """No ticket signing key is configured (ROOMS_TICKET_KEYS): configuration, not a `RoomError`."""
