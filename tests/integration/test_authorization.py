"""The table of who may do what (README.md, "Who may do what"), row by row, against the real app."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.tickets.keys import write_new_key

pytestmark = pytest.mark.one_topology

ADMIN = str(uuid.uuid4())
COHOST = str(uuid.uuid4())  # every room of the table names this user as its co-host

# action -> (method, path with {code}, body); each case gets a fresh room of its own.
ACTIONS = {
    "create": ("POST", "/rooms", None),
    "list": ("GET", "/rooms", None),
    "validate": ("GET", "/rooms/{code}", None),
    "change": (
        "PATCH",
        "/rooms/{code}",
        {"maxParticipants": 3, "metadata": {"topic": "planning"}, "emptyTimeoutSeconds": 60, "unusedTimeoutSeconds": 0},
    ),
    "change co-hosts": ("PATCH", "/rooms/{code}", {"cohostIds": ["{someone}"]}),
    "hand over": ("PATCH", "/rooms/{code}", {"hostId": "{someone}"}),
    "move the end": ("PATCH", "/rooms/{code}", {"expiresAt": "{later}"}),
    "list participants": ("GET", "/rooms/{code}/participants", None),
    "remove a participant": ("DELETE", "/rooms/{code}/participants/{someone}", None),
    "end": ("DELETE", "/rooms/{code}", None),
    "history": ("GET", "/rooms/{code}/history", None),
    "sessions": ("GET", "/rooms/{code}/sessions", None),
    "stats": ("GET", "/stats/daily", None),
    "ticket": ("POST", "/rooms/{code}/tickets", None),
}

# (who, action) -> the status the table promises.
TABLE = {
    **{("host", action): status for action, status in
       {"create": 201, "list": 200, "validate": 200, "change": 200, "change co-hosts": 200, "hand over": 200,
        "move the end": 200, "list participants": 200, "remove a participant": 204,
        "end": 204, "history": 200, "sessions": 200, "stats": 403, "ticket": 201}.items()},
    **{("co-host", action): status for action, status in
       {"create": 201, "list": 200, "validate": 200, "change": 200, "change co-hosts": 403, "hand over": 403,
        "move the end": 200, "list participants": 200, "remove a participant": 204,
        "end": 204, "history": 200, "sessions": 200, "stats": 403, "ticket": 201}.items()},
    **{("someone else", action): status for action, status in
       {"create": 201, "list": 200, "validate": 200, "change": 403, "change co-hosts": 403, "hand over": 403,
        "move the end": 403, "list participants": 403, "remove a participant": 403,
        "end": 403, "history": 403, "sessions": 403, "stats": 403, "ticket": 201}.items()},
    **{("nobody", action): status for action, status in
       {"create": 401, "list": 401, "validate": 200, "change": 401, "change co-hosts": 401, "hand over": 401,
        "move the end": 401, "list participants": 401, "remove a participant": 401,
        "end": 401, "history": 401, "sessions": 401, "stats": 401, "ticket": 401}.items()},
    **{("an admin", action): status for action, status in
       {"validate": 200, "change": 403, "change co-hosts": 403, "hand over": 403, "move the end": 403,
        "list participants": 403, "remove a participant": 403, "end": 403, "history": 403, "sessions": 403,
        "stats": 200}.items()},
}  # fmt: skip
ROLES = {"host": "host", "co-host": "cohost", "someone else": "guest"}


@pytest.fixture
async def app_client(settings_with, tmp_path) -> AsyncIterator[AsyncTestClient]:
    write_new_key(tmp_path / "ticket-key.pem")
    settings = settings_with(admin_user_ids=ADMIN, ticket_keys=str(tmp_path / "ticket-key.pem"))
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(("who", "action"), sorted(TABLE))
async def test_who_may_do_what(app_client, host, db, who, action) -> None:
    code = (await app_client.post("/rooms", headers=host, json={"cohostIds": [COHOST]})).json()["roomId"]
    caller = {
        "host": host,
        "co-host": {"X-User-Id": COHOST},
        "someone else": {"X-User-Id": str(uuid.uuid4())},
        "an admin": {"X-User-Id": ADMIN},
        "nobody": {},
    }[who]
    method, path, body = ACTIONS[action]
    someone = str(uuid.uuid4())  # a user of no other part in the room, where the request names one
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    if body is not None:
        body = json.loads(json.dumps(body).replace("{someone}", someone).replace("{later}", later))
    version = await db.fetchval("SELECT version FROM meetings WHERE room_id = $1", code)

    response = await app_client.request(method, path.format(code=code, someone=someone), headers=caller, json=body)

    assert response.status_code == TABLE[who, action], response.text
    if action == "ticket" and response.status_code == 201:  # anyone may ask; the ticket says who they are
        assert response.json()["role"] == ROLES[who]
    if response.status_code in (401, 403):
        assert response.json()["error"] in {"missing_user_id", "not_room_host", "not_admin"}
        # A refused change changed nothing.
        assert await db.fetchval("SELECT version FROM meetings WHERE room_id = $1", code) == version
