"""One measured run: the scenarios, wrk with their Lua scripts, and the checks that say whether a run
measured what it claims.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from locations import BENCH_DIR
from scratch_data import CodePlan
from servers import Server


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str
    expect_404: bool  # every response should be a 404 (otherwise every one a 2xx)
    caches_each_request: bool  # each request should add one `room:` key to Redis (otherwise none)
    # Ours remembers each 404 briefly (a `{room:<code>}:missing` key): one more key per request.
    ours_remembers_each_request: bool = False


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("post", "post.lua", expect_404=False, caches_each_request=True),
        Scenario("get-hit", "get_hit.lua", expect_404=False, caches_each_request=False),
        Scenario("get-miss", "get_miss.lua", expect_404=False, caches_each_request=True),
        Scenario(
            "get-404", "get_404.lua", expect_404=True, caches_each_request=False, ours_remembers_each_request=True
        ),
    )
}


@dataclass(frozen=True)
class RunResult:
    round: int
    scenario: str
    server: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    problems: tuple[str, ...]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def lua_args(scenario: Scenario, plan: CodePlan, round_index: int, threads: int) -> list[str]:
    if scenario.name == "get-hit":
        return [str(plan.path), str(plan.hit_count)]
    if scenario.name == "get-miss":
        first, count = plan.miss_slice(round_index)
        return [str(plan.path), str(first), str(count), str(threads)]
    return []


def run_wrk(
    args: argparse.Namespace, server: Server, scenario: Scenario, extra: list[str], seconds: int
) -> dict[str, int]:
    """One wrk run; returns the figures common.lua's done() prints."""
    command = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "5s",
        "-s", str(BENCH_DIR / scenario.script), server.base_url, "--", *extra,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    found = re.search(r"^BENCH_RESULT (.*)$", completed.stdout, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{completed.stdout}{completed.stderr}")
    return {key: int(value) for key, value in (pair.split("=") for pair in found.group(1).split())}


def measure(
    args: argparse.Namespace,
    server: Server,
    scenario: Scenario,
    plan: CodePlan,
    round_index: int,
    cache: redis.Redis | None,
) -> RunResult:
    """One run of `scenario` against `server`; `cache` is the server's Redis index (None: it has none)."""
    keys_before = key_count(cache) if cache is not None else 0
    figures = run_wrk(args, server, scenario, lua_args(scenario, plan, round_index, args.threads), args.duration)
    keys_added = key_count(cache) - keys_before if cache is not None else None
    return RunResult(
        round=round_index + 1,
        scenario=scenario.name,
        server=server.name,
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
        problems=tuple(problems(scenario, server, figures, keys_added, args.connections)),
    )


def key_count(cache: redis.Redis) -> int:
    count = cache.dbsize()
    assert isinstance(count, int)  # a synchronous client; redis-py types every answer as maybe awaitable
    return count


def problems(
    scenario: Scenario, server: Server, figures: dict[str, int], keys_added: int | None, connections: int
) -> Iterator[str]:
    """What makes a run not measure what it claims: errors, wrong statuses, or hits that should be misses.

    `keys_added` is None for a server without Redis (the ceiling): only the statuses and errors are checked.
    """
    requests = figures["requests"]
    if figures["socket_errors"]:
        yield f"{figures['socket_errors']} socket errors/timeouts"
    if scenario.expect_404 and figures["non2xx"] != requests:
        yield f"{requests - figures['non2xx']} answers were not 404"
    if not scenario.expect_404 and figures["non2xx"]:
        yield f"{figures['non2xx']} answers were 4xx/5xx"
    if keys_added is None:
        return
    # Requests still in flight when wrk stops may complete (and cache) after it has counted.
    remembers = scenario.ours_remembers_each_request and server.name == "ours"
    expected = requests if scenario.caches_each_request or remembers else 0
    if abs(keys_added - expected) > connections + requests // 100:
        yield f"Redis gained {keys_added} keys, expected about {expected}"
