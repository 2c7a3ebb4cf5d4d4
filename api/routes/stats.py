"""Daily room analytics, recorded by the worker from the room event stream."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from uuid import UUID

from litestar import get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIFormat
from litestar.params import QueryParameter

from api.deps import provide_caller, service_of
from api.errors import ApiError, error_responses
from api.openapi import CALLER
from api.schemas import DailyStatsPage, optional_string

_DEFAULT_DAYS = 7
_DAY = optional_string(format=OpenAPIFormat.DATE)
_DAY_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # the `date` format: RFC 3339's full-date


@get(
    "/stats/daily",
    summary="Rooms created, started and ended, distinct hosts, and sessions per UTC day",
    description=(
        "For the users of ROOMS_ADMIN_USER_IDS only. "
        "Both dates are inclusive (`YYYY-MM-DD`, UTC). Without them: the last 7 days. "
        "Each day: `roomsCreated`, `roomsStarted` (a booked room on the day of its start, any other on "
        "creation), `roomsEnded`, `distinctHosts` (of the rooms created), `sessions` (the sessions that ended "
        "that day: spans in which a room had participants) and `participantSeconds` (the time in the room of "
        "those sessions' participants, summed, to the ms). "
        "Figures come from the event stream, so they trail live traffic by a moment; a session's, by the "
        "worker's presence pass too."
    ),
    tags=["stats"],
    responses=error_responses(400, 401, 403, 503),
    security=CALLER,
    # Business data: only the users of ROOMS_ADMIN_USER_IDS may read it.
    dependencies={"caller": Provide(provide_caller, sync_to_thread=False)},
)
async def daily_stats(
    state: State,
    caller: NamedDependency[UUID],
    first: Annotated[
        str | None,
        QueryParameter(
            name="from", description="First day, inclusive; 6 days before `to` without it.", schema_extra=_DAY
        ),
    ] = None,
    last: Annotated[
        str | None,
        QueryParameter(name="to", description="Last day, inclusive; today (UTC) without it.", schema_extra=_DAY),
    ] = None,
) -> DailyStatsPage:
    if caller not in state.settings.admins:
        raise ApiError(403, "not_admin", "only the users of ROOMS_ADMIN_USER_IDS may read the statistics")
    max_days = state.settings.stats_max_days
    last_day = _day(last, "to") if last is not None else datetime.now(UTC).date()
    # A day before the first of the calendar would overflow: the default range starts there at the earliest.
    first_day = (
        _day(first, "from")
        if first is not None
        else last_day - timedelta(days=min(_DEFAULT_DAYS - 1, (last_day - date.min).days))
    )
    if first_day > last_day:
        raise ApiError(400, "invalid_date_range", "`from` must not be after `to`")
    if (last_day - first_day).days + 1 > max_days:
        raise ApiError(400, "invalid_date_range", f"at most {max_days} days per request")
    days = await service_of(state).daily_stats(first_day, last_day)
    return DailyStatsPage(first=first_day, last=last_day, days=days)


def _day(text: str, name: str) -> date:
    """A day as the description states it. Parsed here rather than by Litestar, which takes `null` for
    no date, and by a stricter rule than `date.fromisoformat`, which also reads `20261125` and week dates."""
    try:
        if _DAY_TEXT.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ApiError(400, "invalid_date", f"`{name}` must be a day as YYYY-MM-DD")
