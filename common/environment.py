"""Settings from the environment: `ROOMS_*` variables read into `Settings`, with messages that name the
variable, and the variables that name no setting (a misspelling would otherwise go unnoticed)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import msgspec

from common.settings import ENV_PREFIX, Settings, SettingsError


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build settings from `ROOMS_*` variables; raise `SettingsError` naming the first bad one."""
    fields = set(Settings.__struct_fields__)
    raw: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in fields:
            raw[name] = value
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_the_variable(str(exc))) from exc


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The `ROOMS_*` variables that name no setting, each with the known name closest to it (None if
    none is close): a misspelt variable would otherwise leave its setting at the default, silently.
    The test suite's own `ROOMS_TEST_*` are not settings and not reported."""
    known = [field.upper() for field in Settings.__struct_fields__]
    unknown = [
        key[len(ENV_PREFIX) :]
        for key in sorted(environ)
        if key.startswith(ENV_PREFIX) and not key.startswith(_TEST_PREFIX) and key[len(ENV_PREFIX) :] not in known
    ]
    # Compared without the prefix, which every name shares and which would make any two look alike.
    closest = {name: difflib.get_close_matches(name, known, n=1, cutoff=0.6) for name in unknown}
    return [(ENV_PREFIX + name, ENV_PREFIX + closest[name][0] if closest[name] else None) for name in unknown]


_TEST_PREFIX = ENV_PREFIX + "TEST_"


def _name_the_variable(message: str) -> str:
    """Turn msgspec's `... - at `$.room_ttl_seconds`` into a message about ROOMS_ROOM_TTL_SECONDS."""
    detail, _, path = message.rpartition(" - at `$.")
    if not detail:
        return message if message.startswith(ENV_PREFIX) else f"invalid configuration: {message}"
    return f"{ENV_PREFIX}{path.rstrip('`').upper()}: {detail}"
