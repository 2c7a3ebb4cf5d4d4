"""The outbox relay as the tests run it: at once, not after its grace period."""

from __future__ import annotations

from typing import Any

import msgspec

from worker.resources import WorkerResources


def relay_now(res: WorkerResources) -> dict[str, Any]:
    """The relay's context with no grace period, so rows written a moment ago count as waiting. (The
    grace must exceed the API's database timeout, since an API marks within it: this relay has no API.)"""
    settings = msgspec.structs.replace(res.settings, relay_grace_seconds=0.001, db_timeout_seconds=0.0005)
    return {"resources": msgspec.structs.replace(res, settings=settings)}
