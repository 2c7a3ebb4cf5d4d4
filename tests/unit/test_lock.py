"""The lock files (requirements/*.lock, made by `make lock`) still agree with pyproject.toml: a range
changed without locking again would leave installs on versions the project no longer asks for."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.support.processes import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    text = (REPO_ROOT / "requirements" / lock).read_text()
    return {_normal(name): version for name, version in PIN.findall(text)}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(*extras: str) -> list[Requirement]:
    listed = PYPROJECT["dependencies"] + [r for extra in extras for r in PYPROJECT["optional-dependencies"][extra]]
    return [Requirement(r) for r in listed if Requirement(r).name != PYPROJECT["name"]]  # not its own extras


@pytest.mark.parametrize(("lock", "extras"), [("main.lock", ()), ("dev.lock", ("dev", "embedded"))])
def test_every_requirement_is_locked_within_its_range(lock: str, extras: tuple[str, ...]) -> None:
    locked = pins(lock)
    for requirement in requirements(*extras):
        version = locked.get(_normal(requirement.name))
        assert version is not None, f"{requirement.name} is not in requirements/{lock}: run `make lock`"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{lock} has {requirement.name}=={version}, outside {requirement}: run `make lock`"
        )
        if "hiredis" in requirement.extras:
            assert "hiredis" in locked, f"requirements/{lock} lacks hiredis: run `make lock`"


def test_the_runtime_lock_agrees_with_the_development_lock() -> None:
    main, dev = pins("main.lock"), pins("dev.lock")
    assert {name: dev.get(name) for name in main} == main  # tests run the versions production runs
