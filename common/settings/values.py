"""How settings are named and checked: the variables' prefix, the error that names a variable, and the
readers of the values that are more than a number (clock intervals, addresses, Redis URLs)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import msgspec

ENV_PREFIX = "ROOMS_"

Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def clock_fields(seconds: int) -> dict[str, set[int] | int] | None:
    """An interval of `seconds` as cron fields on the wall clock (`second`, or `minute` and `second`), so that
    every worker runs a periodic job at the same moments; None if the interval does not divide a
    minute, or an hour in whole minutes."""
    if seconds < 60:
        return {"second": set(range(0, 60, seconds))} if 60 % seconds == 0 else None
    if seconds % 60 or 3600 % seconds:
        return None
    return {"minute": set(range(0, 60, seconds // 60)), "second": 0}


def require(value: str, variable: str, when: str = "") -> str:
    """Return a required setting, or stop with a message naming its variable (and when it is required)."""
    if not value:
        raise SettingsError(f"{ENV_PREFIX}{variable} is required" + (f" {when}" if when else ""))
    return value


def address(text: str, variable: str) -> tuple[str, int]:
    """`host:port` (a bracketed IPv6 host too) as (host, port), or stop naming `variable`."""
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{ENV_PREFIX}{variable}: {text.strip()!r} is not host:port")
    return host.strip("[]"), int(port)


def check_redis_url(text: str, variable: str) -> None:
    """Stop naming `variable` unless `text` is one redis://, rediss:// or unix:// URL."""
    parts = urlsplit(text)
    if parts.scheme not in {"redis", "rediss", "unix"} or "," in parts.netloc:
        raise SettingsError(f"{ENV_PREFIX}{variable} must be one redis://, rediss:// or unix:// URL")
