"""Who is in a room (GET /rooms/{roomId}/participants): the live members of the set join.lua keeps,
with when each joined and when its heartbeat lapses, for the room's host and co-hosts only."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import pytest

from common.signaling.contract import JoinContract
from tests.support.rooms import create
from tests.support.waiting import eventually


@pytest.fixture
def contract(redis_client) -> JoinContract:
    return JoinContract(redis_client)


def someone() -> str:
    return str(uuid.uuid4())


async def test_the_live_members_with_when_they_joined(client, host, contract) -> None:
    room_id = (await create(client, host, maxParticipants=4))["roomId"]
    alice, bob, carol = someone(), someone(), someone()
    before = time.time()
    assert (await contract.join(room_id, alice, 30_000)).outcome == "admitted"
    assert (await contract.join(room_id, bob, 30_000)).outcome == "admitted"
    assert (await contract.join(room_id, carol, 300)).outcome == "admitted"  # lapses in 0.3 s
    assert (await contract.join(room_id, alice, 60_000)).outcome == "already_in"  # a heartbeat: joined stays

    async def carol_lapsed() -> bool:
        listed = (await client.get(f"/rooms/{room_id}/participants", headers=host)).json()
        return carol not in {p["participantId"] for p in listed["participants"]}

    await eventually(carol_lapsed, 10, "the lapsed member off the list")
    answer = await client.get(f"/rooms/{room_id}/participants", headers=host)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["count"], body["maxParticipants"]) == (2, 4)
    listed = {p["participantId"]: p for p in body["participants"]}
    assert set(listed) == {alice, bob}
    first, second = listed[alice], listed[bob]
    joined = [datetime.fromisoformat(p["joinedAt"]).timestamp() for p in (first, second)]
    assert before - 1 <= joined[0] <= joined[1] <= time.time() + 1
    assert [p["joinedAt"] for p in body["participants"]] == sorted(p["joinedAt"] for p in body["participants"])
    # alice's heartbeat was refreshed to a minute, bob's is the half-minute of his join.
    lapses = [datetime.fromisoformat(p["heartbeatExpiresAt"]).timestamp() for p in (first, second)]
    assert lapses[0] - joined[0] > 50 > lapses[1] - joined[1] > 20


@pytest.mark.one_topology
async def test_only_the_hosts_may_list_and_a_rejoin_is_a_new_join(client, host, new_host, contract) -> None:
    cohost = str(new_host())
    room_id = (await create(client, host, cohostIds=[cohost]))["roomId"]
    dave = someone()
    assert (await contract.join(room_id, dave, 30_000)).outcome == "admitted"
    first = (await client.get(f"/rooms/{room_id}/participants", headers=host)).json()["participants"][0]["joinedAt"]
    assert await contract.leave(room_id, dave)
    assert (await contract.join(room_id, dave, 30_000)).outcome == "admitted"

    listed = await client.get(f"/rooms/{room_id}/participants", headers={"X-User-Id": cohost})

    assert listed.status_code == 200, listed.text
    assert listed.json()["participants"][0]["joinedAt"] > first
    refused = await client.get(f"/rooms/{room_id}/participants", headers={"X-User-Id": someone()})
    assert (refused.status_code, refused.json()["error"]) == (403, "not_room_host")
    assert (await client.get(f"/rooms/{room_id}/participants")).status_code == 401
    assert (await client.get("/rooms/qqq-qqqq-qqq/participants", headers=host)).status_code == 404
    assert (await client.delete(f"/rooms/{room_id}", headers=host)).status_code == 204
    assert (await client.get(f"/rooms/{room_id}/participants", headers=host)).status_code == 410
