"""Imports run one way: the tree's layers, checked from the source of every module.

    roomservice (the command line)  ->  api, worker  ->  common.service  ->  common.db, common.redis,
    common.signaling  ->  common.rooms  ->  common's own modules (settings, errors, metrics, logs, jobs)

`api` and `worker` never import each other; within `common`, Postgres and Redis never import each
other, and nothing imports upwards.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT

PACKAGES = ("api", "worker", "common", "roomservice")

# What each part may import of the project (besides itself). The most specific prefix applies.
ALLOWED: dict[str, set[str]] = {
    "roomservice": {"api", "worker", "common", "migrations"},
    "api": {"common"},
    "worker": {"common"},
    "common.service": {"common.db", "common.redis", "common.rooms", "common.base"},
    "common.db": {"common.rooms", "common.base"},
    "common.redis": {"common.rooms", "common.base"},
    "common.signaling": {"common.redis.keys", "common.redis.scripts"},
    "common.rooms": {"common.base"},
    "common.base": {"common.base"},
}
# common's own modules, below every sub-package of it.
BASE_MODULES = {"common.settings", "common.errors", "common.metrics", "common.logs", "common.jobs"}


def part_of(module: str) -> str:
    """The layer a module belongs to, as named in ALLOWED."""
    if module in BASE_MODULES or module == "common":
        return "common.base"
    return max((part for part in ALLOWED if module == part or module.startswith(part + ".")), key=len)


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a project package in the file, including imports inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in (*PACKAGES, "migrations")]
    return found


def may_import(importer: str, imported: str) -> bool:
    imported_part = "common.base" if imported in BASE_MODULES or imported == "common" else imported
    own = part_of(importer)
    if imported_part == own or imported_part.startswith(own + "."):
        return True
    return any(imported_part == allowed or imported_part.startswith(allowed + ".") for allowed in ALLOWED[own])


def violations(root: Path) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            for line, imported in project_imports(path):
                if not may_import(module, imported):
                    found.append(f"{path.relative_to(root)}:{line}: {module} imports {imported}")
    return found


def test_imports_run_one_way() -> None:
    assert violations(REPO_ROOT) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("common.rooms.model", "api.app"),
        ("common.service.rooms", "worker.main"),
        ("api.routes.rooms", "worker.jobs.outbox"),
        ("worker.main", "api.app"),
        ("worker.main", "roomservice.cli"),
        ("common.db.rooms", "common.redis.keys"),
        ("common.redis.room_cache", "common.db.pool"),
        ("common.redis.client", "common.service.publish"),
        ("common.rooms.events", "common.db.outbox"),
        ("common.settings", "common.rooms.model"),
    ],
)
def test_an_upward_or_sideways_import_is_caught(importer: str, imported: str) -> None:
    assert not may_import(importer, imported)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("roomservice.cli", "worker.main"),
        ("api.app", "common.service.rooms"),
        ("common.service.publish", "common.db.outbox"),
        ("common.db.rooms", "common.rooms.model"),
        ("common.redis.client", "common.settings"),
        ("common.db.rooms", "common.db.pool"),
    ],
)
def test_a_downward_import_is_allowed(importer: str, imported: str) -> None:
    assert may_import(importer, imported)


def test_a_violation_in_a_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "common" / "rooms").mkdir(parents=True)
    (tmp_path / "common" / "rooms" / "model.py").write_text("def f():\n    from api.app import create_app\n")
    for package in ("api", "worker", "roomservice"):
        (tmp_path / package).mkdir()
    assert violations(tmp_path) == ["common/rooms/model.py:2: common.rooms.model imports api.app"]
