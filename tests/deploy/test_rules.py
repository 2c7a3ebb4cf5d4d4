"""deploy/prometheus and deploy/grafana: the rules pass `promtool check rules` and their unit tests
(`promtool test rules`), every alert is tested firing and silent and has its runbook, and the dashboard
is one Grafana imports, querying only what Prometheus can answer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy import kit, promql

UNIT_TESTS = sorted((kit.PROMETHEUS / "tests").glob("*.test.yaml"))


def promtool() -> str:
    """promtool's path. Missing, the tests that need it skip, saying so (pytest runs with -ra); CI sets
    ROOMS_TEST_REQUIRE_PROMTOOL=1 (.ci/run), which makes it a failure instead."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("ROOMS_TEST_REQUIRE_PROMTOOL") == "1":
        pytest.fail("promtool not installed, and ROOMS_TEST_REQUIRE_PROMTOOL=1 requires it: apt-get install prometheus")
    pytest.skip("promtool not installed: the alert-rule tests did not run; apt-get install prometheus")


def run_promtool(*args: str | Path) -> str:
    done = subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_the_rules() -> None:
    out = run_promtool("check", "rules", *(kit.PROMETHEUS / name for name in promql.RULE_FILES))
    assert f"SUCCESS: {len(promql.recorded_names())} rules found" in out
    assert f"SUCCESS: {len(promql.alerts())} rules found" in out


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert UNIT_TESTS
    run_promtool("test", "rules", *UNIT_TESTS)


def test_every_dashboard_query_is_promql(tmp_path) -> None:
    """Each query, its Grafana variables given values, parses: checked as a recording rule's expression."""
    values = {"$__rate_interval": "5m", "$api_job": ".*", "$worker_job": ".*"}
    exprs = []
    for query in promql.dashboard_exprs():
        expr = query
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a variable the dashboard does not define: {query}"
        exprs.append(expr)
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", path)


def unit_test_cases() -> list[dict]:
    return [case for path in UNIT_TESTS for doc in kit.documents(path) for case in doc["tests"]]


@pytest.mark.parametrize("alert", [a["alert"] for a in promql.alerts()])
def test_every_alert_is_tested_firing_and_silent(alert) -> None:
    """Each alert has a unit test in which it fires and one in which, on healthy series, it does not."""
    firing: list[str] = []
    silent: list[str] = []
    for case in unit_test_cases():
        for check in case.get("alert_rule_test", []):
            if check["alertname"] == alert:
                (firing if check.get("exp_alerts") else silent).append(case["name"])
    assert firing, f"{alert} is never tested firing"
    assert set(silent) - set(firing), f"{alert} is never tested silent on healthy series"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_has_its_runbook_in_operations_md() -> None:
    headings = re.findall(r"^#{1,6} (.+)$", kit.OPERATIONS_DOC.read_text(), re.MULTILINE)
    anchors = {github_anchor(heading) for heading in headings}
    for alert in promql.alerts():
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", alert["alert"]
        assert anchor in anchors, f"{alert['alert']}: no heading of docs/operations.md has the anchor #{anchor}"
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
    assert github_anchor("What to watch") == "what-to-watch"


def test_every_alert_is_listed_in_deploy_md() -> None:
    doc = kit.DEPLOY_DOC.read_text()
    for alert in promql.alerts():
        assert f"[{alert['alert']}](operations.md#{alert['annotations']['runbook_url'].partition('#')[2]})" in doc


def test_the_dashboard_is_importable() -> None:
    """What Grafana needs to import it: a uid and title, the Prometheus data source as a variable (no
    data source of the exporter's own), panels with unique ids on the 24-column grid, each with a query."""
    board = promql.dashboard()
    assert board["uid"] == "roomservice"
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in promql.dashboard_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"] and target["refId"] for target in panel["targets"]), panel["title"]
        assert panel["description"], panel["title"]
    titles = " ".join(panel["title"] for panel in promql.dashboard_panels()).lower()
    for topic in ("route", "5xx", "latency", "redis", "outbox", "lag", "dead letters", "job", "rooms created"):
        assert topic in titles, f"the dashboard has no panel about {topic}"


def test_the_metric_name_reader_finds_names_and_only_names() -> None:
    """The reader test_running.py holds every name to."""
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{route="/rooms/{room_id}"}[5m])))'
        ' / on (job) group_left (x) b:recorded:rate5m offset 1h > 0.5 and absent(c_total{job=~"$api_job"})'
        " or vector(1e3) unless d_gauge[$__rate_interval] - time()"
    )
    assert promql.metric_names(expr) == {"a_seconds_bucket", "b:recorded:rate5m", "c_total", "d_gauge"}


def doc_links() -> list[tuple[str, Path, str]]:
    """(where, document, anchor) of every link of docs/deploy.md into the docs, of docs/operations.md
    into deploy.md, and of the kit's comments into docs/deploy.md."""
    docs = kit.DEPLOY_DOC.parent
    links = [
        ("deploy.md", docs / target, anchor)
        for target, anchor in re.findall(r"\]\(([\w.]+\.md)#([\w-]+)\)", kit.DEPLOY_DOC.read_text())
    ]
    links += [
        ("operations.md", kit.DEPLOY_DOC, anchor)
        for anchor in re.findall(r"\]\(deploy\.md#([\w-]+)\)", kit.OPERATIONS_DOC.read_text())
    ]
    for path in [*kit.kubernetes_files(), *kit.PROMETHEUS.glob("*.yaml")]:
        links += [(path.name, kit.DEPLOY_DOC, a) for a in re.findall(r"docs/deploy\.md#([\w-]+)", path.read_text())]
    return links


def test_links_into_the_docs_name_headings_that_exist() -> None:
    links = doc_links()
    assert len(links) > 20
    broken = []
    for where, document, anchor in links:
        headings = re.findall(r"^#{1,6} (.+)$", document.read_text(), re.MULTILINE)
        if anchor not in {github_anchor(heading) for heading in headings}:
            broken.append(f"{where} -> {document.name}#{anchor}")
    assert not broken
