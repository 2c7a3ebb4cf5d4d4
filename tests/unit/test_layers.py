"""Imports run one way: the tree's layers, checked from the source of every module.

    roomservice (the command line)  ->  api, worker  ->  common

`api` and `worker` never import each other or the command line; they may use any layer of `common`.
Within `common`:

    service  ->  db, redis  ->  rooms  ->  the base (settings, errors, metrics, logs, jobs, tracing)
    service  ->  tickets (claims, keys)  ->  the base
    signaling  ->  the Redis key names and script loader, the ticket claims

Postgres and Redis never import each other, and nothing imports upwards. Relative imports, which
this test does not follow, are refused by ruff (TID252).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT

PACKAGES = ("api", "worker", "common", "roomservice")
BASE = "common.base"
# common's own modules: the base, below every sub-package of common.
BASE_MODULES = (
    "common.settings",
    "common.environment",
    "common.errors",
    "common.metrics",
    "common.metrics_port",
    "common.logs",
    "common.jobs",
    "common.tracing",
)

# What each layer may import besides itself.
ALLOWED: dict[str, set[str]] = {
    "roomservice": {"api", "worker", "common", "migrations"},
    "api": {"common"},
    "worker": {"common"},
    "common.service": {"common.db", "common.redis", "common.rooms", "common.tickets", BASE},
    "common.db": {"common.rooms", BASE},
    "common.redis": {"common.rooms", BASE},
    "common.signaling": {"common.redis.keys", "common.redis.scripts", "common.tickets.claims"},
    "common.tickets": {BASE},
    "common.rooms": {BASE},
    BASE: set(),
}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> str | None:
    """The layer of a module (or of a name inside one); None for a module in no layer."""
    if name == "common" or any(within(name, base) for base in BASE_MODULES):
        return BASE
    return max((layer for layer in ALLOWED if within(name, layer)), key=len, default=None)


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, name) for every project name a file imports, in functions too: `from a.b import c` gives
    `a.b.c`, so that `from common import service` counts as importing `common.service`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in (*PACKAGES, "migrations")]
    return found


def may_import(importer: str, imported: str) -> bool:
    own, other = layer_of(importer), layer_of(imported)
    if own is None:
        return False  # a new module must be given a layer first
    if other is not None and within(other, own):
        return True
    return any(within(imported, allowed) or other == allowed for allowed in ALLOWED[own])


def violations(root: Path) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            if layer_of(module) is None:
                found.append(f"{path.relative_to(root)}: {module} is in no layer (tests/unit/test_layers.py)")
            for line, imported in project_imports(path):
                if not may_import(module, imported):
                    found.append(f"{path.relative_to(root)}:{line}: {module} imports {imported}")
    return found


def test_imports_run_one_way() -> None:
    assert violations(REPO_ROOT) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("common.rooms.model", "api.app.create_app"),
        ("common.service.rooms", "worker.main"),
        ("api.routes.rooms", "worker.jobs.outbox"),
        ("worker.main", "api.app"),
        ("worker.main", "roomservice.cli.main"),
        ("common.db.rooms", "common.redis.keys.room_key"),
        ("common.redis.room_cache", "common.db.pool"),
        ("common.redis.client", "common.service.publish"),
        ("common.db.outbox", "common.service"),  # `from common import service`
        ("common.rooms.events", "common.db.outbox"),
        ("common.settings", "common.rooms.model.Room"),
        ("common.signaling.contract", "common.redis.client"),
        ("common.signaling.tickets", "common.tickets.keys"),  # Signaling verifies; it never signs
        ("common.tickets.keys", "common.redis.keys"),
        ("common.tickets.claims", "common.service.tickets"),
        ("common.newmodule", "common.settings"),  # in no layer yet
    ],
)
def test_an_upward_or_sideways_import_is_caught(importer: str, imported: str) -> None:
    assert not may_import(importer, imported)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("roomservice.cli", "worker.main.run_worker"),
        ("api.app", "common.service.rooms.RoomService"),
        ("common.service.publish", "common.db.outbox"),
        ("common.db.rooms", "common.rooms.model.Room"),
        ("common.redis.client", "common.settings.Settings"),
        ("common.db.rooms", "common.db.pool"),
        ("common.signaling.contract", "common.redis.keys.room_key"),
        ("common.signaling.tickets", "common.tickets.claims.TicketClaims"),
        ("common.service.tickets", "common.tickets.keys.TicketKeys"),
        ("common.tickets.keys", "common.settings.SettingsError"),
        ("api.deps", "common.errors"),
    ],
)
def test_a_downward_import_is_allowed(importer: str, imported: str) -> None:
    assert may_import(importer, imported)


def test_a_violation_in_a_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "common" / "rooms").mkdir(parents=True)
    (tmp_path / "common" / "rooms" / "model.py").write_text("def f():\n    from api import app\n")
    (tmp_path / "common" / "extra.py").write_text("")
    for package in ("api", "worker", "roomservice"):
        (tmp_path / package).mkdir()
    assert violations(tmp_path) == [
        "common/extra.py: common.extra is in no layer (tests/unit/test_layers.py)",
        "common/rooms/model.py:2: common.rooms.model imports api.app",
    ]
