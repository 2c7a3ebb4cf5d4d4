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

# The targets, stated for one run on this machine (2 cores), wrk -t1 -c32, one server process each.
# Ours over the peer, in req/s:
TARGET_RATIOS = {"post": 4.0, "get-hit": 3.0, "get-miss": 3.0, "get-404": 3.0}
# Ours over the framework ceiling (the same framework and server, no I/O), in req/s:
TARGET_CEILING_FRACTIONS = {"get-hit": 0.5}
# Ours, the worst round's p99 (cached GET only):
TARGET_P99_MS = {"get-hit": 10.0}
# What the request metrics cost: 1 - ours / ours-off (ours with them off), in req/s:
TARGET_METRICS_COST = {"get-hit": 0.05}

ROW = "{:>5}  {:<9} {:<8} {:>9} {:>8} {:>8} {:>8}  {}"


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
    print("{:<9} {:<8} {:>9} {:>8} {:>8}".format("scenario", "srv", "req/s", "p50 ms", "p99 ms"))
    mean_rps: dict[tuple[str, str], float] = {}
    worst_p99: dict[tuple[str, str], float] = {}
    for (scenario, server), runs in group(results).items():
        mean_rps[scenario, server] = statistics.mean(r.rps for r in runs)
        p50 = statistics.mean(r.p50_ms for r in runs)
        worst_p99[scenario, server] = p99 = max(r.p99_ms for r in runs)
        print(f"{scenario:<9} {server:<8} {mean_rps[scenario, server]:>9.0f} {p50:>8.2f} {p99:>8.2f}")

    print()
    for scenario, target in TARGET_RATIOS.items():
        if (scenario, "ours") in mean_rps and (scenario, "peer") in mean_rps:
            ratio = mean_rps[scenario, "ours"] / mean_rps[scenario, "peer"]
            print(f"{scenario}: ours/peer = {ratio:.2f}x  (target >= {target:g}x: {verdict(ratio >= target)})")
    for scenario, target in TARGET_CEILING_FRACTIONS.items():
        if (scenario, "ours") in mean_rps and (scenario, "ceiling") in mean_rps:
            fraction = mean_rps[scenario, "ours"] / mean_rps[scenario, "ceiling"]
            print(f"{scenario}: ours/ceiling = {fraction:.2f}  (target >= {target:g}: {verdict(fraction >= target)})")
    for scenario, most in TARGET_METRICS_COST.items():
        if (scenario, "ours") in mean_rps and (scenario, "ours-off") in mean_rps:
            cost = 1 - mean_rps[scenario, "ours"] / mean_rps[scenario, "ours-off"]
            goal = f"target <= {most:.0%}: {verdict(cost <= most)}"
            print(f"{scenario}: request metrics cost {cost:.1%} of ours-off  ({goal})")
    for scenario, limit in TARGET_P99_MS.items():
        if (scenario, "ours") in worst_p99:
            p99 = worst_p99[scenario, "ours"]
            goal = f"target < {limit:g} ms: {verdict(p99 < limit)}"
            print(f"{scenario}: ours p99 = {p99:.2f} ms at {connections} connections  ({goal})")
    if any(r.problems for r in results):
        print("\nsome runs failed their checks (see the table): their figures do not measure what they claim")


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def group(results: Sequence[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.server), []).append(r)
    return groups


def save(args: argparse.Namespace, results: Sequence[RunResult]) -> Path:
    path = RESULTS_DIR / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    left_out = {"scenarios", "peer", "ceiling", "postgres_url", "redis_url"}
    settings = {key: value for key, value in vars(args).items() if key not in left_out}
    settings["scenarios"] = [s.name for s in args.scenarios]
    runs = [asdict(r) | {"rps": round(r.rps, 1)} for r in results]
    path.write_text(json.dumps({"cpus": os.cpu_count(), "settings": settings, "runs": runs}, indent=2) + "\n")
    return path
