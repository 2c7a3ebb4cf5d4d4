"""The optional traces without servers: when they are on, what they need, what events carry."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from common import tracing
from common.rooms.events import RoomEvent, RoomEventData, encode_data, from_stream_fields, stream_fields
from tests.support.processes import REPO_ROOT


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "rooms"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_traces_are_on_only_when_the_variables_ask_for_them(environ: dict[str, str], wanted: bool) -> None:
    assert tracing.traces_wanted(environ) is wanted


def run_python(code: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter: setting up traces makes a process-wide provider."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


START = """
import logging, os, sys
logging.basicConfig(level=logging.INFO)
from common import tracing
print("on" if tracing.start_from_environment("roomservice-api", os.environ) else "off")
"""


def test_without_opentelemetry_installed_a_process_asking_for_traces_warns_once_and_runs_without() -> None:
    hidden = "import sys; sys.modules['opentelemetry'] = None  # as if the extra were not installed\n"
    done = run_python(hidden + START, OTEL_TRACES_EXPORTER="otlp")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "off"
    [warning] = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert "pip install 'roomservice[otel]'" in warning


def test_a_process_without_the_variables_starts_no_traces() -> None:
    done = run_python(START + "assert tracing.current_traceparent() is None\n")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "off", "")


def test_the_service_is_named_by_default_or_by_otel_service_name() -> None:
    span = START + "tracing.tracer_provider().get_tracer('t').start_span('s').end()\n"
    for environ, name in [({}, "roomservice-api"), ({"OTEL_SERVICE_NAME": "rooms-eu"}, "rooms-eu")]:
        done = run_python(span, OTEL_TRACES_EXPORTER="console", **environ)
        assert done.returncode == 0, done.stderr
        exported = json.loads(done.stdout.split("\n", 1)[1])  # after "on": the span, as the console exporter writes it
        assert exported["resource"]["attributes"]["service.name"] == name


def test_an_unsupported_protocol_or_exporter_leaves_traces_off_with_a_warning() -> None:
    for environ in [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_TRACES_EXPORTER": "zipkin"},
    ]:
        done = run_python(START, **environ)
        assert done.stdout.strip() == "off", environ
        assert "not supported" in done.stderr
        assert "running without traces" in done.stderr


def test_calls_outside_any_request_or_job_are_not_sampled() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.within_work(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    tracer.start_span("polling the queue", kind=SpanKind.CLIENT).end()
    with tracer.start_as_current_span("POST /rooms", kind=SpanKind.SERVER):
        tracer.start_span("INSERT", kind=SpanKind.CLIENT).end()
    with tracer.start_as_current_span("job relay_outbox"):
        tracer.start_span("SELECT", kind=SpanKind.CLIENT).end()

    assert sorted(span.name for span in exporter.get_finished_spans()) == [
        "INSERT",
        "POST /rooms",
        "SELECT",
        "job relay_outbox",
    ]


async def relay(ctx: dict[str, object]) -> str:
    return tracing.current_traceparent() or "none"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.start(provider)
    tracing.start(provider)  # again: nothing changes
    try:
        yield exporter
    finally:
        tracing.stop()
        provider.shutdown()


async def test_off_a_job_is_itself_and_nothing_has_a_traceparent() -> None:
    assert tracing.traced_job(relay) is relay
    assert await relay({}) == "none"


async def test_on_each_job_run_is_a_span_whose_traceparent_its_work_carries(spans: InMemorySpanExporter) -> None:
    traced = tracing.traced_job(relay)
    assert (traced.__name__, traced.__qualname__) == (relay.__name__, relay.__qualname__)  # arq names jobs by them

    carried = await traced({"job_id": "cron:relay", "job_try": 1})

    [span] = spans.get_finished_spans()
    assert span.name == "job relay"
    assert span.attributes == {"arq.job_id": "cron:relay", "arq.job_try": 1}
    assert span.context is not None
    assert carried == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{span.context.trace_flags:02x}"


def test_tracing_cannot_start_twice_with_different_providers(spans: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError, match="another tracer provider"):
        tracing.start(TracerProvider())


def an_event(traceparent: str | None) -> RoomEvent:
    now = datetime(2026, 11, 25, 10, tzinfo=UTC)
    room = RoomEventData(
        id=uuid.uuid4(),
        room_id="kqz-hwmr-ftx",
        host_id=uuid.uuid4(),
        max_participants=4,
        created_at=now,
        expires_at=now,
        version=1,
    )
    return RoomEvent(
        type="room.created",
        event_id=uuid.uuid4(),
        room_id="kqz-hwmr-ftx",
        occurred_at=now,
        version=1,
        data=room,
        traceparent=traceparent,
    )


def as_entry(event: RoomEvent) -> dict[bytes, bytes]:
    """The fields as Redis gives them back."""
    return {
        key.encode(): value if isinstance(value, bytes) else value.encode()
        for key, value in stream_fields(event, encode_data(event)).items()
    }


def test_an_events_traceparent_is_a_stream_field_only_when_it_has_one() -> None:
    traced = an_event("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    untraced = an_event(None)

    assert stream_fields(traced, encode_data(traced))["traceparent"] == traced.traceparent
    assert "traceparent" not in stream_fields(untraced, encode_data(untraced))
    assert from_stream_fields(as_entry(traced)) == traced
    assert from_stream_fields(as_entry(untraced)) == untraced
