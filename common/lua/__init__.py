"""Lua scripts run inside Redis, read once per process from the files beside this module.

join.lua and leave.lua are the contract with Signaling (docs/signaling.md); put_room.lua guards the
Room Service's own writes of room objects.
"""

from __future__ import annotations

from importlib.resources import files


def _script(name: str) -> str:
    return (files(__package__) / name).read_text(encoding="utf-8")


JOIN_LUA = _script("join.lua")
LEAVE_LUA = _script("leave.lua")
PUT_ROOM_LUA = _script("put_room.lua")
