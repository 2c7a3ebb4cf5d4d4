"""A room's sessions come in pages: newest first, `limit` sessions at most, `nextCursor` to the next
page; the one in progress with its end, length and reason null; for its host and co-hosts alone, of a
live room or an ended one."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.cursors import encode_cursor
from api.routes.history import MAX_PAGE
from common.db.session_pages import ROOM_SESSIONS_PAGE
from common.rooms.codes import generate_room_code
from tests.support.rooms import create

pytestmark = pytest.mark.one_topology  # Postgres alone answers the sessions

A_MOMENT = datetime(2026, 1, 1, tzinfo=UTC)


async def record_sessions(db, code: str, count: int) -> None:
    """`count` sessions of the room as the presence pass records them: the i-th starts i minutes after
    A_MOMENT and lasts 30.25 s, with i + 0.25 participant-seconds; the last is in progress."""
    await db.execute(
        """
        INSERT INTO room_sessions (meeting_id, started_at, ended_at, peak_participants, distinct_participants,
                                   participant_ms, end_reason, seen_at)
        SELECT m.id, $3::timestamptz + make_interval(mins => i),
               CASE WHEN i < $2 THEN $3::timestamptz + make_interval(mins => i, secs => 30.25) END,
               i % 7 + 1, i % 7 + 2, i * 1000 + 250, CASE WHEN i < $2 THEN 'empty' END,
               $3::timestamptz + make_interval(mins => i, secs => 30.25)
        FROM meetings m, generate_series(1, $2) AS i
        WHERE m.room_id = $1
        """,
        code,
        count,
        A_MOMENT,
    )


async def pages(client, code: str, headers: dict[str, str], **params: object) -> list[dict]:
    found, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor is not None else {})}
        response = await client.get(f"/rooms/{code}/sessions", headers=headers, params=query)
        assert response.status_code == 200, response.text
        found.append(response.json())
        cursor = found[-1]["nextCursor"]
        if cursor is None:
            return found
        assert len(found) <= 1000, "the pages never end"


def start_of(i: int) -> str:
    return (A_MOMENT + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")


async def test_sessions_come_in_pages_newest_first(client, host, db) -> None:
    code = (await create(client, host))["roomId"]
    await record_sessions(db, code, 520)

    default = await pages(client, code, host)
    assert [len(page["sessions"]) for page in default] == [100] * 5 + [20]
    starts = [session["startedAt"] for page in default for session in page["sessions"]]
    assert starts == [start_of(i) for i in range(520, 0, -1)], "every session once, newest first, across pages"
    assert {page["roomId"] for page in default} == {code}

    small = await pages(client, code, host, limit=7)
    assert [s["startedAt"] for page in small for s in page["sessions"]] == starts

    capped = await pages(client, code, host, limit=10_000)
    assert [len(page["sessions"]) for page in capped] == [MAX_PAGE, 20]

    in_progress, ended = default[0]["sessions"][:2]
    assert in_progress == {
        "startedAt": start_of(520),
        "endedAt": None,
        "durationSeconds": None,
        "peakParticipants": 520 % 7 + 1,
        "distinctParticipants": 520 % 7 + 2,
        "participantSeconds": 520.25,
        "endReason": None,
    }
    assert ended == {
        "startedAt": start_of(519),
        "endedAt": "2026-01-01T08:39:30.250000Z",
        "durationSeconds": 30.25,
        "peakParticipants": 519 % 7 + 1,
        "distinctParticipants": 519 % 7 + 2,
        "participantSeconds": 519.25,
        "endReason": "empty",
    }


async def test_the_last_page_says_so_and_a_room_without_sessions_has_none(client, host, db) -> None:
    code = (await create(client, host))["roomId"]
    assert await pages(client, code, host) == [{"roomId": code, "sessions": [], "nextCursor": None}]
    await record_sessions(db, code, 2)
    exact = await pages(client, code, host, limit=2)
    assert [[s["startedAt"] for s in page["sessions"]] for page in exact] == [[start_of(2), start_of(1)]]


async def test_host_and_cohosts_read_them_while_the_room_is_live_and_once_it_ended(client, host, db) -> None:
    cohost = {"X-User-Id": str(uuid.uuid4())}
    code = (await create(client, host, cohostIds=[cohost["X-User-Id"]]))["roomId"]
    await record_sessions(db, code, 3)
    someone = {"X-User-Id": str(uuid.uuid4())}

    refused = await client.get(f"/rooms/{code}/sessions", headers=someone)
    assert (refused.status_code, refused.json()["error"]) == (403, "not_room_host")
    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204
    for reader in (host, cohost):
        [page] = await pages(client, code, reader)
        assert len(page["sessions"]) == 3
    assert (await client.get(f"/rooms/{code}/sessions", headers=someone)).status_code == 403
    unknown = await client.get(f"/rooms/{generate_room_code()}/sessions", headers=host)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "room_not_found")


@pytest.fixture
async def limited(settings_with) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app=create_app(settings_with(miss_limit_per_minute=2))) as client:
        yield client


async def test_lookups_of_unknown_rooms_count_as_misses(limited) -> None:
    for _ in range(3):  # the limit counts per clock minute: again, as a new client, if one ended midway
        caller, minute = {"X-User-Id": str(uuid.uuid4())}, time.time() // 60
        statuses = [
            (await limited.get(f"/rooms/{generate_room_code()}/sessions", headers=caller)).status_code for _ in range(3)
        ]
        if time.time() // 60 == minute:
            assert statuses == [404, 404, 429]
            return
    pytest.fail("three requests never fell within one clock minute")


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=ten",
        "cursor=",
        "cursor=not-a-cursor!",
        "cursor=MjAyNnxub3BlfA",
        # A history's cursor (its key an event's version) and a room list's (a room's id): not positions here.
        f"cursor={encode_cursor(A_MOMENT, 1)}",
        f"cursor={encode_cursor(A_MOMENT, uuid.UUID(int=1))}",
    ],
)
async def test_bad_page_queries_are_400_with_a_reason(client, host, query) -> None:
    code = (await create(client, host))["roomId"]
    response = await client.get(f"/rooms/{code}/sessions?{query}", headers=host)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in {"invalid_limit", "invalid_cursor", "invalid_request"}


async def test_a_page_is_read_from_the_primary_key_backward_without_sorting(db) -> None:
    # With every other way priced out, the plan is an index scan with no Sort only if the primary key
    # serves both the keyset condition and the order; else every page would read all the room's sessions.
    async with db.transaction():
        await db.execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
        )
        plan = "\n".join(
            row[0] for row in await db.fetch("EXPLAIN " + ROOM_SESSIONS_PAGE, "abc-defg-hij", A_MOMENT, 101)
        )
    assert "Index Scan Backward using room_sessions_pkey" in plan, plan
    assert "Sort" not in plan, plan
    # Both in the index condition: how the room's id is named there differs between Postgres versions
    # ($0 on 15, (InitPlan 1).col1 on 17).
    assert re.search(r"Index Cond: \(\(meeting_id = .+\) AND \(started_at < ", plan), plan
