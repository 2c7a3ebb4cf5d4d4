"""Dependency providers: what handlers receive, made from app state and request headers."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request
from litestar.datastructures import State
from litestar.params import HeaderParameter

from api.errors import ApiError
from common.service.changes import RoomChanges
from common.service.presence import Presence
from common.service.rooms import RoomService
from common.service.tickets import TicketService


def service_of(state: State) -> RoomService:
    """The app's room service. Taken from state rather than injected: Litestar resolves two or more
    dependencies of a handler in a task group, which would cost the busiest routes more than their
    Redis round trip; `caller` is the only dependency."""
    service: RoomService = state.room_service
    return service


def changes_of(state: State) -> RoomChanges:
    """The app's room writes (create, change, end), taken from state as `service_of` is."""
    changes: RoomChanges = state.room_changes
    return changes


def presence_of(state: State) -> Presence:
    """Who is in the rooms, taken from state as `service_of` is."""
    presence: Presence = state.presence
    return presence


def tickets_of(state: State) -> TicketService:
    """The app's ticket service, taken from state as `service_of` is."""
    tickets: TicketService = state.ticket_service
    return tickets


def client_of(request: Request[Any, Any, Any]) -> str:
    """Who is asking, for rate limits: the gateway's user id when there is a valid one, else the peer address."""
    x_user_id = request.headers.get("x-user-id")
    if x_user_id:
        try:
            return str(UUID(x_user_id.strip()))
        except ValueError:
            pass
    return f"ip:{request.client.host if request.client else 'unknown'}"


def provide_caller(
    x_user_id: Annotated[
        str | None,
        HeaderParameter(
            name="X-User-Id",
            required=False,
            description="The authenticated user's id (a UUID), injected by the gateway.",
            # Described as the `userId` security scheme of the operations that need it (api/openapi.py).
            include_in_schema=False,
        ),
    ] = None,
) -> UUID:
    """The calling user, as the gateway vouches for it: a header that names no user is no authentication
    (401, like a missing one), whatever else of the request is wrong."""
    if x_user_id is None or not x_user_id.strip():
        raise ApiError(401, "missing_user_id", "the X-User-Id header is required")
    try:
        return UUID(x_user_id.strip())
    except ValueError:
        raise ApiError(401, "invalid_user_id", "the X-User-Id header must be a UUID") from None
