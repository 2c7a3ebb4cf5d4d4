"""The event contract in docs/events.md is the one the code produces."""

from __future__ import annotations

import json

from common.rooms.events import json_schema
from tests.support.processes import REPO_ROOT


def test_the_documented_schema_is_the_generated_one() -> None:
    doc = (REPO_ROOT / "docs" / "events.md").read_text()
    block = doc.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == json_schema()
