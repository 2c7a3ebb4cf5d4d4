"""Lua scripts shipped as files beside the code, read once per process."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from typing import NamedTuple


class LuaScript(NamedTuple):
    source: str
    sha: str  # what Redis calls the script: EVALSHA <sha>


def lua_script(package: str, path: str) -> LuaScript:
    """The script at `path` inside `package` (installed with it as package data)."""
    source = (files(package) / path).read_text(encoding="utf-8")
    sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - the name Redis gives a script
    return LuaScript(source=source, sha=sha)
