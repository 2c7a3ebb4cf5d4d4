"""Traces: a request is one trace through the API, Postgres and Redis, and its event carries it on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api.app import create_app
from common import tracing
from common.redis.client import RedisClient
from common.settings import Settings
from tests.support.relay import relay_now
from tests.support.waiting import eventually
from worker.jobs.lifecycle import expire_rooms
from worker.jobs.outbox import relay_outbox
from worker.resources import WorkerResources

pytestmark = pytest.mark.one_topology  # what is traced is the same on every topology

ASYNCPG = "opentelemetry.instrumentation.asyncpg"
REDIS = "opentelemetry.instrumentation.redis"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into the test's own provider, which keeps every finished span; off again afterwards,
    asyncpg and redis-py unwrapped, so that no other test is traced."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.start(provider)
    try:
        yield exporter
    finally:
        tracing.stop()
        provider.shutdown()
    assert not hasattr(asyncpg.connection.Connection.fetch, "__wrapped__")  # unwrapped: no test after is traced


def server_span(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [span for span in finished if span.kind is SpanKind.SERVER and span.name == name]
    return span


def trace_id_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{span.context.trace_flags:02x}"


async def stream_fields_of(redis_client: RedisClient, stream: str, room_id: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis_client.xrange(stream) if fields[b"roomId"] == room_id.encode()]


async def test_a_create_is_one_trace_that_its_event_carries_on(
    spans: InMemorySpanExporter, settings: Settings, host, stream_name: str, redis_client, db: asyncpg.Connection
) -> None:
    async with AsyncTestClient(app=create_app(settings)) as client:
        spans.clear()  # what startup did (warm-up, script loads) is no request's
        response = await client.post("/rooms", headers=host)
        assert response.status_code == 201
        room_id = response.json()["roomId"]

        async def answered() -> bool:
            return any(span.kind is SpanKind.SERVER for span in spans.get_finished_spans())

        await eventually(answered, within=5, what="the request's server span ends")

    finished = spans.get_finished_spans()
    request = server_span(finished, "POST /rooms")
    trace_id = trace_id_of(request)
    in_trace = [span for span in finished if trace_id_of(span) == trace_id]
    scopes = {span.instrumentation_scope.name for span in in_trace if span.instrumentation_scope}
    assert ASYNCPG in scopes, [span.name for span in in_trace]
    assert REDIS in scopes, [span.name for span in in_trace]

    [fields] = await stream_fields_of(redis_client, stream_name, room_id)
    traceparent = fields[b"traceparent"].decode()
    assert traceparent == traceparent_of(request)  # the server span: where a consumer continues
    assert int(traceparent.split("-")[3], 16) & 1  # sampled
    outbox = await db.fetchval("SELECT traceparent FROM room_events WHERE room_id = $1", room_id)
    assert outbox == traceparent


async def test_an_event_published_by_the_relay_carries_its_requests_traceparent(
    spans: InMemorySpanExporter,
    settings: Settings,
    host,
    stream_name: str,
    redis_client,
    db: asyncpg.Connection,
    worker_res: WorkerResources,
) -> None:
    async with AsyncTestClient(app=create_app(settings)) as client:
        room_id = (await client.post("/rooms", headers=host)).json()["roomId"]
        changed = await client.patch(f"/rooms/{room_id}", headers=host, json={"maxParticipants": 3})
        assert changed.status_code == 200
    # The app has stopped, its last marks made: as if Redis had not taken these events, the relay
    # is to publish them again, from the outbox.
    await db.execute("UPDATE room_events SET published_at = NULL WHERE room_id = $1", room_id)
    await redis_client.delete(stream_name)
    stored = await db.fetch("SELECT traceparent FROM room_events WHERE room_id = $1 ORDER BY id", room_id)

    assert await relay_outbox(relay_now(worker_res)) >= 2

    published = await stream_fields_of(redis_client, stream_name, room_id)
    assert [fields[b"type"] for fields in published] == [b"room.created", b"room.updated"]
    assert [fields[b"traceparent"].decode() for fields in published] == [row["traceparent"] for row in stored]
    patch_trace_id = trace_id_of(server_span(spans.get_finished_spans(), "PATCH /rooms/{room_id}"))
    assert published[1][b"traceparent"].decode().split("-")[1] == patch_trace_id


async def test_an_expiry_carries_the_traceparent_of_its_job_run(
    spans: InMemorySpanExporter,
    settings: Settings,
    host,
    stream_name: str,
    redis_client,
    db: asyncpg.Connection,
    worker_res: WorkerResources,
) -> None:
    async with AsyncTestClient(app=create_app(settings)) as client:
        room_id = (await client.post("/rooms", headers=host)).json()["roomId"]
    await db.execute(
        "UPDATE meetings SET created_at = now() - interval '2 days', starts_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 second' WHERE room_id = $1",
        room_id,
    )

    assert await tracing.traced_job(expire_rooms)({"resources": worker_res}) >= 1

    [job] = [span for span in spans.get_finished_spans() if span.name == "job expire_rooms"]
    [ended] = [f for f in await stream_fields_of(redis_client, stream_name, room_id) if f[b"type"] == b"room.ended"]
    assert ended[b"traceparent"].decode() == traceparent_of(job)


async def test_with_tracing_off_no_event_has_a_traceparent(
    settings: Settings, host, stream_name: str, redis_client, db: asyncpg.Connection
) -> None:
    assert tracing.tracer_provider() is None
    async with AsyncTestClient(app=create_app(settings)) as client:
        room_id = (await client.post("/rooms", headers=host)).json()["roomId"]
        await client.patch(f"/rooms/{room_id}", headers=host, json={"maxParticipants": 3})
        await client.delete(f"/rooms/{room_id}", headers=host)

    published = await stream_fields_of(redis_client, stream_name, room_id)
    assert [fields[b"type"] for fields in published] == [b"room.created", b"room.updated", b"room.ended"]
    assert all(b"traceparent" not in fields for fields in published)
    assert (
        await db.fetchval("SELECT count(*) FROM room_events WHERE room_id = $1 AND traceparent IS NOT NULL", room_id)
        == 0
    )


async def test_concurrent_creates_each_carry_their_own_requests_traceparent(
    spans: InMemorySpanExporter, settings: Settings, stream_name: str, redis_client
) -> None:
    """Creates of one moment share a statement (common/service/inserts.py), which runs in the
    context of one of them: each event still names its own request."""
    hosts = [{"X-User-Id": str(uuid.uuid4())} for _ in range(5)]
    async with AsyncTestClient(app=create_app(settings)) as client:
        answers = await asyncio.gather(*(client.post("/rooms", headers=host) for host in hosts))
    room_ids = [answer.json()["roomId"] for answer in answers]

    requests = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert len(requests) == len(hosts)
    expected = {traceparent_of(span) for span in requests}
    carried = set()
    for room_id in room_ids:
        [fields] = await stream_fields_of(redis_client, stream_name, room_id)
        carried.add(fields[b"traceparent"].decode())
    assert carried == expected
