"""Moving a room's start and end with PATCH: the bounds (422 invalid_schedule, checked by the service
or, against what the room keeps, by the statement), 409 room_started once it has started, who may
move them, and what a change leaves in Postgres and Redis. A refused change changes nothing at all,
not even the other fields of its body. Booking on create is test_schedule.py's."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from common.redis.keys import room_key
from common.settings import Settings
from tests.support.rooms import create
from tests.support.waiting import eventually

# Only HTTP and the standalone server's keys: the room object on every topology is test_join_schedule.py's.
pytestmark = pytest.mark.one_topology

SCHEDULE_DAYS = 2
ROOM_SECONDS = 3600
EARLY_JOIN_SECONDS = 90
SECOND = timedelta(seconds=1)
MS = timedelta(milliseconds=1)
LONGEST = ROOM_SECONDS * SECOND


@pytest.fixture
def settings(settings_with) -> Settings:
    return settings_with(
        max_schedule_days=SCHEDULE_DAYS,
        max_room_seconds=ROOM_SECONDS,
        room_ttl_seconds=600,
        early_join_seconds=EARLY_JOIN_SECONDS,
    )


@pytest.fixture
def host(new_host) -> dict[str, str]:
    return {"X-User-Id": str(new_host())}  # its rooms are deleted after the test


def user() -> dict[str, str]:
    return {"X-User-Id": str(uuid.uuid4())}


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def times(**moments: datetime) -> dict[str, str]:
    return {name: value.isoformat() for name, value in moments.items()}


async def stored(db, code: str) -> dict[str, Any]:
    """What Postgres holds of the room, and how many events it has in the outbox."""
    row = await db.fetchrow(
        "SELECT max_participants, metadata, starts_at, expires_at, version,"
        " (SELECT count(*) FROM room_events e WHERE e.room_id = m.room_id) AS events"
        " FROM meetings m WHERE room_id = $1",
        code,
    )
    return dict(row)


async def booked(client, host: dict[str, str], **options: object) -> tuple[str, datetime, datetime]:
    """A room starting in half an hour and lasting as long as a room may: its code, start and end."""
    start = datetime.now(UTC) + timedelta(minutes=30)
    room = await create(client, host, **times(startsAt=start, expiresAt=start + LONGEST), **options)
    return room["roomId"], start, start + LONGEST


PAST = "startsAt must be at most 60 s in the past"
AHEAD = f"startsAt must be at most {SCHEDULE_DAYS} days ahead (ROOMS_MAX_SCHEDULE_DAYS)"
NOT_AFTER = "expiresAt must be after startsAt"
TOO_SOON = "expiresAt must be at least 10 s from now"
TOO_LONG = f"expiresAt must be at most {ROOM_SECONDS} s after startsAt (ROOMS_MAX_ROOM_SECONDS)"


# (now, the room's start, its end) -> the schedule asked. Those naming one field are checked against
# the other as the room keeps it, by the statement on the locked row; those naming both, by the service.
@pytest.mark.parametrize(
    ("asked", "detail"),
    [
        (lambda now, s, e: {"startsAt": now - 70 * SECOND}, PAST),
        (lambda now, s, e: {"startsAt": now + timedelta(days=SCHEDULE_DAYS, minutes=1)}, AHEAD),
        (lambda now, s, e: {"expiresAt": now + 5 * SECOND}, TOO_SOON),
        (lambda now, s, e: {"expiresAt": s}, NOT_AFTER),
        (lambda now, s, e: {"expiresAt": s - 60 * SECOND}, NOT_AFTER),
        (lambda now, s, e: {"startsAt": e + 60 * SECOND}, NOT_AFTER),
        (lambda now, s, e: {"startsAt": s + 60 * SECOND, "expiresAt": s + 30 * SECOND}, NOT_AFTER),
        (lambda now, s, e: {"expiresAt": e + MS}, TOO_LONG),
        (lambda now, s, e: {"startsAt": s - MS}, TOO_LONG),
        (lambda now, s, e: {"startsAt": s + 60 * SECOND, "expiresAt": s + 60 * SECOND + LONGEST + MS}, TOO_LONG),
    ],
    ids=["start past", "start too far", "end too soon", "end at kept start", "end before kept start",
         "start after kept end", "end before start", "end too late", "start too early", "both, too long"],
)  # fmt: skip
async def test_a_change_out_of_bounds_changes_nothing(client, host, db, redis_client, asked, detail) -> None:
    code, start, end = await booked(client, host, maxParticipants=2)
    before, cached = await stored(db, code), await redis_client.get(room_key(code))
    body = times(**asked(datetime.now(UTC), start, end)) | {"maxParticipants": 3, "metadata": {"topic": "moved"}}

    refused = await client.patch(f"/rooms/{code}", headers=host, json=body)

    assert refused.status_code == 422, refused.text
    assert refused.json() == {"error": "invalid_schedule", "detail": detail}
    assert await stored(db, code) == before
    assert await redis_client.get(room_key(code)) == cached


@pytest.mark.parametrize(
    "asked",
    [
        lambda now, s, e: {"startsAt": s + 60 * SECOND, "expiresAt": s + 60 * SECOND + LONGEST},
        lambda now, s, e: {"expiresAt": s + MS},
        lambda now, s, e: {"startsAt": e - MS},
        lambda now, s, e: {"startsAt": now - 50 * SECOND, "expiresAt": now + 20 * SECOND},
    ],
    ids=["longest", "shortest, end moved", "shortest, start moved", "opened at once"],
)
async def test_a_change_within_bounds_is_kept(client, host, db, redis_client, asked) -> None:
    code, start, end = await booked(client, host)
    change = asked(datetime.now(UTC), start, end)
    schedule = {"startsAt": start, "expiresAt": end} | change

    changed = await client.patch(f"/rooms/{code}", headers=host, json=times(**change))

    assert changed.status_code == 200, changed.text
    view = changed.json()
    assert (moment(view["startsAt"]), moment(view["expiresAt"])) == (schedule["startsAt"], schedule["expiresAt"])
    assert view["status"] == ("active" if schedule["startsAt"] <= datetime.now(UTC) else "scheduled")
    row = await stored(db, code)
    assert (row["starts_at"], row["expires_at"], row["version"]) == (schedule["startsAt"], schedule["expiresAt"], 2)
    # Signaling's object: the new start, opening to joins the early allowance before it.
    room_object = json.loads(await redis_client.get(room_key(code)))
    assert moment(room_object["startsAt"]) == schedule["startsAt"]
    opens = schedule["startsAt"] - timedelta(seconds=EARLY_JOIN_SECONDS)
    assert room_object["opensAtMs"] == int(opens.timestamp() * 1000)


@pytest.mark.parametrize(
    "body",
    [{"startsAt": "2030-01-01T00:00:00"}, {"expiresAt": "2030-01-01T00:00:00", "maxParticipants": 3},
     {"startsAt": None}, {"expiresAt": 1893456000}],
    ids=["start without offset", "end without offset", "start null", "end a number"],
)  # fmt: skip
async def test_a_time_that_names_no_instant_is_a_bad_body(client, host, db, body) -> None:
    code, _, _ = await booked(client, host)
    before = await stored(db, code)

    refused = await client.patch(f"/rooms/{code}", headers=host, json=body)

    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_body"
    assert f"$.{next(iter(body))}" in refused.json()["detail"]
    assert await stored(db, code) == before


@pytest.mark.parametrize("opened", ["at once", "at its start"])
async def test_the_start_of_a_started_room_stays(client, host, db, opened) -> None:
    if opened == "at once":
        room = await create(client, host)
    else:
        room = await create(client, host, **times(startsAt=datetime.now(UTC) + 2 * SECOND))

        async def started() -> bool:
            return (await client.get(f"/rooms/{room['roomId']}")).json()["status"] == "active"

        await eventually(started, within=30, what="the booked room starts")
    code = room["roomId"]
    before = await stored(db, code)
    later = datetime.now(UTC) + timedelta(minutes=10)

    refused = await client.patch(f"/rooms/{code}", headers=host, json=times(startsAt=later) | {"maxParticipants": 3})

    assert refused.status_code == 409, refused.text
    detail = f"room {code} has started: startsAt can no longer change"
    assert refused.json() == {"error": "room_started", "detail": detail}
    assert await stored(db, code) == before
    # Its schedule sent back whole with a new end: the start it keeps is no change, so the end moves,
    # however long ago that start was (here beyond the 60 s a new start may lie in the past).
    await db.execute("UPDATE meetings SET starts_at = starts_at - interval '5 minutes' WHERE room_id = $1", code)
    kept_start = (await stored(db, code))["starts_at"]
    whole = {"startsAt": kept_start.isoformat(), **times(expiresAt=later)}
    resent = await client.patch(f"/rooms/{code}", headers=host, json=whole)
    assert resent.status_code == 200, resent.text
    assert (moment(resent.json()["startsAt"]), moment(resent.json()["expiresAt"])) == (kept_start, later)


@pytest.mark.parametrize(
    ("who", "status", "error"),
    [("host", 200, None), ("cohost", 200, None), ("stranger", 403, "not_room_host"),
     ("nobody", 401, "missing_user_id")],
)  # fmt: skip
async def test_who_may_move_the_end(client, host, db, who, status, error) -> None:
    cohost = user()
    code, _, end = await booked(client, host, cohostIds=[cohost["X-User-Id"]])
    headers = {"host": host, "cohost": cohost, "stranger": user(), "nobody": {}}[who]
    earlier = end - timedelta(minutes=10)

    response = await client.patch(f"/rooms/{code}", headers=headers, json=times(expiresAt=earlier))

    assert response.status_code == status, response.text
    assert (await stored(db, code))["expires_at"] == (earlier if status == 200 else end)
    if error is not None:
        assert response.json()["error"] == error


async def test_a_cohost_moves_the_start_of_a_booked_room(client, host, db) -> None:
    cohost = user()
    code, start, _ = await booked(client, host, cohostIds=[cohost["X-User-Id"]])
    later = start + timedelta(minutes=20)  # earlier, the room would last longer than a room may

    moved = await client.patch(f"/rooms/{code}", headers=cohost, json=times(startsAt=later))

    assert moved.status_code == 200, moved.text
    assert (moment(moved.json()["startsAt"]), moved.json()["status"]) == (later, "scheduled")
    assert moment((await client.get(f"/rooms/{code}")).json()["startsAt"]) == later
    assert (await stored(db, code))["starts_at"] == later


@pytest.mark.parametrize("by", [timedelta(minutes=20), -timedelta(minutes=5)], ids=["extended", "shortened"])
async def test_a_moved_end_is_served_and_kept_and_again_changes_nothing(client, host, db, redis_client, by) -> None:
    room = await create(client, host, **times(expiresAt=datetime.now(UTC) + timedelta(minutes=10)))
    code = room["roomId"]
    new_end = moment(room["expiresAt"]) + by

    changed = await client.patch(f"/rooms/{code}", headers=host, json=times(expiresAt=new_end))

    assert changed.status_code == 200, changed.text
    assert moment(changed.json()["expiresAt"]) == new_end
    assert moment((await client.get(f"/rooms/{code}", headers=host)).json()["expiresAt"]) == new_end  # cached
    # Redis drops the object at the new end, not the old one.
    assert await redis_client.pexpiretime(room_key(code)) == int(new_end.timestamp() * 1000)
    await redis_client.delete(room_key(code))
    assert moment((await client.get(f"/rooms/{code}", headers=host)).json()["expiresAt"]) == new_end  # Postgres
    after = await stored(db, code)
    assert after["version"] == 2

    # The same end in another offset, and the limit it has: nothing to change, no version, no event.
    tokyo = timezone(timedelta(hours=9))
    same = {"expiresAt": new_end.astimezone(tokyo).isoformat(), "maxParticipants": room["maxParticipants"]}
    again = await client.patch(f"/rooms/{code}", headers=host, json=same)

    assert again.status_code == 200, again.text
    assert again.json() == changed.json()
    assert await stored(db, code) == after
