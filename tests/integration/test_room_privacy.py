"""Who hosts a room is told only to its hosts: `GET /rooms/{roomId}` answers anyone else without
`hostId` and `cohostIds`, whether Redis or Postgres answers; the room object Signaling reads keeps them."""

from __future__ import annotations

import json
import uuid

from common.redis.keys import room_key
from tests.support.rooms import create

PUBLIC_FIELDS = {
    "roomId",
    "maxParticipants",
    "createdAt",
    "startsAt",
    "expiresAt",
    "status",
    "metadata",
    "emptyTimeoutSeconds",
    "unusedTimeoutSeconds",
}
FULL_FIELDS = PUBLIC_FIELDS | {"hostId", "cohostIds"}


async def views(client, code: str, host: dict[str, str], cohost: str) -> dict[str, dict]:
    callers = {
        "anonymous": {},
        "stranger": {"X-User-Id": str(uuid.uuid4())},
        "not a user id": {"X-User-Id": "nobody"},
        "host": host,
        "cohost, in capitals": {"X-User-Id": cohost.upper()},
    }
    answers = {}
    for name, headers in callers.items():
        response = await client.get(f"/rooms/{code}", headers=headers)
        assert response.status_code == 200, (name, response.text)
        answers[name] = response.json()
    return answers


async def test_only_the_hosts_are_told_who_hosts_a_room(client, host, redis_client) -> None:
    cohost = str(uuid.uuid4())
    room = await create(client, host, cohostIds=[cohost], metadata={"title": "sync"})
    code = room["roomId"]

    for served_from in ("Redis", "Postgres"):
        answers = await views(client, code, host, cohost)
        for name in ("anonymous", "stranger", "not a user id"):
            assert set(answers[name]) == PUBLIC_FIELDS, (served_from, name, answers[name])
            assert answers[name] == {k: v for k, v in room.items() if k in PUBLIC_FIELDS}
        for name in ("host", "cohost, in capitals"):
            assert set(answers[name]) == FULL_FIELDS, (served_from, name)
            assert answers[name] == room
        # The room object Signaling reads still names them; then, without it, Postgres answers.
        cached = json.loads(await redis_client.get(room_key(code)))
        assert (cached["hostId"], cached["cohostIds"]) == (host["X-User-Id"], [cohost])
        await redis_client.delete(room_key(code))


async def test_the_description_says_which_view_is_whose(client) -> None:
    description = (await client.get("/schema/openapi.json")).json()
    answer = description["paths"]["/rooms/{room_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    views = {ref["$ref"].rsplit("/", 1)[1] for ref in answer["schema"]["anyOf"]}
    assert views == {"RoomView", "PublicRoomView"}
    schemas = description["components"]["schemas"]
    assert set(schemas["PublicRoomView"]["properties"]) == PUBLIC_FIELDS
    assert set(schemas["PublicRoomView"]["required"]) == PUBLIC_FIELDS
    assert {"hostId", "cohostIds"} <= set(schemas["RoomView"]["required"])
    assert "host" in schemas["PublicRoomView"]["description"]
    assert "host" in schemas["RoomView"]["description"]
