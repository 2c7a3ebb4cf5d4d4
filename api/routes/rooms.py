"""The rooms resource: create, validate, list, change and end rooms."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import MediaType, Request, Response, delete, get, patch, post, route
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from msgspec import UNSET

from api.bodies import CREATE_ROOM, UPDATE_ROOM, decode_body, decode_optional_body, timeouts, user_ids
from api.body_docs import room_body
from api.cursors import CURSOR_PATTERN, decode_cursor, encode_cursor, page_limit
from api.deps import changes_of, client_of, service_of
from api.errors import ApiError, error_responses
from api.openapi import CALLER
from api.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    PublicRoomView,
    RoomCode,
    RoomPage,
    RoomSummary,
    optional_string,
    public_view,
    room_code,
)
from common.rooms.model import JSON_ENCODER, RoomRole, RoomStatus, RoomView, live_status, to_view
from common.service.checks import DEFAULT_TIMEOUTS, UNSCHEDULED, Schedule

_MAX_PAGE = 100


@post(
    "/",
    status_code=201,
    summary="Create a room",
    description=(
        "Creates a meeting hosted by the caller and answers with its public code. The body is optional; "
        "`maxParticipants` defaults to the configured default, `metadata` and `cohostIds` to none. A room may be "
        "booked ahead (`startsAt`): it is `scheduled` until then, and admits joins from ROOMS_EARLY_JOIN_SECONDS "
        "before. It ends at `expiresAt`, by default ROOMS_ROOM_TTL_SECONDS after its start, or sooner: once it has "
        "stayed empty `emptyTimeoutSeconds` after its last participant left, or when nobody joined it within "
        "`unusedTimeoutSeconds` of its start (by default ROOMS_EMPTY_TIMEOUT_SECONDS and "
        "ROOMS_UNUSED_TIMEOUT_SECONDS; 0 never). With an `Idempotency-Key`, "
        "a retry within 24 h answers with the room the first request made instead of creating another."
    ),
    responses=error_responses(400, 401, 413, 422, 429, 503),  # its headers: api/openapi.py
    security=CALLER,
    operation_class=room_body(create=True),
)
async def create_room(
    request: Request[Any, Any, Any],
    caller: NamedDependency[UUID],
    state: State,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            required=False,
            description="Any string of 1 to 255 visible ASCII characters, unique per intended room.",
            schema_extra=optional_string(pattern=IDEMPOTENCY_KEY_PATTERN),
        ),
    ] = None,
) -> Response[RoomView]:
    options = decode_optional_body(await request.body(), CREATE_ROOM)
    if idempotency_key is not None and not _valid_key(idempotency_key):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    max_participants = None if options is None or options.max_participants is None else int(options.max_participants)
    metadata = None if options is None else options.metadata
    cohosts = () if options is None else user_ids(options.cohost_ids)
    schedule = UNSCHEDULED if options is None else Schedule(options.starts_at, options.expires_at)
    asked_timeouts = (
        DEFAULT_TIMEOUTS if options is None else timeouts(options.empty_timeout_seconds, options.unused_timeout_seconds)
    )
    room, new = await changes_of(state).create(
        caller,
        max_participants,
        idempotency_key,
        metadata=metadata,
        cohost_ids=cohosts,
        schedule=schedule,
        timeouts=asked_timeouts,
    )
    headers = {"Location": f"/rooms/{room.room_id}"}
    if not new:
        headers["Idempotent-Replayed"] = "true"  # the answer of an earlier request with this key
    return Response(to_view(room), status_code=201, headers=headers)


@get(
    "/",
    summary="The caller's rooms, newest first",
    description=(
        "The rooms the caller hosts, co-hosts or either (`role`), in pages of at most `limit` rooms; while more "
        "remain, `nextCursor` fetches the next page."
    ),
    responses=error_responses(400, 401, 503),
    security=CALLER,
)
async def list_rooms(
    *,
    caller: NamedDependency[UUID],
    state: State,
    status: Annotated[
        RoomStatus,
        QueryParameter(description="Which rooms: scheduled (not started yet), active (started), ended, or all."),
    ] = "all",
    role: Annotated[
        RoomRole, QueryParameter(description="The caller's part in them: host, cohost, or any (either).")
    ] = "host",
    limit: Annotated[
        int,
        QueryParameter(
            description=f"Rooms per page, at least 1; a larger value than {_MAX_PAGE} is served as {_MAX_PAGE}.",
            schema_extra={"minimum": 1},
        ),
    ] = 20,
    cursor: Annotated[
        str | None,
        QueryParameter(
            description=(
                "`nextCursor` of the previous page (with the same `status` and `role`); any other value answers 400."
            ),
            schema_extra=optional_string(pattern=CURSOR_PATTERN),
        ),
    ] = None,
) -> RoomPage:
    limit = page_limit(limit, _MAX_PAGE)
    # An empty cursor is refused like any other that this API did not return, as the schema says: a
    # client sending the null `nextCursor` of a last page as "" would otherwise start again from the first.
    before = None if cursor is None else decode_cursor(cursor, UUID)
    found = await service_of(state).user_rooms(caller, role, status, limit + 1, before)
    page = found[:limit]
    rooms = [
        RoomSummary(
            **(msgspec.structs.asdict(to_view(s.room)) | {"status": live_status(s.room.start) if s.live else "ended"})
        )
        for s in page
    ]
    # The keyset position (created_at, id) of the page's last room.
    next_cursor = encode_cursor(page[-1].room.created_at, page[-1].room.id) if len(found) > limit else None
    return RoomPage(rooms=rooms, next_cursor=next_cursor)


@get(
    "/{room_id:str}",
    summary="Validate a room",
    description=(
        "Answers 200 with the room while it is live: `status` `scheduled` before its `startsAt`, then `active`; "
        "410 once it has ended. The code is case-insensitive and may omit its dashes. Who "
        "hosts it (`hostId`, `cohostIds`) is told only to its host and co-hosts, named by `X-User-Id` (optional "
        "here): anyone else gets the room without them (`PublicRoomView`)."
    ),
    responses={
        200: ResponseSpec(
            RoomView | PublicRoomView,  # described as anyOf by api/openapi.py: a full view has the public fields too
            description="The live room: `RoomView` for its host and co-hosts, `PublicRoomView` for anyone else.",
            generate_examples=False,
        ),
        **error_responses(400, 404, 410, 429, 503),
    },
)
async def get_room(request: Request[Any, Any, Any], room_id: RoomCode) -> Response[bytes]:
    view = await service_of(request.app.state).view(room_code(room_id), partial(client_of, request))
    # Encoded here: a struct handed to Litestar to encode costs the busiest route about a tenth of its
    # CPU (docs/performance.md). The body is the same.
    if _hosts(view, request.scope["headers"]):
        return Response(JSON_ENCODER.encode(view), media_type=MediaType.JSON)
    return Response(JSON_ENCODER.encode(public_view(view)), media_type=MediaType.JSON)


def _hosts(view: RoomView, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the request's `X-User-Id` names the room's host or a co-host. Read from the raw ASGI headers
    (lower-case names), and only now that the room is known: Litestar's header mapping would cost the
    cached GET about a tenth of its time (see `RoomService.view`). Compared as the 128-bit number a UUID
    is, a fifth of the cost of parsing one: only the host's own id, in some spelling, equals the host's."""
    for name, value in headers:
        if name == b"x-user-id":
            try:
                caller = int(value.replace(b"-", b""), 16)
            except ValueError:  # not hexadecimal: names nobody
                return False
            if caller == view.host_id.int:
                return True
            for cohost in view.cohost_ids:  # noqa: SIM110 (a generator for any() costs more than the few compared)
                if caller == cohost.int:
                    return True
            return False
    return False


