"""What bench/run.py prints and keeps: a row per run, a summary against the targets, the figures as JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from locations import RESULTS_DIR
from measure import RunResult

TARGET_RATIOS = {"get-hit": 3.0, "post": 4.0}
TARGET_P99_MS = 10.0

ROW = "{:>5}  {:<9} {:<5} {:>9} {:>8} {:>8} {:>8}  {}"


def print_row_header() -> None:
    print(ROW.format("round", "scenario", "srv", "req/s", "p50 ms", "p99 ms", "max ms", "checks"))


def print_row(r: RunResult) -> None:
    checks = "; ".join(r.problems) or "ok"
    print(
        ROW.format(
            r.round,
            r.scenario,
            r.server,
            f"{r.rps:.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.max_ms:.1f}",
            checks,
        ),
        flush=True,
    )


def print_summary(results: Sequence[RunResult], connections: int) -> None:
    print("\nsummary: mean req/s and mean p50 over the rounds; p99 is the worst round")
    print("{:<9} {:<5} {:>9} {:>8} {:>8}".format("scenario", "srv", "req/s", "p50 ms", "p99 ms"))
    mean_rps: dict[tuple[str, str], float] = {}
    for (scenario, server), runs in group(results).items():
        mean_rps[scenario, server] = statistics.mean(r.rps for r in runs)
        p50 = statistics.mean(r.p50_ms for r in runs)
        p99 = max(r.p99_ms for r in runs)
        print(f"{scenario:<9} {server:<5} {mean_rps[scenario, server]:>9.0f} {p50:>8.2f} {p99:>8.2f}")

    print()
    for scenario, target in TARGET_RATIOS.items():
        if (scenario, "ours") in mean_rps and (scenario, "peer") in mean_rps:
            ratio = mean_rps[scenario, "ours"] / mean_rps[scenario, "peer"]
            verdict = "met" if ratio >= target else "MISSED"
            print(f"{scenario}: ours/peer = {ratio:.2f}x  (target >= {target:g}x: {verdict})")
    for (scenario, server), runs in group(results).items():
        if server == "ours":
            p99 = max(r.p99_ms for r in runs)
            verdict = "met" if p99 < TARGET_P99_MS else "MISSED"
            goal = f"target < {TARGET_P99_MS:g} ms: {verdict}"
            print(f"{scenario}: ours p99 = {p99:.2f} ms at {connections} connections  ({goal})")
    if any(r.problems for r in results):
        print("\nsome runs failed their checks (see the table): their figures do not measure what they claim")


def group(results: Sequence[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.server), []).append(r)
    return groups


def save(args: argparse.Namespace, results: Sequence[RunResult]) -> Path:
    path = RESULTS_DIR / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    settings = {
        key: value for key, value in vars(args).items() if key not in {"scenarios", "peer", "postgres_url", "redis_url"}
    }
    settings["scenarios"] = [s.name for s in args.scenarios]
    runs = [asdict(r) | {"rps": round(r.rps, 1)} for r in results]
    path.write_text(json.dumps({"cpus": os.cpu_count(), "settings": settings, "runs": runs}, indent=2) + "\n")
    return path
