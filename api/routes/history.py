"""A room's history: its lifecycle events as the worker recorded them from the event stream, in pages."""

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
from api.schemas import RoomCode, RoomHistory, optional_string, room_code

DEFAULT_PAGE = 100
MAX_PAGE = 500
# The largest `integer` Postgres holds: a cursor's version beyond it is no position this API returned.
_MAX_VERSION = 2**31 - 1


def _version(text: str) -> int:
    version = int(text)
    if not 1 <= version <= _MAX_VERSION:
        raise ValueError("no version of a room")
    return version


@get(
    "/{room_id:str}/history",
    summary="A room's lifecycle events, oldest first, in pages (host or co-host)",
    description=(
        "Recorded by the worker from the event stream, so a moment behind live changes. Only the room's host "
        "and co-hosts may read it: the events name the host and every change. At most `limit` events a page; "
        "while more remain, `nextCursor` fetches the next page."
    ),
    responses=error_responses(400, 401, 403, 404, 429, 503),
    security=CALLER,
)
async def get_room_history(
    request: Request[Any, Any, Any],
    caller: NamedDependency[UUID],
    room_id: RoomCode,
    limit: Annotated[
        int,
        QueryParameter(
            description=f"Events per page, at least 1; a larger value than {MAX_PAGE} is served as {MAX_PAGE}.",
            schema_extra={"minimum": 1},
        ),
    ] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        QueryParameter(
            description="`nextCursor` of the previous page of this room's history; any other value answers 400.",
            schema_extra=optional_string(pattern=CURSOR_PATTERN),
        ),
    ] = None,
) -> RoomHistory:
    code = room_code(room_id)
    limit = page_limit(limit, MAX_PAGE)
    after = None if cursor is None else decode_cursor(cursor, _version)
    # One more than the page: whether another follows, without a second statement.
    found = await service_of(request.app.state).history(code, client_of(request), caller, limit=limit + 1, after=after)
    events = found[:limit]
    # The keyset position (occurred_at, version) of the page's last event.
    next_cursor = encode_cursor(events[-1].occurred_at, events[-1].version) if len(found) > limit else None
    return RoomHistory(room_id=code, events=events, next_cursor=next_cursor)