@patch(
    "/{room_id:str}",
    summary=(
        "Change a room: its participant limit, metadata, start, end or timeouts (host or co-host), its co-hosts "
        "or host (host only)"
    ),
    description=(
        "Changes what the body names, at least one field, in one change. Signaling applies a new limit from the "
        "next join; participants already in stay. `expiresAt` extends or shortens a scheduled or active room: "
        "it then ends at the new time, its participants with it. `startsAt` moves the start of a room still "
        "`scheduled`; once started, 409 `room_started`. `emptyTimeoutSeconds` and `unusedTimeoutSeconds` change "
        "how long the room may stay empty or unused before it ends. A co-host may change `maxParticipants`, "
        "`metadata`, `startsAt`, `expiresAt` and the timeouts; a body "
        "with `cohostIds` or `hostId` is the host's alone, and from anyone else changes nothing (403). A body "
        "that asks for what the room already is changes nothing and answers the room as it is. Each user may "
        "change or end rooms `ROOMS_CHANGE_LIMIT_PER_MINUTE` times a clock minute (PATCH and DELETE together, "
        "refused ones too); past that, 429."
    ),
    responses=error_responses(400, 401, 403, 404, 409, 410, 413, 422, 429, 503),
    security=CALLER,
    operation_class=room_body(create=False),
)
async def update_room(
    request: Request[Any, Any, Any],
    caller: NamedDependency[UUID],
    state: State,
    room_id: RoomCode,
) -> RoomView:
    code = room_code(room_id)
    body = decode_body(await request.body(), UPDATE_ROOM)
    changed = await changes_of(state).update(
        code,
        caller,
        max_participants=None if body.max_participants is UNSET else int(body.max_participants),
        metadata=body.metadata,
        host_id=None if body.host_id is UNSET else UUID(body.host_id),
        cohost_ids=None if body.cohost_ids is UNSET else user_ids(body.cohost_ids),
        schedule=Schedule(
            None if body.starts_at is UNSET else body.starts_at, None if body.expires_at is UNSET else body.expires_at
        ),
        timeouts=timeouts(body.empty_timeout_seconds, body.unused_timeout_seconds),
    )
    return to_view(changed)


