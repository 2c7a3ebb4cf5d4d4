"""Join tickets through the API (POST /rooms/{roomId}/tickets, GET /.well-known/jwks.json) on real
Postgres and Redis; each ticket is verified by joserfc, a JOSE implementation independent of the one
that signs, with the keys the API publishes, and by verify_ticket and join.lua as Signaling runs them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.redis.keys import room_key
from common.rooms.codes import generate_room_code
from common.settings import Settings, SettingsError
from common.signaling.contract import JoinContract
from common.signaling.tickets import verify_ticket
from common.tickets.keys import write_new_key

pytestmark = [
    pytest.mark.one_topology,  # join.lua with tickets runs on every topology in test_signaling.py
    # RFC 9864 deprecates the name EdDSA for Ed25519 (in favour of `Ed25519`), and joserfc warns of it;
    # tickets carry `EdDSA`, the name every JWT library verifies today.
    pytest.mark.filterwarnings("ignore:EdDSA is deprecated via RFC 9864"),
]


@pytest.fixture
def key_file(tmp_path: Path) -> Callable[[str], Path]:
    """A new key file in tmp_path, made by what `roomservice keygen` runs."""

    def make(name: str) -> Path:
        write_new_key(tmp_path / name)
        return tmp_path / name

    return make


@pytest.fixture
async def tickets(settings_with, key_file) -> AsyncIterator[AsyncTestClient]:
    settings = settings_with(ticket_keys=str(key_file("key.pem")))
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def create_room(client: AsyncTestClient, host: dict[str, str]) -> dict[str, object]:
    response = await client.post("/rooms", headers=host)
    assert response.status_code == 201, response.text
    return response.json()


async def ticket_for(client: AsyncTestClient, room_id: str, user: dict[str, str]) -> dict[str, str]:
    response = await client.post(f"/rooms/{room_id}/tickets", headers=user)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


async def key_set(client: AsyncTestClient) -> dict[str, list[dict[str, str]]]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "max-age=300"
    return response.json()


def jose_verified(ticket: str, jwks: dict[str, list[dict[str, str]]]) -> jose_jwt.Token:
    token = jose_jwt.decode(ticket, KeySet.import_key_set(jwks), algorithms=["EdDSA"])  # type: ignore[arg-type]
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": "roomservice"},
        aud={"essential": True, "value": "signaling"},
        exp={"essential": True},
        nbf={"essential": True},
    ).validate(token.claims)
    return token


async def test_a_ticket_says_who_may_join_which_room_until_when(tickets, host, db) -> None:
    room = await create_room(tickets, host)
    room_id = str(room["roomId"])
    guest = {"X-User-Id": str(uuid.uuid4())}
    before = int(time.time())

    issued = await ticket_for(tickets, room_id.upper().replace("-", ""), host)  # any spelling of the code
    as_guest = await ticket_for(tickets, room_id, guest)
    jwks = await key_set(tickets)

    assert set(issued) == {"ticket", "expiresAt", "role"}
    assert (issued["role"], as_guest["role"]) == ("host", "guest")
    [published] = jwks["keys"]
    assert set(published) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (published["kty"], published["crv"], published["alg"], published["use"]) == (
        "OKP",
        "Ed25519",
        "EdDSA",
        "sig",
    )
    # The kid is the RFC 7638 thumbprint, as joserfc computes it.
    assert published["kid"] == KeySet.import_key_set(jwks).keys[0].thumbprint()  # type: ignore[arg-type]

    token = jose_verified(issued["ticket"], jwks)
    assert token.header == {"alg": "EdDSA", "typ": "JWT", "kid": published["kid"]}
    claims = token.claims
    assert set(claims) == {"iss", "aud", "sub", "room", "rid", "role", "iat", "nbf", "exp", "jti"}
    assert (claims["iss"], claims["aud"], claims["sub"], claims["room"]) == (
        "roomservice",
        "signaling",
        host["X-User-Id"],
        room_id,
    )
    assert claims["rid"] == str(await db.fetchval("SELECT id FROM meetings WHERE room_id = $1", room_id))
    assert claims["role"] == "host"
    assert before <= claims["iat"] == claims["nbf"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 120  # ROOMS_TICKET_TTL_SECONDS, the room lasting longer
    assert datetime.fromisoformat(issued["expiresAt"]).timestamp() == claims["exp"]
    guest_claims = jose_verified(as_guest["ticket"], jwks).claims
    assert (guest_claims["sub"], guest_claims["role"]) == (guest["X-User-Id"], "guest")
    assert len(str(claims["jti"])) >= 22  # 128 random bits
    assert guest_claims["jti"] != claims["jti"]


async def test_a_ticket_never_outlives_its_room(settings_with, key_file, host) -> None:
    # The shortest room (60 s) ends before a ticket's default 120 s: the ticket ends with the room.
    settings = settings_with(ticket_keys=str(key_file("key.pem")), room_ttl_seconds=60)
    async with AsyncTestClient(app=create_app(settings)) as client:
        room = await create_room(client, host)
        issued = await ticket_for(client, str(room["roomId"]), host)
        claims = jose_verified(issued["ticket"], await key_set(client)).claims

    room_end = datetime.fromisoformat(str(room["expiresAt"])).timestamp()
    assert claims["exp"] == int(room_end)
    assert claims["exp"] - claims["iat"] <= 60


async def test_signaling_verifies_the_ticket_and_admits_once(tickets, host, redis_client) -> None:
    room_id = str((await create_room(tickets, host))["roomId"])
    guest = {"X-User-Id": str(uuid.uuid4())}
    issued = await ticket_for(tickets, room_id, guest)
    contract = JoinContract(redis_client)

    claims = verify_ticket(issued["ticket"], await key_set(tickets), room_id)
    first = await contract.join(room_id, claims.sub, 30_000, ticket=claims)
    replayed = await contract.join(room_id, claims.sub, 30_000, ticket=claims)

    assert (claims.sub, claims.role, claims.room) == (guest["X-User-Id"], "guest", room_id)
    assert (first.outcome, first.count) == ("admitted", 1)
    assert replayed.outcome == "ticket_used"
    again = verify_ticket((await ticket_for(tickets, room_id, guest))["ticket"], await key_set(tickets), room_id)
    assert (await contract.join(room_id, again.sub, 30_000, ticket=again)).outcome == "already_in"


async def test_rotation_keeps_earlier_tickets_valid(settings_with, key_file, host) -> None:
    old, new = key_file("old.pem"), key_file("new.pem")
    async with AsyncTestClient(app=create_app(settings_with(ticket_keys=str(old)))) as before:
        room_id = str((await create_room(before, host))["roomId"])
        earlier = (await ticket_for(before, room_id, host))["ticket"]
        [old_key] = (await key_set(before))["keys"]

    # The new key signs; the old one is still published while its tickets live.
    async with AsyncTestClient(app=create_app(settings_with(ticket_keys=f"{new}, {old}"))) as after:
        jwks = await key_set(after)
        later = (await ticket_for(after, room_id, host))["ticket"]

    kids = [key["kid"] for key in jwks["keys"]]
    assert len(kids) == 2
    assert kids[1] == old_key["kid"]
    assert jose_verified(earlier, jwks).header["kid"] == old_key["kid"]
    assert verify_ticket(earlier, jwks, room_id).sub == host["X-User-Id"]
    assert jose_verified(later, jwks).header["kid"] == kids[0] != old_key["kid"]
    assert verify_ticket(later, jwks, room_id).sub == host["X-User-Id"]


async def test_an_unknown_or_ended_room_gets_no_ticket(tickets, host, redis_client) -> None:
    unknown = await tickets.post(f"/rooms/{generate_room_code()}/tickets", headers=host)  # a code no test made
    assert (unknown.status_code, unknown.json()["error"]) == (404, "room_not_found")

    room_id = str((await create_room(tickets, host))["roomId"])
    assert (await tickets.delete(f"/rooms/{room_id}", headers=host)).status_code == 204
    ended = await tickets.post(f"/rooms/{room_id}/tickets", headers=host)
    assert (ended.status_code, ended.json()["error"]) == (410, "room_gone")

    bad = await tickets.post("/rooms/not-a-code/tickets", headers=host)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_room_id")


async def test_a_room_redis_lacks_is_read_from_postgres_and_cached_again(tickets, host, db, redis_client) -> None:
    room_id = str((await create_room(tickets, host))["roomId"])
    await redis_client.delete(room_key(room_id))

    issued = await ticket_for(tickets, room_id, host)

    assert issued["role"] == "host"
    assert await redis_client.exists(room_key(room_id))  # ready for the join the ticket is for
    expire = (
        "UPDATE meetings SET created_at = now() - interval '2 days', starts_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 day'"
    )
    await db.execute(f"{expire} WHERE room_id = $1", room_id)
    await redis_client.delete(room_key(room_id))
    expired = await tickets.post(f"/rooms/{room_id}/tickets", headers=host)
    assert (expired.status_code, expired.json()["error"]) == (410, "room_gone")


async def test_a_ticket_needs_a_user(tickets, host) -> None:
    room_id = str((await create_room(tickets, host))["roomId"])
    missing = await tickets.post(f"/rooms/{room_id}/tickets")
    invalid = await tickets.post(f"/rooms/{room_id}/tickets", headers={"X-User-Id": "someone"})
    assert (missing.status_code, missing.json()["error"]) == (401, "missing_user_id")
    assert (invalid.status_code, invalid.json()["error"]) == (401, "invalid_user_id")


async def test_a_user_asking_too_often_is_limited(settings_with, key_file, host) -> None:
    if time.time() % 60 > 50:  # the limit counts per clock minute: stay inside one
        await asyncio.sleep(61 - time.time() % 60)
    settings = settings_with(ticket_keys=str(key_file("key.pem")), ticket_limit_per_minute=3)
    async with AsyncTestClient(app=create_app(settings)) as client:
        room_id = str((await create_room(client, host))["roomId"])
        for _ in range(3):
            await ticket_for(client, room_id, host)
        over = await client.post(f"/rooms/{room_id}/tickets", headers=host)
        other = await client.post(f"/rooms/{room_id}/tickets", headers={"X-User-Id": str(uuid.uuid4())})

    assert (over.status_code, over.json()["error"]) == (429, "rate_limited")
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert other.status_code == 201  # per user


async def test_without_keys_tickets_are_not_configured_and_the_rest_serves(client, host) -> None:
    room_id = str((await create_room(client, host))["roomId"])

    refused = await client.post(f"/rooms/{room_id}/tickets", headers=host)
    jwks = await key_set(client)
    ready = await client.get("/health/ready")

    assert (refused.status_code, refused.json()["error"]) == (503, "tickets_not_configured")
    assert int(refused.headers["retry-after"]) >= 1
    assert jwks == {"keys": []}
    assert (ready.status_code, ready.json()["tickets"]) == (200, "not_configured")


async def test_readiness_says_tickets_are_configured(tickets) -> None:
    assert (await tickets.get("/health/ready")).json()["tickets"] == "configured"


def test_a_bad_key_stops_the_app_naming_the_variable(settings_with, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    not_ed25519 = tmp_path / "ec.pem"
    not_ed25519.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    for paths, says in [
        (str(tmp_path / "absent.pem"), "cannot read"),
        (str(not_ed25519), "not an Ed25519 key"),
        (str(garbage), "not an unencrypted PEM private key"),
    ]:
        settings: Settings = settings_with(ticket_keys=paths)
        with pytest.raises(SettingsError, match=f"ROOMS_TICKET_KEYS: .*{says}"):
            create_app(settings)
