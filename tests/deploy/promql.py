"""What the alert rules, the recording rules and the dashboard ask Prometheus for: their expressions,
the metric names in them, and the names a /metrics exposition offers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.deploy.kit import DASHBOARD, PROMETHEUS, documents

RULE_FILES = ("recording-rules.yaml", "alert-rules.yaml")

# Words of PromQL that are not metric names when no "(" follows them (every function and aggregation
# is followed by one, and is left out that way).
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_DASHBOARD_VARIABLE = re.compile(r"\$\{?\w+\}?")
_NUMBER_OR_DURATION = re.compile(r"(?<![\w:])[0-9][\w.]*")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names an expression selects: identifiers that are not inside a
    string, a label matcher, a range or a label list, that no "(" follows, and that are no keyword."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _DASHBOARD_VARIABLE.sub(" ", text)
    text = _NUMBER_OR_DURATION.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def rules() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, rule) of every rule of deploy/prometheus."""
    for name in RULE_FILES:
        (doc,) = documents(PROMETHEUS / name)
        for group in doc["groups"]:
            for rule in group["rules"]:
                yield name, rule


def alerts() -> list[dict[str, Any]]:
    return [rule for _, rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for _, rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    with DASHBOARD.open() as text:
        loaded: dict[str, Any] = json.load(text)
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


def every_expr() -> Iterator[tuple[str, str]]:
    """(where, expression) for every rule and every dashboard query."""
    for name, rule in rules():
        yield f"{name}: {rule.get('alert') or rule.get('record')}", rule["expr"]
    for expr in dashboard_exprs():
        yield DASHBOARD.name, expr


_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\w+)$")
_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def exposed_names(exposition: str) -> set[str]:
    """The names of the series an exposition offers: those of its samples, and those its `# TYPE` lines
    promise (a labelled metric has no sample before its first use), with the suffixes the text format
    gives each type: a histogram's `_bucket`, `_sum` and `_count`, nothing added to a counter's name."""
    names: set[str] = set()
    for line in exposition.splitlines():
        typed = _TYPE_LINE.match(line)
        if typed:
            family, kind = typed.groups()
            names.update(family + suffix for suffix in _SUFFIXES.get(kind, ("",)))
        elif line and not line.startswith("#"):
            sample = _SAMPLE_NAME.match(line)
            assert sample is not None, f"not a sample line: {line!r}"
            names.add(sample.group(1))
    return names


def sampled_names(exposition: str) -> set[str]:
    """The names that have a sample now (not only a `# TYPE` line)."""
    return {
        m.group(1) for line in exposition.splitlines() if not line.startswith("#") and (m := _SAMPLE_NAME.match(line))
    }
