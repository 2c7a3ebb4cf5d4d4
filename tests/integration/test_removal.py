"""Removing a participant (DELETE /rooms/{roomId}/participants/{participantId}): out of the participant
set at once, barred by join.lua (`removed`) and by tickets (403) until the room ends, with a
`participant.removed` event; who may remove whom; a bar that survives Redis losing the room object."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.redis.keys import participants_key, room_key, used_ticket_key
from common.signaling.contract import JoinContract
from common.tickets.keys import write_new_key
from tests.support.claims import ticket
from tests.support.rooms import create, events_of

HEARTBEAT_MS = 30_000


@pytest.fixture
def contract(redis_client) -> JoinContract:
    return JoinContract(redis_client)


def someone() -> str:
    return str(uuid.uuid4())


async def remove(client, room_id: str, caller: dict[str, str], participant: str) -> int:
    response = await client.delete(f"/rooms/{room_id}/participants/{participant}", headers=caller)
    return response.status_code


async def test_a_removed_participant_leaves_at_once_and_is_barred_until_the_room_ends(
    client, host, contract, redis_client, stream_name
) -> None:
    room_id = (await create(client, host))["roomId"]
    alice, bob = someone(), someone()
    for member in (alice, bob):
        assert (await contract.join(room_id, member, HEARTBEAT_MS)).outcome == "admitted"

    assert await remove(client, room_id, host, alice) == 204

    # Out of the set in the step that wrote the object barring them; the others stay.
    assert await redis_client.zscore(participants_key(room_id), alice) is None
    assert await redis_client.zscore(participants_key(room_id), bob) is not None
    cached = json.loads(await redis_client.get(room_key(room_id)))
    assert cached["removedIds"] == [alice]
    # Refused with or without a ticket, and the ticket stays unused; nobody else is refused.
    assert (await contract.join(room_id, alice, HEARTBEAT_MS)).outcome == "removed"
    with_ticket = ticket(room_id, alice)
    refused = await contract.join(room_id, alice, HEARTBEAT_MS, ticket=with_ticket)
    assert (refused.outcome, refused.count) == ("removed", 0)
    assert not await redis_client.exists(used_ticket_key(room_id, with_ticket.jti))
    assert await redis_client.zscore(participants_key(room_id), alice) is None
    assert (await contract.join(room_id, bob, HEARTBEAT_MS)).outcome == "already_in"
    # Signaling hears of it on the stream, to disconnect them.
    [event] = [e for e in await events_of(redis_client, stream_name, room_id) if e.type == "participant.removed"]
    assert (event.version, event.data.participant_id, event.data.removed_ids) == (2, alice, (alice,))


@pytest.mark.one_topology
async def test_barring_someone_absent_works_and_barring_again_changes_nothing(
    client, host, contract, redis_client, stream_name, db
) -> None:
    room_id = (await create(client, host))["roomId"]
    carol = someone()

    assert await remove(client, room_id, host, carol) == 204
    assert await remove(client, room_id, host, carol.upper()) == 204  # the same user: tickets write it lower-case

    assert await db.fetchval("SELECT version FROM meetings WHERE room_id = $1", room_id) == 2
    removals = [e for e in await events_of(redis_client, stream_name, room_id) if e.type == "participant.removed"]
    assert len(removals) == 1
    assert (await contract.join(room_id, carol, HEARTBEAT_MS)).outcome == "removed"


@pytest.mark.one_topology
async def test_who_may_remove_whom(client, host, new_host) -> None:
    cohost, other_cohost, stranger = str(new_host()), someone(), someone()
    room_id = (await create(client, host, cohostIds=[cohost, other_cohost]))["roomId"]
    host_id = host["X-User-Id"]

    assert await remove(client, room_id, {"X-User-Id": stranger}, someone()) == 403
    assert await remove(client, room_id, {}, someone()) == 401
    # Nobody removes the host: not a co-host, not the host.
    refused = await client.delete(f"/rooms/{room_id}/participants/{host_id}", headers={"X-User-Id": cohost})
    assert (refused.status_code, refused.json()["error"]) == (403, "not_room_host")
    assert await remove(client, room_id, host, host_id) == 403
    # A co-host removes a guest, or another co-host; the host anyone else.
    assert await remove(client, room_id, {"X-User-Id": cohost}, someone()) == 204
    assert await remove(client, room_id, {"X-User-Id": cohost}, other_cohost) == 204
    assert await remove(client, room_id, host, stranger) == 204


@pytest.mark.one_topology
async def test_removal_answers_for_unknown_ended_and_malformed(client, host) -> None:
    room_id = (await create(client, host))["roomId"]

    assert await remove(client, "qqq-qqqq-qqq", host, someone()) == 404
    bad = await client.delete(f"/rooms/{room_id}/participants/{'x' * 129}", headers=host)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_participant_id")
    assert (await client.delete(f"/rooms/{room_id}", headers=host)).status_code == 204
    assert await remove(client, room_id, host, someone()) == 410


@pytest.mark.one_topology
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated via RFC 9864")
async def test_a_removed_user_gets_no_ticket(settings_with, host, tmp_path: Path) -> None:
    write_new_key(tmp_path / "key.pem")
    async with AsyncTestClient(app=create_app(settings_with(ticket_keys=str(tmp_path / "key.pem")))) as client:
        room_id = (await create(client, host))["roomId"]
        dave = someone()
        assert (await client.post(f"/rooms/{room_id}/tickets", headers={"X-User-Id": dave})).status_code == 201

        assert await remove(client, room_id, host, dave) == 204
        refused = await client.post(f"/rooms/{room_id}/tickets", headers={"X-User-Id": dave})

        assert (refused.status_code, refused.json()["error"]) == (403, "removed_from_room")
        assert (await client.post(f"/rooms/{room_id}/tickets", headers={"X-User-Id": someone()})).status_code == 201


async def test_the_bar_outlives_the_room_object(client, host, contract, redis_client) -> None:
    # Redis loses the object (a restart without its data): the one rebuilt from Postgres bars them still.
    room_id = (await create(client, host))["roomId"]
    erin = someone()
    assert await remove(client, room_id, host, erin) == 204
    await redis_client.delete(room_key(room_id))
    assert (await contract.join(room_id, erin, HEARTBEAT_MS)).outcome == "not_cached"

    assert (await client.get(f"/rooms/{room_id}")).status_code == 200  # caches it again

    assert (await contract.join(room_id, erin, HEARTBEAT_MS)).outcome == "removed"
