"""The Ed25519 keys of join tickets: read from ROOMS_TICKET_KEYS, made by `roomservice keygen`,
published as a JWK Set, and the first of them signing.

A key's `kid` is its RFC 7638 JWK thumbprint: derived from the public key, so it needs no
configuration and is the same in every process and after every restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import jwt
import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.settings import ENV_PREFIX, SettingsError
from common.tickets.claims import ALGORITHM, TicketClaims

KEYS_VARIABLE = f"{ENV_PREFIX}TICKET_KEYS"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk_members(public: Ed25519PublicKey) -> dict[str, str]:
    """The JWK members RFC 8037 requires of an Ed25519 public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}


def thumbprint(public: Ed25519PublicKey) -> str:
    """RFC 7638: SHA-256 of the required members, in lexicographic order, without whitespace."""
    canonical = json.dumps(public_jwk_members(public), sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class TicketKey:
    kid: str
    private: Ed25519PrivateKey

    def public_jwk(self) -> dict[str, str]:
        return {**public_jwk_members(self.private.public_key()), "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


@dataclass(frozen=True)
class TicketKeys:
    """The configured keys, in order: the first signs; all are published, so a key is published
    before it signs (rotated in second) and after it stops (kept second), while its tickets live."""

    keys: tuple[TicketKey, ...]

    @property
    def configured(self) -> bool:
        return bool(self.keys)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys as a JWK Set; `{"keys": []}` without keys."""
        return {"keys": [key.public_jwk() for key in self.keys]}

    def sign(self, claims: TicketClaims) -> str:
        """The claims as a compact JWS signed by the first key. Only called when `configured`."""
        key = self.keys[0]
        payload = msgspec.to_builtins(claims)
        return jwt.encode(payload, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})


def load_ticket_keys(paths: str) -> TicketKeys:
    """The keys of ROOMS_TICKET_KEYS (comma-separated paths of PEM Ed25519 private keys; empty: none).
    Raises SettingsError naming the variable for a file that cannot be read or holds no Ed25519 key."""
    if not paths.strip():
        return TicketKeys(())
    keys: list[TicketKey] = []
    for item in paths.split(","):
        path = item.strip()
        if not path:
            raise SettingsError(f"{KEYS_VARIABLE}: an empty path in {paths!r}")
        key = _read_key(Path(path))
        if any(known.kid == key.kid for known in keys):
            raise SettingsError(f"{KEYS_VARIABLE}: {path} is the same key as one listed before it")
        keys.append(key)
    return TicketKeys(tuple(keys))


def _read_key(path: Path) -> TicketKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{KEYS_VARIABLE}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: an encrypted key, which a service starting unattended could not open.
        raise SettingsError(
            f"{KEYS_VARIABLE}: {path} is not an unencrypted PEM private key (make one with `roomservice keygen`)"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SettingsError(f"{KEYS_VARIABLE}: {path} is not an Ed25519 key (make one with `roomservice keygen`)")
    return TicketKey(kid=thumbprint(private.public_key()), private=private)


def write_new_key(path: Path) -> str:
    """Write a new Ed25519 private key (PKCS#8 PEM) to `path`, readable by its owner only, and return its
    kid. Raises FileExistsError rather than replace a file: it may be a key in use."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 in the one call that creates it: the key is never readable by others, even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return thumbprint(private.public_key())
