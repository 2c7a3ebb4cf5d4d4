"""Every error leaves the API as JSON `{"error": code, "detail": text}`; the mapping lives here only."""

from __future__ import annotations

import logging
from datetime import datetime
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from common.errors import (
    DatabaseUnavailable,
    IdempotencyKeyReused,
    InvalidCohosts,
    InvalidSchedule,
    MetadataTooLarge,
    NoFreeRoomCode,
    NotRoomHost,
    ParticipantLimitOutOfRange,
    PresenceUnavailable,
    RateLimited,
    RemovedFromRoom,
    RoomError,
    RoomGone,
    RoomNotFound,
    RoomNotStarted,
    RoomStarted,
    TicketsNotConfigured,
    TooManyRemoved,
)

log = logging.getLogger(__name__)


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every error response."""

    error: str  # stable, machine-readable, e.g. `invalid_room_id`
    detail: str  # for people: what was wrong and, where it helps, what to send instead


class NotStartedBody(ErrorBody, frozen=True, kw_only=True, rename={"starts_at": "startsAt"}):
    """The body of 409 `room_not_started`: the error, and when the room starts (`Retry-After` says when
    it opens to joins, which may be a little earlier)."""

    starts_at: datetime


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route can answer (their headers: api/openapi.py)."""
    # No generated examples: they would be random strings, a different description at every start.
    return {
        status: ResponseSpec(data_container=ErrorBody, description=HTTPStatus(status).phrase, generate_examples=False)
        for status in statuses
    }


class ApiError(HTTPException):
    """An input error found by the API itself: a status, a stable machine code, and a readable detail."""

    def __init__(self, status_code: int, code: str, detail: str) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.code = code


# The one table from the service's errors (common/errors.py) to HTTP: a status and a stable code.
_DOMAIN_STATUS: dict[type[Exception], tuple[int, str]] = {
    RoomError: (500, "internal_error"),
    RoomNotFound: (404, "room_not_found"),
    RoomGone: (410, "room_gone"),
    NotRoomHost: (403, "not_room_host"),
    InvalidCohosts: (400, "invalid_cohosts"),
    InvalidSchedule: (422, "invalid_schedule"),
    RoomStarted: (409, "room_started"),
    RoomNotStarted: (409, "room_not_started"),
    RemovedFromRoom: (403, "removed_from_room"),
    TooManyRemoved: (409, "too_many_removed"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    RateLimited: (429, "rate_limited"),
    ParticipantLimitOutOfRange: (422, "max_participants_out_of_range"),
    MetadataTooLarge: (413, "metadata_too_large"),
    NoFreeRoomCode: (503, "no_free_room_code"),
    DatabaseUnavailable: (503, "database_unavailable"),
    PresenceUnavailable: (503, "presence_unavailable"),
    TicketsNotConfigured: (503, "tickets_not_configured"),
}

# A deployment without ticket keys stays so until it is configured and restarted: no point asking soon.
_NOT_CONFIGURED_RETRY_SECONDS = 60


def error_response(
    status_code: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(error=code, detail=detail),
        status_code=status_code,
        media_type=MediaType.JSON,
        headers=headers,
    )


def _service_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    status_code, code = next(_DOMAIN_STATUS[kind] for kind in type(exc).__mro__ if kind in _DOMAIN_STATUS)
    if isinstance(exc, DatabaseUnavailable):
        log.warning("answering 503: %s", exc)
        request.app.state.metrics.incr("database_unavailable_total")
        return error_response(
            status_code, code, "the room database is unavailable; retry shortly", headers={"Retry-After": "1"}
        )
    if isinstance(exc, TicketsNotConfigured):
        return error_response(
            status_code,
            code,
            "this deployment issues no join tickets: ROOMS_TICKET_KEYS is not set",
            headers={"Retry-After": str(_NOT_CONFIGURED_RETRY_SECONDS)},
        )
    if isinstance(exc, RoomNotStarted):
        return Response(
            NotStartedBody(error=code, detail=str(exc), starts_at=exc.starts_at),
            status_code=status_code,
            media_type=MediaType.JSON,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, RateLimited):
        return error_response(status_code, code, str(exc), headers={"Retry-After": str(exc.retry_after)})
    if status_code == 503:  # no free room code, or Redis down: a moment later, another try may succeed
        return error_response(status_code, code, str(exc), headers={"Retry-After": "1"})
    return error_response(status_code, code, str(exc))


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.detail)
    if isinstance(exc, ValidationException):
        return error_response(400, "invalid_request", _validation_detail(exc))
    if exc.status_code == 400:  # Litestar's own parse errors, e.g. malformed JSON
        return error_response(400, "invalid_request", exc.detail)
    if exc.status_code == 413:
        limit = request.app.state.settings.max_body_bytes
        return error_response(413, "body_too_large", f"the request body must be at most {limit} bytes")
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    return error_response(exc.status_code, code, exc.detail, headers=exc.headers)


def _unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred")


def _validation_detail(exc: ValidationException) -> str:
    """Litestar puts msgspec's precise message and the offending field or header in `extra`."""
    problems = [item for item in exc.extra if isinstance(item, dict)] if isinstance(exc.extra, list) else []
    described = [
        f"{item['key']}: {item['message']}" if item.get("key") else str(item.get("message", "")) for item in problems
    ]
    return "; ".join(d for d in described if d) or exc.detail


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    RoomError: _service_error,
    DatabaseUnavailable: _service_error,
    PresenceUnavailable: _service_error,
    TicketsNotConfigured: _service_error,
    HTTPException: _http_error,
    Exception: _unexpected_error,
}
