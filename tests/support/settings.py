"""Settings for tests: the given servers, the rest as a deployment would have it unless a test says otherwise."""

from __future__ import annotations

from common.settings import Settings


def make_settings(database_url: str, redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": database_url, "redis_url": redis_url, **overrides}
    return Settings(**values)  # type: ignore[arg-type]
