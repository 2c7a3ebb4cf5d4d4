"""verify_ticket (common/signaling/tickets.py), what Signaling runs before join.lua: every way a ticket
is refused, and the leeway it is allowed. Tickets are signed by the keys code the API signs with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization

from common.signaling.tickets import TicketRejected, verify_ticket
from common.tickets.claims import TicketClaims
from common.tickets.keys import TicketKeys, load_ticket_keys, write_new_key

ROOM = "abc-defg-hij"
NOW = 1_800_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: object) -> TicketClaims:
    values: dict[str, object] = {
        "iss": "roomservice",
        "aud": "signaling",
        "sub": "6f1c1a3e-9a53-4c1e-8a53-1b2c3d4e5f60",
        "room": ROOM,
        "rid": "0e5ab02f-b75e-491f-93c7-4de587e7d934",
        "role": "guest",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 120,
        "jti": "k3Jq0b2xQm2f6mRz9x1bAg",
        **changes,
    }
    return msgspec.convert(values, TicketClaims)


@pytest.fixture
def keys(tmp_path: Path) -> TicketKeys:
    write_new_key(tmp_path / "key.pem")
    return load_ticket_keys(str(tmp_path / "key.pem"))


def reason(token: str, jwks: dict[str, object], room: str = ROOM, **options: object) -> str:
    with pytest.raises(TicketRejected) as refused:
        verify_ticket(token, jwks, room, now=options.pop("now", NOW + 1), **options)  # type: ignore[arg-type]
    return refused.value.reason


@pytest.mark.parametrize("role", ["host", "cohost", "guest"])
def test_a_ticket_verifies_and_gives_its_claims(keys, role) -> None:
    ticket = claims(role=role)
    assert verify_ticket(keys.sign(ticket), keys.jwks(), ROOM, now=NOW + 1) == ticket


def test_a_tampered_payload_is_refused(keys) -> None:
    header, payload, signature = keys.sign(claims()).split(".")
    changed = json.loads(base64.urlsafe_b64decode(payload + "=="))
    changed["room"] = "xyz-wxyz-xyz"
    forged = ".".join([header, b64(json.dumps(changed).encode()), signature])
    assert reason(forged, keys.jwks(), room="xyz-wxyz-xyz") == "bad_signature"


def test_an_unknown_kid_is_refused(keys, tmp_path) -> None:
    write_new_key(tmp_path / "other.pem")
    other = load_ticket_keys(str(tmp_path / "other.pem"))
    assert reason(other.sign(claims()), keys.jwks()) == "unknown_key"
    assert reason(keys.sign(claims()), {"keys": []}) == "unknown_key"  # a deployment without keys


def test_times_are_judged_with_at_most_five_seconds_of_leeway(keys) -> None:
    token = keys.sign(claims())
    exp, nbf = NOW + 120, NOW
    assert verify_ticket(token, keys.jwks(), ROOM, now=exp + 4.9).exp == exp  # within the leeway
    assert reason(token, keys.jwks(), now=exp + 5) == "expired"
    assert reason(token, keys.jwks(), now=exp + 1, leeway=0) == "expired"
    assert verify_ticket(token, keys.jwks(), ROOM, now=nbf - 5).nbf == nbf
    assert reason(token, keys.jwks(), now=nbf - 5.1) == "not_yet_valid"
    with pytest.raises(ValueError, match="leeway"):
        verify_ticket(token, keys.jwks(), ROOM, leeway=60, now=NOW)


def test_the_clock_is_the_verifiers_own_by_default(keys) -> None:
    now = int(time.time())
    assert verify_ticket(keys.sign(claims(iat=now, nbf=now, exp=now + 60)), keys.jwks(), ROOM).exp == now + 60
    with pytest.raises(TicketRejected, match="expired"):
        verify_ticket(keys.sign(claims(iat=now - 70, nbf=now - 70, exp=now - 10)), keys.jwks(), ROOM)


def test_a_ticket_for_another_room_is_refused(keys) -> None:
    assert reason(keys.sign(claims()), keys.jwks(), room="xyz-wxyz-xyz") == "wrong_room"


@pytest.mark.parametrize(
    ("claim", "value", "expected"), [("aud", "billing", "wrong_audience"), ("iss", "mallory", "wrong_issuer")]
)
def test_another_audience_or_issuer_is_refused(keys, claim, value, expected) -> None:
    assert reason(keys.sign(claims(**{claim: value})), keys.jwks()) == expected


def test_the_issuer_is_the_verifiers_to_name(keys) -> None:
    token = keys.sign(claims(iss="rooms-eu"))
    assert verify_ticket(token, keys.jwks(), ROOM, issuer="rooms-eu", now=NOW + 1).iss == "rooms-eu"
    assert reason(token, keys.jwks()) == "wrong_issuer"


def unsigned(header: dict[str, object], payload: dict[str, object], secret: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def test_alg_none_is_refused(keys) -> None:
    kid = keys.keys[0].kid
    payload = msgspec.to_builtins(claims())
    for alg in ("none", "None", "NONE"):
        assert reason(unsigned({"alg": alg, "typ": "JWT", "kid": kid}, payload, None), keys.jwks()) == (
            "algorithm_not_allowed"
        )


def test_hs256_with_the_public_key_as_secret_is_refused(keys) -> None:
    # The classic confusion: a verifier that lets the ticket choose the algorithm would check an HMAC
    # made with the public key, which everyone has, as the secret.
    kid = keys.keys[0].kid
    public = keys.keys[0].private.public_key()
    secrets = [
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        keys.jwks()["keys"][0]["x"].encode(),
    ]
    payload = msgspec.to_builtins(claims())
    for secret in secrets:
        for alg in ("HS256", "RS256", "ES256"):
            token = unsigned({"alg": alg, "typ": "JWT", "kid": kid}, payload, secret)
            assert reason(token, keys.jwks()) == "algorithm_not_allowed"


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b", "a.b.c", "...."])
def test_garbage_is_malformed(keys, token) -> None:
    assert reason(token, keys.jwks()) == "malformed"


def test_a_ticket_without_a_required_claim_is_refused(keys) -> None:
    key = keys.keys[0]
    payload = {k: v for k, v in msgspec.to_builtins(claims()).items() if k != "jti"}
    token = jwt.encode(payload, key.private, algorithm="EdDSA", headers={"kid": key.kid})
    assert reason(token, keys.jwks()) == "missing_claim"
    payload = {**msgspec.to_builtins(claims()), "role": "admin"}  # not a role tickets carry
    token = jwt.encode(payload, key.private, algorithm="EdDSA", headers={"kid": key.kid})
    assert reason(token, keys.jwks()) == "malformed"