@delete(
    "/{room_id:str}",
    summary="End a room (host or co-host)",
    description=(
        "Ends the room for everyone: it answers 410 from then on. Ending it again changes nothing. Counted "
        "with `PATCH` against the caller's `ROOMS_CHANGE_LIMIT_PER_MINUTE` (429 past it)."
    ),
    responses=error_responses(400, 401, 403, 404, 429, 503),
    security=CALLER,
)
async def end_room(caller: NamedDependency[UUID], state: State, room_id: RoomCode) -> None:
    await changes_of(state).end(room_code(room_id), caller)


def allow_options(*handlers: HTTPRouteHandler) -> HTTPRouteHandler:
    """The OPTIONS handler of the path `handlers` share: 204 with `Allow` naming all their methods.

    Litestar 2 makes its own OPTIONS handler for the first handler registered on a path and keeps it as
    more are added, so its `Allow` names that first handler's methods only (litestar#4169). One
    declared for a path with several handlers, and registered first, takes its place.
    """
    (path,) = {path for handler in handlers for path in handler.paths}
    allow = ", ".join(sorted({method for handler in handlers for method in handler.http_methods} | {"OPTIONS"}))

    @route(path, http_method=HttpMethod.OPTIONS, include_in_schema=False, sync_to_thread=False)
    def options() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": allow})

    return options


# Each path's OPTIONS handler first: registered after another handler of its path, Litestar's own
# would answer instead.
HANDLERS = [
    allow_options(create_room, list_rooms),
    allow_options(get_room, update_room, end_room),
    create_room,
    list_rooms,
    get_room,
    update_room,
    end_room,
]


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and all("!" <= c <= "~" for c in key)
