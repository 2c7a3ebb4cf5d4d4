"""Optional OpenTelemetry traces: configured by the standard `OTEL_*` variables, off when they are absent.

Off, nothing is imported, wrapped or added: `current_traceparent()` is a global read and `traced_job`
hands the job back unchanged. On (`start`), Postgres (asyncpg) and Redis calls are traced once per
process, the API adds Litestar's middleware (api/tracing.py) and the worker a span per job run.
The rule for "on" and what the spans are: docs/operations.md#traces.

Nothing here imports OpenTelemetry at module level: the `otel` extra is optional, and a process
whose variables ask for traces without it installed warns once and runs without them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
    from opentelemetry.trace import Link, Span, Tracer, TracerProvider
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Exporters this service can make for OTEL_TRACES_EXPORTER (otlp is HTTP/protobuf, the one installed).
SUPPORTED_EXPORTERS = ("otlp", "console")


class _Started:
    """What `start` set up, cleared by `stop`; read on request paths, so kept to plain attributes."""

    provider: TracerProvider | None = None
    tracer: Tracer | None = None
    current_span: Callable[[], Span] | None = None


_started = _Started()


def traces_wanted(environ: Mapping[str, str]) -> bool:
    """Whether the variables ask for traces: never with `OTEL_SDK_DISABLED=true`; else, if
    `OTEL_TRACES_EXPORTER` is set, when it names an exporter other than `none`; else when
    `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip():
        return bool(_exporter_names(environ))
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return any(environ.get(name, "").strip() for name in endpoints)


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters asked for; `otlp` when only an endpoint is given (the OpenTelemetry default)."""
    names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    return [name for name in names if name and name != "none"]


def start_from_environment(default_service_name: str, environ: Mapping[str, str]) -> bool:
    """Start tracing if the variables ask for it (see `traces_wanted`); whether it is on.

    `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) names the service, else
    `default_service_name`. The provider becomes the process's global one and is flushed at exit.
    """
    if _started.provider is not None:
        return True  # started already: once per process
    if not traces_wanted(environ):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        log.warning(
            "OTEL_* variables ask for traces, but OpenTelemetry is not installed "
            "(pip install 'roomservice[otel]'); running without traces"
        )
        return False
    processors = _span_processors(environ)
    if not processors:
        log.warning("no usable exporter in OTEL_TRACES_EXPORTER; running without traces")
        return False
    resource = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": default_service_name}))
    provider = TracerProvider(resource=resource)  # its sampler: OTEL_TRACES_SAMPLER, by default always on
    provider.sampler = within_work(provider.sampler)  # before any tracer is made, which copies it
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    start(provider)
    log.info("traces on: service %s, exporters %s", resource.attributes["service.name"], _exporter_names(environ))
    return True


def _span_processors(environ: Mapping[str, str]) -> list[SpanProcessor]:
    """A batching processor per supported exporter: spans leave from a thread of their own, never
    from a request. The OTLP exporter reads its endpoint, headers and timeout (10 s by default)
    from the OTEL_EXPORTER_OTLP_* variables itself."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    processors: list[SpanProcessor] = []
    for name in _exporter_names(environ):
        if name == "console":
            processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol not in (None, "", "http/protobuf"):
                # A gRPC collector port does not answer HTTP: better no traces than failing exports.
                log.warning("OTLP protocol %s is not supported (only http/protobuf); otlp ignored", protocol)
                continue
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            log.warning("trace exporter %r is not supported (%s); ignored", name, ", ".join(SUPPORTED_EXPORTERS))
    return processors


def within_work(sampler: Sampler) -> Sampler:
    """`sampler`, except that a Postgres or Redis call outside any request or job is not traced.

    Such calls (arq polling its queue, the API marking published rows, the history consumer's reads)
    happen several times a second whether or not anything is asked of the service: each would be a
    trace of its own, a single client span, drowning the traces of the work.
    """
    from opentelemetry.sdk.trace import sampling
    from opentelemetry.trace import SpanKind, get_current_span

    class WithinWork(sampling.Sampler):
        def should_sample(  # noqa: PLR0917  (the signature is Sampler's)
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            if kind is SpanKind.CLIENT and not get_current_span(parent_context).get_span_context().is_valid:
                return sampling.SamplingResult(sampling.Decision.DROP)
            return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"WithinWork{{{sampler.get_description()}}}"

    return WithinWork()


def start(tracer_provider: TracerProvider) -> None:
    """Trace this process into `tracer_provider`: asyncpg and redis-py instrumented (once per
    process: calling again with the same provider changes nothing), and the API and worker wiring
    switched on for what is made from now on. Tests pass a provider of their own, then `stop`."""
    if _started.provider is tracer_provider:
        return
    if _started.provider is not None:
        raise RuntimeError("tracing has started with another tracer provider; stop() it first")
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.trace import get_current_span

    AsyncPGInstrumentor().instrument(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument(tracer_provider=tracer_provider)
    _started.provider = tracer_provider
    _started.tracer = tracer_provider.get_tracer("roomservice")
    _started.current_span = get_current_span


def stop() -> None:
    """Undo `start`: asyncpg and redis-py as they were, nothing traced that is made from now on.
    The provider is its owner's to shut down."""
    if _started.provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().uninstrument()
    _started.provider = _started.tracer = _started.current_span = None


def tracer_provider() -> TracerProvider | None:
    """The provider traces go to; None while tracing is off."""
    return _started.provider


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span (`00-<trace id>-<span id>-<flags>`, lower-case hex),
    for an event to carry; None while tracing is off or outside any span."""
    current_span = _started.current_span
    if current_span is None:
        return None
    context = current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def traced_job(job: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """The job itself while tracing is off; else the job with a span of its own per run, in which its
    Postgres and Redis calls nest. Its name and qualified name stay the job's (arq names jobs by them)."""
    tracer = _started.tracer
    if tracer is None:
        return job
    span_name = f"job {job.__name__}"

    @functools.wraps(job)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with tracer.start_as_current_span(span_name) as span:
            ctx = args[0] if args else None
            if isinstance(ctx, dict):  # arq's job context
                span.set_attribute("arq.job_id", str(ctx.get("job_id") or ""))
                span.set_attribute("arq.job_try", int(ctx.get("job_try") or 0))
            return await job(*args, **kwargs)

    return run
