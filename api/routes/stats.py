"""Daily room analytics, recorded by the worker from the room event stream."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from litestar import get
from litestar.datastructures import State
from litestar.params import QueryParameter

from api.deps import service_of
from api.errors import ApiError, error_responses
from api.schemas import DailyStatsPage

_DEFAULT_DAYS = 7


@get(
    "/stats/daily",
    summary="Rooms created, rooms ended and distinct hosts per UTC day",
    description=(
        "Both dates are inclusive (`YYYY-MM-DD`, UTC). Without them: the last 7 days. "
        "Figures come from the event stream, so they trail live traffic by a moment."
    ),
    tags=["stats"],
    responses=error_responses(400, 503),
)
async def daily_stats(
    state: State,
    first: Annotated[date | None, QueryParameter(name="from", description="First day, inclusive.")] = None,
    last: Annotated[date | None, QueryParameter(name="to", description="Last day, inclusive.")] = None,
) -> DailyStatsPage:
    max_days = state.settings.stats_max_days
    last = last or datetime.now(UTC).date()
    first = first or last - timedelta(days=_DEFAULT_DAYS - 1)
    if first > last:
        raise ApiError(400, "invalid_date_range", "`from` must not be after `to`")
    if (last - first).days + 1 > max_days:
        raise ApiError(400, "invalid_date_range", f"at most {max_days} days per request")
    return DailyStatsPage(first=first, last=last, days=await service_of(state).daily_stats(first, last))
