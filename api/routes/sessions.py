"""A room's sessions: the spans in which it had participants, as the worker's presence pass recorded
them, newest first, in pages."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from api.cursors import CURSOR_PATTERN, decode_cursor, encode_cursor, page_limit
from api.deps import client_of, service_of
from api.errors import error_responses
from api.openapi import CALLER
from api.routes.history import DEFAULT_PAGE, MAX_PAGE
from api.schemas import RoomCode, RoomSessions, optional_string, room_code


def _no_key(text: str) -> str:
    """A session's position is its start alone (unique in its room): a cursor with a key is another
    list's (a history's version, a room list's id)."""
    if text:
        raise ValueError("not a position in a room's sessions")
    return text


@get(
    "/{room_id:str}/sessions",
    summary="A room's sessions, newest first, in pages (host or co-host)",
    description=(
        "The spans in which the room had at least one participant, as the worker's presence pass records them "
        "(every ROOMS_PRESENCE_CHECK_SECONDS), of a live room or an ended one alike. Only the room's host and "
        "co-hosts may read them. A session in progress has `endedAt`, `durationSeconds` and `endReason` null, "
        "and its figures (`peakParticipants`, `distinctParticipants`, `participantSeconds`) are as of the "
        "worker's last pass that recorded them; an ended one's are final. At most `limit` sessions a page; "
        "while more remain, `nextCursor` fetches the next page."
    ),
    responses=error_responses(400, 401, 403, 404, 429, 503),
    security=CALLER,
)
async def get_room_sessions(
    request: Request[Any, Any, Any],
    caller: NamedDependency[UUID],
    room_id: RoomCode,
    limit: Annotated[
        int,
        QueryParameter(
            description=f"Sessions per page, at least 1; a larger value than {MAX_PAGE} is served as {MAX_PAGE}.",
            schema_extra={"minimum": 1},
        ),
    ] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        QueryParameter(
            description="`nextCursor` of the previous page of this room's sessions; any other value answers 400.",
            schema_extra=optional_string(pattern=CURSOR_PATTERN),
        ),
    ] = None,
) -> RoomSessions:
    code = room_code(room_id)
    limit = page_limit(limit, MAX_PAGE)
    before = None if cursor is None else decode_cursor(cursor, _no_key)[0]
    # One more than the page: whether another follows, without a second statement.
    found = await service_of(request.app.state).sessions(
        code, client_of(request), caller, limit=limit + 1, before=before
    )
    sessions = found[:limit]
    # The keyset position of the page's last session: its start, with no key.
    next_cursor = encode_cursor(sessions[-1].started_at, "") if len(found) > limit else None
    return RoomSessions(room_id=code, sessions=sessions, next_cursor=next_cursor)
