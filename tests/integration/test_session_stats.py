"""The daily statistics count sessions: the history consumer counts each `session.ended` it records on
the UTC day of the session's end (`sessions`), with its participant-seconds (`participantSeconds`, to
the ms), once however often it is delivered."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import cast

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.rooms.events import EventType, RoomEvent, decode_data, from_stream_fields, stream_fields
from common.signaling.contract import JoinContract
from tests.support.relay import relay_now
from tests.support.rooms import create
from worker.history import HistoryConsumer
from worker.jobs.outbox import relay_outbox
from worker.jobs.presence import check_presence

pytestmark = pytest.mark.one_topology  # Postgres counts; the stream is read the same on every topology

ADMIN = str(uuid.uuid4())
HEARTBEAT_MS = 30_000


@pytest.fixture
async def analyst(settings_with) -> AsyncIterator[AsyncTestClient]:
    """A client acting as one of ROOMS_ADMIN_USER_IDS, who may read the statistics."""
    async with AsyncTestClient(app=create_app(settings_with(admin_user_ids=ADMIN))) as client:
        client.headers["X-User-Id"] = ADMIN
        yield client


async def drain(res) -> None:
    """Let a consumer read and record until the stream has nothing new for it."""
    consumer = HistoryConsumer(res, name="consumer-1", block_ms=10)
    await consumer.ensure_group()
    while entries := await consumer.read(own_backlog=False):
        await consumer.handle(entries)


async def days(analyst, first: date, last: date) -> dict[str, dict]:
    response = await analyst.get(f"/stats/daily?from={first}&to={last}")
    assert response.status_code == 200, response.text
    return {day["day"]: day for day in response.json()["days"]}


async def test_a_session_the_presence_pass_recorded_is_counted_on_the_day_it_ended(
    analyst, host, redis_client, stream_name, worker_res, db
) -> None:
    code = (await create(analyst, host))["roomId"]
    contract = JoinContract(redis_client)
    for who in ("alice", "bob"):
        assert (await contract.join(code, who, HEARTBEAT_MS)).outcome == "admitted"
    for who in ("alice", "bob"):
        assert await contract.leave(code, who) is True
    await check_presence({"resources": worker_res})
    [session] = await db.fetch(
        "SELECT s.* FROM room_sessions s JOIN meetings m ON m.id = s.meeting_id WHERE m.room_id = $1", code
    )
    assert session["end_reason"] == "empty"
    day = session["ended_at"].astimezone(UTC).date()
    before = (await days(analyst, day, day))[day.isoformat()]

    await relay_outbox(relay_now(worker_res))  # the pass's events, and any other test's left in the outbox
    await drain(worker_res)

    # Every session.ended this test's stream carried is new to the history: the relay publishes each once.
    ended = [
        event.data.session
        for event in (from_stream_fields(fields) for _, fields in await redis_client.xrange(stream_name))
        if event.type == "session.ended" and event.data.session is not None
    ]
    assert session["started_at"] in {s.started_at for s in ended}
    on_the_day = [s for s in ended if s.ended_at is not None and s.ended_at.astimezone(UTC).date() == day]
    after = (await days(analyst, day, day))[day.isoformat()]
    assert after["sessions"] == before["sessions"] + len(on_the_day)
    seconds = sum(Decimal(str(s.participant_seconds)) for s in on_the_day)  # exact to the ms, as the events
    assert Decimal(str(after["participantSeconds"])) == Decimal(str(before["participantSeconds"])) + seconds
    assert after["roomsCreated"] >= before["roomsCreated"]  # the other figures are still there


async def test_sessions_count_once_on_their_end_day_with_their_participant_seconds(
    analyst, host, redis_client, stream_name, worker_res, db
) -> None:
    code = (await create(analyst, host))["roomId"]
    room = json.loads(await db.fetchval("SELECT room_event_data(m) FROM meetings m WHERE room_id = $1", code))
    day = date(2003, 3, 3)  # a day of this test's own
    midnight = datetime(2003, 3, 4, tzinfo=UTC)

    def event(kind: str, started: datetime, ended: datetime | None, seconds: float) -> tuple[RoomEvent, str]:
        """An event as the presence pass writes it, and its data as the stream carries it."""
        session = {"startedAt": started.isoformat(), "peakParticipants": 2, "distinctParticipants": 3}
        session["participantSeconds"] = seconds
        if ended is not None:
            session |= {"endedAt": ended.isoformat(), "durationSeconds": (ended - started).total_seconds()}
            session["endReason"] = "empty"
        data = json.dumps({**room, "session": session})
        at = started if ended is None else ended
        kind = cast(EventType, kind)
        return RoomEvent(
            type=kind, event_id=uuid.uuid4(), room_id=code, occurred_at=at, version=1, data=decode_data(data)
        ), data

    async def deliver(*events: tuple[RoomEvent, str]) -> None:
        for e, data in events:
            await redis_client.xadd(stream_name, stream_fields(e, data))
        await drain(worker_res)

    last_ms = midnight - timedelta(milliseconds=1)
    noon = datetime(2003, 3, 3, 12, tzinfo=UTC)
    late = event("session.ended", last_ms - timedelta(seconds=5), last_ms, 1.4)
    next_day = event("session.ended", midnight - timedelta(seconds=5), midnight, 2.6)
    twice = event("session.ended", noon - timedelta(minutes=1), noon, 3.5)
    await deliver(event("session.started", noon - timedelta(minutes=1), None, 0), twice, late, next_day)
    await deliver(twice)  # delivered again (a relay repeat): recorded and counted once

    found = await days(analyst, day, day + timedelta(days=1))
    assert {d: (f["sessions"], f["participantSeconds"]) for d, f in found.items()} == {
        "2003-03-03": (2, 1.4 + 3.5),  # 23:59:59.999 is still the 3rd
        "2003-03-04": (1, 2.6),  # midnight is the 4th
    }
    recorded = "SELECT count(*) FROM room_history WHERE event_id = $1"
    assert await db.fetchval(recorded, twice[0].event_id) == 1
