"""Rooms on the calendar as Signaling sees them: join.lua refuses a room booked through the API
(POST /rooms with `startsAt`) with `not_started`, changing nothing, until the room's `opensAtMs`,
then admits; on every Redis topology."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.redis.keys import participants_key, room_key, used_ticket_key
from common.settings import Settings
from common.signaling.contract import JoinContract, JoinResult
from common.tickets.claims import TicketClaims
from tests.support.claims import ticket as verified_ticket
from tests.support.waiting import eventually

HEARTBEAT_MS = 30_000
# How far ahead the rooms that open during a test start: long enough for the first join to come
# before it on a slow machine, short enough to keep the file quick.
SOON = timedelta(seconds=2)


@pytest.fixture
def early_join_seconds() -> int:
    """ROOMS_EARLY_JOIN_SECONDS of the test's app: none, so a room opens at its start (a test
    parametrizes it to change it)."""
    return 0


@pytest.fixture
def settings(settings_with, early_join_seconds: int) -> Settings:
    return settings_with(early_join_seconds=early_join_seconds)


@pytest.fixture
def contract(redis_client) -> JoinContract:
    return JoinContract(redis_client)


async def book_room(client, host, starts_at: datetime, max_participants: int = 3) -> str:
    response = await client.post(
        "/rooms", headers=host, json={"startsAt": starts_at.isoformat(), "maxParticipants": max_participants}
    )
    assert response.status_code == 201, response.text
    return response.json()["roomId"]


async def redis_now_ms(redis_client, room_id: str) -> int:
    """TIME, as join.lua reads it, on the server (the cluster node) holding the room."""
    script = "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)"
    return int(await redis_client.eval(script, 1, room_key(room_id)))


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def join_once_open(
    contract: JoinContract,
    redis_client,
    room_id: str,
    participant: str,
    opens_ms: int,
    ticket: TicketClaims | None = None,
) -> JoinResult:
    """Join until it admits, checking each answer against the server's clock: `not_started` only
    before `opens_ms`, and the admission not before it."""
    admitted: list[JoinResult] = []

    async def admits() -> bool:
        asked_at = await redis_now_ms(redis_client, room_id)
        result = await contract.join(room_id, participant, HEARTBEAT_MS, ticket=ticket)
        if result.outcome == "not_started":
            assert asked_at < opens_ms, "not_started after the room opened"
            return False
        assert await redis_now_ms(redis_client, room_id) >= opens_ms, f"{result.outcome} before the room opened"
        admitted.append(result)
        return True

    await eventually(admits, within=SOON.total_seconds() + 30, what=f"{room_id} admits once it opens")
    return admitted[0]


async def test_a_booked_room_refuses_joins_until_its_start_and_keeps_no_participants(
    client, host, contract, redis_client
) -> None:
    # An offset other than UTC's: the instant is what counts.
    starts_at = (datetime.now(UTC) + SOON).astimezone(timezone(timedelta(hours=2)))
    room_id = await book_room(client, host, starts_at, max_participants=3)

    early = await contract.join(room_id, "alice", HEARTBEAT_MS)
    again = await contract.join(room_id, "alice", HEARTBEAT_MS)  # a heartbeat is refused as well

    assert (early.outcome, early.count, early.max_participants) == ("not_started", 0, 3)
    assert (again.outcome, again.count, again.max_participants) == ("not_started", 0, 3)
    assert not await redis_client.exists(participants_key(room_id))
    assert (await client.get(f"/rooms/{room_id}")).json()["status"] == "scheduled"

    opened = await join_once_open(contract, redis_client, room_id, "alice", epoch_ms(starts_at))

    assert (opened.outcome, opened.count, opened.max_participants) == ("admitted", 1, 3)
    assert await redis_client.zcard(participants_key(room_id)) == 1


async def test_a_ticket_refused_before_the_start_admits_once_the_room_opens(
    client, host, contract, redis_client
) -> None:
    starts_at = datetime.now(UTC) + SOON
    room_id = await book_room(client, host, starts_at)
    # The API issues no ticket before the room opens (409): this is one issued before its start was
    # moved later, or by a Room Service whose clock is ahead of Redis's.
    ticket = verified_ticket(room_id, "alice")

    early = await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=ticket)

    assert (early.outcome, early.count) == ("not_started", 0)
    assert not await redis_client.exists(used_ticket_key(room_id, ticket.jti))
    assert not await redis_client.exists(participants_key(room_id))

    opened = await join_once_open(contract, redis_client, room_id, "alice", epoch_ms(starts_at), ticket=ticket)

    assert (opened.outcome, opened.count) == ("admitted", 1)
    assert await redis_client.get(used_ticket_key(room_id, ticket.jti)) == b"alice"
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS, ticket=ticket)).outcome == "ticket_used"


@pytest.mark.parametrize("early_join_seconds", [120])
async def test_the_early_join_allowance_admits_before_the_start(client, host, contract) -> None:
    within = await book_room(client, host, datetime.now(UTC) + timedelta(seconds=60))
    beyond = await book_room(client, host, datetime.now(UTC) + timedelta(seconds=180))

    admitted = await contract.join(within, "alice", HEARTBEAT_MS)
    refused = await contract.join(beyond, "alice", HEARTBEAT_MS)

    assert (admitted.outcome, admitted.count) == ("admitted", 1)
    assert (refused.outcome, refused.count) == ("not_started", 0)
    # Admitted, though the room has not started: its status says so until its start.
    assert (await client.get(f"/rooms/{within}")).json()["status"] == "scheduled"
