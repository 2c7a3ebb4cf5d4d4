"""The API's part of the optional traces (common/tracing.py): a server span per request, named by
its route (`POST /rooms`, `GET /rooms/{room_id}`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common import tracing

if TYPE_CHECKING:
    from litestar.middleware.base import DefineMiddleware
    from litestar.types import Message, Receive, Scope, Send

# Probes and scrapes come every few seconds whatever the traffic: traces of them would crowd out
# the traces of the work.
UNTRACED_PATHS = ["^/health/", "^/metrics$"]


def tracing_middleware() -> list[DefineMiddleware]:
    """Litestar's OpenTelemetry middleware while tracing is on in this process (Litestar makes it its
    OpenTelemetryPlugin, outermost), else nothing at all: no middleware, no cost."""
    provider = tracing.tracer_provider()
    if provider is None:
        return []
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryInstrumentationMiddleware
    from opentelemetry.trace import get_current_span

    class RouteNamedSpans(OpenTelemetryInstrumentationMiddleware):
        """The server span starts before routing, so it is named by the method alone (Litestar's
        own name would be the raw path: a name per room code). Once routed, the answer's first
        message renames it by the route, the span being current and not yet ended then."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def send_naming_the_route(message: Message) -> None:
                template = scope.get("path_template")
                if message["type"] == "http.response.start" and template:
                    route = template  # already without the parameters' types: `/rooms/{room_id}`
                    span = get_current_span()
                    span.update_name(f"{scope.get('method', '')} {route}")
                    span.set_attribute("http.route", route)
                await send(message)

            await super().__call__(scope, receive, send_naming_the_route)

    config = OpenTelemetryConfig(
        tracer_provider=provider,
        scope_span_details_extractor=_method_only,
        exclude=UNTRACED_PATHS,
        # A span per ASGI message (the body's receive, the answer's two sends) tells nothing the
        # server span does not, at the cost of three more spans per request.
        exclude_spans=["receive", "send"],
        middleware_class=RouteNamedSpans,
    )
    return [config.middleware]


def _method_only(scope: Scope) -> tuple[str, dict[str, Any]]:
    return str(scope.get("method", "HTTP")), {}
