"""A room's history comes in pages: oldest first, `limit` events at most, `nextCursor` to the next page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from api.cursors import encode_cursor
from api.routes.history import MAX_PAGE
from common.db.history import ROOM_HISTORY_PAGE
from tests.support.rooms import create

pytestmark = pytest.mark.one_topology  # Postgres alone answers the history

A_MOMENT = datetime(2026, 1, 1, tzinfo=UTC)


async def record_changes(db, code: str, count: int) -> None:
    """`count` recorded `room.updated` events after the room's `room.created` (as the worker records
    them from the stream): versions 2.., a millisecond apart, except that versions 3 and 4 share a
    moment, which only the version orders."""
    await db.execute(
        """
        INSERT INTO room_history (event_id, room_id, type, version, occurred_at, data)
        SELECT gen_random_uuid(), m.room_id, 'room.updated', v,
               m.created_at + make_interval(secs => (CASE WHEN v = 4 THEN 3 ELSE v END) / 1000.0),
               room_event_data(m) || jsonb_build_object('version', v)
        FROM meetings m, generate_series(2, $2 + 1) AS v
        WHERE m.room_id = $1
        """,
        code,
        count,
    )
    await db.execute(
        """
        INSERT INTO room_history (event_id, room_id, type, version, occurred_at, data)
        SELECT gen_random_uuid(), room_id, 'room.created', 1, created_at, room_event_data(m)
        FROM meetings m WHERE room_id = $1
        """,
        code,
    )


async def pages(client, code: str, headers: dict[str, str], **params: object) -> list[dict]:
    found, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor is not None else {})}
        response = await client.get(f"/rooms/{code}/history", headers=headers, params=query)
        assert response.status_code == 200, response.text
        found.append(response.json())
        cursor = found[-1]["nextCursor"]
        if cursor is None:
            return found
        assert len(found) <= 1000, "the pages never end"


async def test_history_comes_in_pages_oldest_first(client, host, db) -> None:
    code = (await create(client, host))["roomId"]
    await record_changes(db, code, 519)  # 520 events in all

    default = await pages(client, code, host)
    assert [len(page["events"]) for page in default] == [100] * 5 + [20]
    versions = [event["version"] for page in default for event in page["events"]]
    assert versions == list(range(1, 521)), "every event once, oldest first, across page boundaries"
    assert {page["roomId"] for page in default} == {code}

    small = await pages(client, code, host, limit=3)  # versions 3 and 4 share a moment across pages 1 and 2
    assert [event["version"] for page in small for event in page["events"]] == list(range(1, 521))

    capped = await pages(client, code, host, limit=10_000)
    assert [len(page["events"]) for page in capped] == [MAX_PAGE, 20]


async def test_the_last_page_says_so(client, host, db) -> None:
    code = (await create(client, host))["roomId"]
    await record_changes(db, code, 1)  # 2 events

    exact = await pages(client, code, host, limit=2)
    assert [[e["version"] for e in page["events"]] for page in exact] == [[1, 2]]
    assert exact[0]["nextCursor"] is None


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=ten",
        "cursor=",
        "cursor=not-a-cursor!",
        "cursor=MjAyNnxub3BlfA",
        # A room list's cursor: its key is a room's id, not an event's version.
        f"cursor={encode_cursor(A_MOMENT, uuid.UUID(int=1))}",
        # Versions beyond what Postgres's integer holds, and none below 1.
        f"cursor={encode_cursor(A_MOMENT, 2**31)}",
        f"cursor={encode_cursor(A_MOMENT, 0)}",
    ],
)
async def test_bad_page_queries_are_400_with_a_reason(client, host, query) -> None:
    code = (await create(client, host))["roomId"]
    response = await client.get(f"/rooms/{code}/history?{query}", headers=host)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in {"invalid_limit", "invalid_cursor", "invalid_request"}


async def test_a_page_is_read_from_the_index_without_sorting(db) -> None:
    # With every other way priced out, the plan is an index scan with no Sort only if the index serves
    # both the keyset condition and the order; else every page would read the room's whole history.
    async with db.transaction():
        await db.execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
        )
        plan = "\n".join(
            row[0] for row in await db.fetch("EXPLAIN " + ROOM_HISTORY_PAGE, "abc-defg-hij", None, None, 101)
        )
    assert "Index Scan using room_history_room_id_idx" in plan, plan
    assert "Sort" not in plan, plan
    assert "Index Cond: (((room_id)::text = 'abc-defg-hij'::text) AND (ROW(occurred_at, version) >" in plan, plan
