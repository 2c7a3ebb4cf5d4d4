"""The sessions' bookkeeping is one text in every script that changes who is in a room: each script file
is loaded on its own (Signaling loads join.lua, heartbeat.lua and leave.lua from its own code), so it is
repeated, and this keeps the copies the same."""

from __future__ import annotations

import re
from importlib.resources import files

from common.redis.keys import PRESENCE_GRACE_MS

SCRIPTS = [
    ("common.signaling", "join.lua"),
    ("common.signaling", "heartbeat.lua"),
    ("common.signaling", "leave.lua"),
    ("common.redis", "lua/put_room.lua"),
    ("common.redis", "lua/end_room.lua"),
    ("common.redis", "lua/presence.lua"),
]


def block(package: str, path: str) -> str:
    source = (files(package) / path).read_text(encoding="utf-8")
    found = re.search(r"^-- presence: begin.*?^-- presence: end$", source, re.MULTILINE | re.DOTALL)
    assert found, f"{path} has no presence block"
    return found.group(0)


def test_every_script_keeps_sessions_by_the_same_text() -> None:
    first, *others = [block(package, path) for package, path in SCRIPTS]
    for (_, path), text in zip(SCRIPTS[1:], others, strict=True):
        assert text == first, f"{path}'s presence block differs from join.lua's"


def test_the_grace_is_the_one_the_service_reads() -> None:
    assert f"local PRESENCE_GRACE_MS = {PRESENCE_GRACE_MS}\n" in block(*SCRIPTS[0])
