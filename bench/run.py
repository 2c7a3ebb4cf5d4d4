"""Load benchmark: the Room Service against the FastAPI peer, on this machine, alternating the two.

Run from the repository root with the project's virtualenv (it imports asyncpg, redis and httpx):

    .venv/bin/python bench/run.py                 # 2 rounds x 4 scenarios x 2 servers, 10 s each

It creates its own Postgres databases and takes two Redis indexes (see --help), starts both servers on
127.0.0.1 with the same number of processes, drives them with wrk and the Lua scripts beside this file,
prints a row per run and a summary against the targets, and on the way out (Ctrl-C and errors included)
stops the servers, drops its databases and flushes its indexes. docs/performance.md records a run.

A third server, the framework ceiling (--ceiling: a Litestar route that does no I/O, under our own
granian settings), runs in get-hit only, after ours and the peer: it says what the framework and server
can do on this machine at all, and the summary states our cached GET as a fraction of it. A fourth,
`ours-off`, is ours with its request metrics switched off (ROOMS_HTTP_METRICS=false), also in get-hit
only: the summary states what the metrics cost.

The work is split between the modules beside this one: servers.py (starting, probing, stopping),
scratch_data.py (databases, Redis indexes, room codes), measure.py (wrk and the checks of a run) and
report.py (the table, the summary, the JSON). This one reads the command line and runs the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import redis
from locations import LOCALHOST, REPO_ROOT, RESULTS_DIR, with_path
from measure import SCENARIOS, RunResult, lua_args, measure, run_wrk
from report import print_row, print_row_header, print_summary, save
from scratch_data import (
    OURS_DATABASE,
    PEER_DATABASE,
    CodePlan,
    load_rooms,
    scratch_databases,
    scratch_redis,
    warm_cache,
    write_room_codes,
)
from servers import (
    Server,
    ceiling_command,
    ensure_port_free,
    migrate_ours,
    ours_command,
    peer_command,
    peer_virtualenv,
    serving,
)

# The ceiling has no database and its route answers 200 for any code: only the cached GET compares with it.
CEILING_SCENARIOS = frozenset({"get-hit"})
# Ours with its request metrics off (ROOMS_HTTP_METRICS=false) runs beside ours in the cached GET, the
# route where their cost weighs most: the summary states what they cost.
METRICS_OFF_SCENARIOS = frozenset({"get-hit"})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each scenario runs on each server")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the targets are stated at -t1)")
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for all")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="seconds of unmeasured load per server before round 1 (POST; cached GETs for the ceiling)",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument("--rows", type=int, default=300_000, help="rooms inserted into each database")
    parser.add_argument("--hit-rooms", type=int, default=2_000, help="of those, how many are cached")
    parser.add_argument(
        "--peer",
        type=Path,
        default=Path(os.environ.get("BENCH_PEER", REPO_ROOT.parent / "shared" / "bench" / "fastapi_peer.py")),
        help="the peer's module (env BENCH_PEER)",
    )
    parser.add_argument(
        "--ceiling",
        type=Path,
        default=Path(os.environ.get("BENCH_CEILING", REPO_ROOT.parent / "shared" / "bench" / "ceiling_app.py")),
        help="the framework ceiling's module, measured in get-hit only (env BENCH_CEILING)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="an administrative connection through which the bench creates its databases (env BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
        help="the Redis server, without an index (env BENCH_REDIS_URL)",
    )
    parser.add_argument("--ours-port", type=int, default=18800)
    parser.add_argument("--peer-port", type=int, default=18801)
    parser.add_argument("--ceiling-port", type=int, default=18803)
    parser.add_argument("--ours-off-port", type=int, default=18804, help="ours with its request metrics off")
    parser.add_argument("--ours-redis-db", type=int, default=13)
    parser.add_argument("--peer-redis-db", type=int, default=14)
    args = parser.parse_args(argv)

    names = args.scenarios.split(",")
    if unknown := set(names) - SCENARIOS.keys():
        parser.error(f"unknown scenarios {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = [SCENARIOS[name] for name in names]
    for url in (args.postgres_url, args.redis_url):
        if urlsplit(url).hostname != LOCALHOST:
            parser.error(f"{url}: the bench only runs against {LOCALHOST}")
    if args.ours_redis_db == args.peer_redis_db:
        parser.error("the two servers need different Redis indexes: the checks count each one's keys")
    if not 0 < args.hit_rooms < args.rows:
        parser.error("--hit-rooms must be positive and below --rows: the rest are the miss rooms")
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    if not args.peer.is_file():
        parser.error(f"{args.peer}: no such file (give --peer or BENCH_PEER)")
    if measures_ceiling(args) and not args.ceiling.is_file():
        parser.error(f"{args.ceiling}: no such file (give --ceiling or BENCH_CEILING)")
    return args


def measures_ceiling(args: argparse.Namespace) -> bool:
    return any(scenario.name in CEILING_SCENARIOS for scenario in args.scenarios)


@contextmanager
def exclusive_run() -> Iterator[None]:
    """One bench at a time: a second run would replace the first one's databases under its servers."""
    with (RESULTS_DIR / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError("another bench/run.py is running") from None
        yield


def run_rounds(
    args: argparse.Namespace, servers: Sequence[Server], plan: CodePlan, caches: dict[int, redis.Redis]
) -> list[RunResult]:
    """Each scenario on each server in turn (ours, peer[, ceiling]), round after round, so that a
    change in the machine's load falls on all of them rather than on one."""
    results = []
    print_row_header()
    for round_index in range(args.rounds):
        for scenario in args.scenarios:
            for server in servers:
                if not server.measured_in(scenario.name):
                    continue
                cache = caches[server.redis_db] if server.redis_db is not None else None
                result = measure(args, server, scenario, plan, round_index, cache)
                print_row(result)
                results.append(result)
    return results


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so everything started is stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    RESULTS_DIR.mkdir(exist_ok=True)
    ours = Server("ours", args.ours_port, OURS_DATABASE, args.ours_redis_db)
    peer = Server("peer", args.peer_port, PEER_DATABASE, args.peer_redis_db)
    ceiling = Server("ceiling", args.ceiling_port, ready_status=200, only_in=CEILING_SCENARIOS)
    # Ours again, on the same database and Redis index, with its request metrics off.
    ours_off = Server("ours-off", args.ours_off_port, OURS_DATABASE, args.ours_redis_db, only_in=METRICS_OFF_SCENARIOS)
    servers = [ours, peer, ceiling, ours_off] if measures_ceiling(args) else [ours, peer]
    peer_virtualenv()  # before anything is started: the first time it takes a while

    with ExitStack() as stack:
        stack.enter_context(exclusive_run())
        for server in servers:
            ensure_port_free(server.port)
        scratch_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roomservice-bench-")))
        stack.enter_context(scratch_databases(args.postgres_url, [ours.database, peer.database]))
        caches = stack.enter_context(scratch_redis(args.redis_url, [args.ours_redis_db, args.peer_redis_db]))
        migrate_ours(args, ours)
        stack.enter_context(serving(ours, *ours_command(args, ours)))
        stack.enter_context(serving(peer, *peer_command(args, peer)))  # the peer creates its table on start
        if ceiling in servers:
            stack.enter_context(serving(ceiling, *ceiling_command(args, ceiling)))
            stack.enter_context(serving(ours_off, *ours_command(args, ours_off, http_metrics="false")))

        print(f"loading {args.rows} rooms into each database ...", flush=True)
        plan = CodePlan(scratch_dir / "codes.txt", args.hit_rooms, args.rows, args.rounds)
        codes = write_room_codes(plan.path, args.rows)
        asyncio.run(
            load_rooms(with_path(args.postgres_url, ours.database), with_path(args.postgres_url, peer.database), codes)
        )
        for server in (ours, peer):
            asyncio.run(warm_cache(server.base_url, codes[: args.hit_rooms]))
            run_wrk(args, server, SCENARIOS["post"], [], args.warmup)  # opens the pools; not measured
        if ceiling in servers:  # measured in get-hit only: the same unmeasured load, as cached GETs
            get_hit = SCENARIOS["get-hit"]
            for server in (ceiling, ours_off):
                run_wrk(args, server, get_hit, lua_args(get_hit, plan, 0, args.threads), args.warmup)

        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.workers} server process(es) each, "
            f"{os.cpu_count()} CPUs, {args.rounds} rounds\n",
            flush=True,
        )
        results = run_rounds(args, servers, plan, caches)

    print_summary(results, args.connections)
    print(f"\nsaved {save(args, results).relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
