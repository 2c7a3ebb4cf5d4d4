"""What is seen of every request: its id (`X-Request-Id`), its metrics, and its log line.

`RequestObserver` wraps the whole application, outside Litestar's routing and error handling, so an
unknown path, a refused method and an error answer are observed like any other request, with the
status the client really got.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import re
import secrets
import time
from collections.abc import Iterable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from common.logs import CURRENT_REQUEST, RequestContext
from common.metrics import Metrics
from common.settings import Settings

log = logging.getLogger("roomservice.access")

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
# A caller's id is kept when it is 1 to 128 visible ASCII characters; anything else is replaced.
REQUEST_ID_PATTERN = r"^[\x21-\x7e]{1,128}$"
# fullmatch on the bare class: `$` would also let a trailing newline through.
_VALID_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Request latency buckets, in seconds: a cached validate answers in about a millisecond, a miss in a
# few, and the bounds on Postgres (1.5 s) and Redis (0.25 s) cap the rest.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# A request id made here: this process's random prefix and a count, unique across processes and
# restarts, and a quarter of the cost of drawing 16 random bytes per request.
_ID_PREFIX = secrets.token_hex(8)
_id_count = itertools.count(1)


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's `X-Request-Id` when it is acceptable, else a new one (32 hex digits)."""
    for name, value in headers:
        if name == _REQUEST_ID_KEY:
            if _VALID_REQUEST_ID.fullmatch(value):
                return value.decode()
            break
    return f"{_ID_PREFIX}{next(_id_count):016x}"


class RequestMetrics:
    """Requests by method, route template and status, and their latency by method and route.

    The route is the template (`/rooms/{room_id}`), never the path: a series per room code would grow
    without end. A request only adds to plain per-label tallies (no lock, no shared file: a few
    hundred nanoseconds); `flush` moves them into prometheus_client's counter and histogram, before
    every scrape and, with several processes, every second (so another process's scrape is at most
    that far behind).
    """

    def __init__(self, metrics: Metrics) -> None:
        self._requests = metrics.counter(
            "http_requests_total", "HTTP requests answered, by method, route and status.", ("method", "route", "status")
        )
        self._latency = metrics.histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte, by method and route.",
            ("method", "route"),
            LATENCY_BUCKETS,
        )
        # (method, route, status) -> [requests, seconds in all, requests per bucket (the last: +Inf)]
        self._tallies: dict[tuple[str, str, int], list[float]] = {}
        metrics.before_exposition(self.flush)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        tally = self._tallies.get((method, route, status))
        if tally is None:
            tally = self._tallies[method, route, status] = [0.0] * (3 + len(LATENCY_BUCKETS))
        tally[0] += 1
        tally[1] += seconds
        tally[2 + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def flush(self) -> None:
        for (method, route, status), tally in self._tallies.items():
            if not tally[0]:
                continue
            moved, tally[:] = tally[:], [0.0] * len(tally)  # taken first: a failure below loses, never doubles
            self._requests.labels(method, route, str(status)).inc(moved[0])
            latency = self._latency.labels(method, route)
            # What `observe` does one value at a time: a request counts in the first bucket that holds
            # it, and the exposition adds the buckets up. prometheus_client has no call for many values.
            latency._sum.inc(moved[1])
            for bucket, count in zip(latency._buckets, moved[2:], strict=True):
                if count:
                    bucket.inc(count)


class RequestObserver:
    """The ASGI wrapper around the app: gives each HTTP request its id (returned on every answer and
    on every log line of the request), counts and times it, and logs it as `ROOMS_ACCESS_LOG` says."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: RequestMetrics | None) -> None:
        self._app = app
        self._metrics = metrics
        self._log_from = {"all": 0, "errors": 500, "off": 1000}[settings.access_log]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        id_header = (_REQUEST_ID_KEY, request_id.encode())
        status = 500  # what the client sees if the app fails before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        method = scope["method"]
        # Any other method a client makes up is one label value, not a new series each.
        context = RequestContext(request_id, method if method in _METHODS else "other", scope)  # type: ignore[arg-type]
        token = CURRENT_REQUEST.set(context)
        try:
            await self._app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self._metrics is not None:
                self._metrics.observe(context.method, context.route, status, seconds)
            if status >= self._log_from:
                log.log(
                    logging.WARNING if status >= 500 else logging.INFO,
                    "%s %s %d",
                    context.method,
                    context.route,
                    status,
                    extra={"status": status, "duration_ms": round(seconds * 1000, 3)},
                )
            CURRENT_REQUEST.reset(token)
