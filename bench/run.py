"""Load benchmark: the Room Service against the FastAPI peer, on this machine, alternating the two.

Run from the repository root with the project's virtualenv (it imports asyncpg, redis and httpx):

    .venv/bin/python bench/run.py                 # 2 rounds x 4 scenarios x 2 servers, 10 s each

It creates its own Postgres databases and takes two Redis indexes (see --help), starts both servers on
127.0.0.1 with the same number of processes, drives them with wrk and the Lua scripts beside this file,
prints a row per run and a summary against the targets, and on the way out (Ctrl-C and errors included)
stops the servers, drops its databases and flushes its indexes. docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PEER_VENV = BENCH_DIR / ".venv-peer"
PEER_REQUIREMENTS = BENCH_DIR / "peer-requirements.txt"

LOCALHOST = "127.0.0.1"
OURS_DATABASE = "roomservice_bench"
PEER_DATABASE = "peer_bench"
# Put on every database and Redis index the bench makes: it only ever drops or flushes what carries it.
OWNER_MARK = "scratch data of bench/run.py"
OWNER_KEY = "bench:owner"

# Answered 404 by both servers once their route and database work: the readiness probe.
PROBE_PATH = "/rooms/aaa-aaaa-aaa"
CODE_SPACE = 26**10

TARGET_RATIOS = {"get-hit": 3.0, "post": 4.0}
TARGET_P99_MS = 10.0


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
class Server:
    """One server under test, and where its data lives."""

    name: str
    port: int
    database: str
    redis_db: int

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"


@dataclass(frozen=True)
class CodePlan:
    """The room codes loaded into both databases, one per line of `path`.

    The first `hit_count` lines are the rooms cached before measuring. The rest are split into one
    slice per round for the miss scenario, so every miss run requests rooms nobody requested before.
    (Each server has its own database, so both use the same slice.)
    """

    path: Path
    hit_count: int
    total: int
    rounds: int

    def miss_slice(self, round_index: int) -> tuple[int, int]:
        size = (self.total - self.hit_count) // self.rounds
        return self.hit_count + round_index * size, size


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each scenario runs on each server")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for both")
    parser.add_argument(
        "--warmup", type=int, default=3, help="seconds of unmeasured POST load per server before round 1"
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
    return args


def with_path(url: str, path: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{path}", scheme=scheme or parts.scheme).geturl()


# --- scratch data ----------------------------------------------------------------------------------


@contextmanager
def scratch_databases(admin_url: str, names: Sequence[str]) -> Iterator[None]:
    """Create the named databases for this run and drop them afterwards.

    A database left by an earlier, interrupted run (it carries OWNER_MARK) is replaced; any other
    database of that name stops the bench.
    """
    created: list[str] = []
    try:
        for name in names:
            asyncio.run(_recreate_database(admin_url, name))
            created.append(name)
        yield
    finally:
        for name in created:
            asyncio.run(_drop_database(admin_url, name))


async def _recreate_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        mark = await conn.fetchval(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1",
            name,
        )  # None: no such database
        if mark is not None and mark != OWNER_MARK:
            raise RuntimeError(f"database {name} exists and was not made by the bench; not touching it")
        if mark is not None:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{OWNER_MARK}'")
    finally:
        await conn.close()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def scratch_redis(base_url: str, indexes: Sequence[int]) -> Iterator[dict[int, redis.Redis]]:
    """Clients on the given Redis indexes, emptied now and afterwards.

    An index must be empty or marked as the bench's (OWNER_KEY) from an earlier run; otherwise the
    bench stops rather than flush someone else's keys.
    """
    clients: dict[int, redis.Redis] = {}
    try:
        for index in indexes:
            client = redis.Redis.from_url(with_path(base_url, str(index)), socket_timeout=5)
            clients[index] = client
            if client.dbsize() and client.get(OWNER_KEY) != OWNER_MARK.encode():
                raise RuntimeError(f"Redis index {index} holds keys the bench did not write; not touching it")
            client.flushdb()
            client.set(OWNER_KEY, OWNER_MARK)
        yield clients
    finally:
        for client in clients.values():
            if client.get(OWNER_KEY) == OWNER_MARK.encode():
                client.flushdb()
            client.close()


def write_room_codes(path: Path, count: int) -> list[str]:
    """`count` distinct random codes, written one per line for the Lua scripts."""
    numbers = random.Random(20240501).sample(range(CODE_SPACE), count)
    codes = [_code(n) for n in numbers]
    path.write_text("\n".join(codes) + "\n")
    return codes


def _code(number: int) -> str:
    letters = []
    for _ in range(10):
        number, digit = divmod(number, 26)
        letters.append(chr(ord("a") + digit))
    text = "".join(letters)
    return f"{text[:3]}-{text[3:7]}-{text[7:]}"


async def load_rooms(ours_url: str, peer_url: str, codes: Sequence[str]) -> None:
    """Insert the rooms straight into both databases with COPY: far faster than going through the APIs."""
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    ours = [(code, uuid.uuid4(), 4, expires_at) for code in codes]
    # The peer's table has no server-side defaults for these columns (SQLAlchemy fills them in Python).
    peer = [(uuid.uuid4(), code, uuid.uuid4(), True, 4) for code in codes]
    await _copy(ours_url, ours, ["room_id", "host_id", "max_participants", "expires_at"])
    await _copy(peer_url, peer, ["id", "room_id", "host_id", "is_active", "max_participants"])


async def _copy(url: str, records: list[tuple[object, ...]], columns: list[str]) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.copy_records_to_table("meetings", records=records, columns=columns)
        # Vacuum and checkpoint now, so that autovacuum and the checkpoint due after a bulk load do
        # not land in the first measured runs.
        await conn.execute("VACUUM ANALYZE meetings")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def warm_cache(base_url: str, codes: Sequence[str], concurrency: int = 16) -> None:
    """Request each code once, so the server caches the room itself, in its own format."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:

        async def fetch_all(share: Sequence[str]) -> None:
            for code in share:
                response = await client.get(f"/rooms/{code}")
                if response.status_code != 200:
                    raise RuntimeError(f"{base_url}/rooms/{code} answered {response.status_code} while warming")

        await asyncio.gather(*(fetch_all(codes[i::concurrency]) for i in range(concurrency)))


# --- servers ---------------------------------------------------------------------------------------


def ours_command(args: argparse.Namespace, server: Server) -> tuple[list[str], dict[str, str]]:
    roomservice = shutil.which("roomservice", path=str(Path(sys.executable).parent))
    if roomservice is None:
        raise RuntimeError("roomservice is not installed in this virtualenv; run with the project's .venv/bin/python")
    env = {
        **os.environ,
        "ROOMS_DATABASE_URL": with_path(args.postgres_url, server.database),
        "ROOMS_REDIS_URL": with_path(args.redis_url, str(server.redis_db)),
        "ROOMS_HOST": LOCALHOST,
        "ROOMS_PORT": str(server.port),
        "ROOMS_WORKERS": str(args.workers),
        # Rate limits off: wrk is a handful of clients doing what a limit exists to stop, and the peer
        # has none. The limiter's Redis reads stay on the request path, so their cost is measured.
        "ROOMS_MISS_LIMIT_PER_MINUTE": "0",
        "ROOMS_CREATE_LIMIT_PER_MINUTE": "0",
        # Remembered 404s must outlast the run: the checks count Redis keys, and expiring ones would
        # blur the count of the scenarios that follow.
        "ROOMS_NEGATIVE_CACHE_SECONDS": "3600",
    }
    return [roomservice, "serve"], env


def peer_command(args: argparse.Namespace, server: Server) -> tuple[list[str], dict[str, str]]:
    uvicorn = peer_virtualenv() / "bin" / "uvicorn"
    env = {
        **os.environ,
        "PEER_DB": with_path(args.postgres_url, server.database, scheme="postgresql+asyncpg"),
        "PEER_REDIS": with_path(args.redis_url, str(server.redis_db)),
    }
    command = [
        str(uvicorn), f"{args.peer.stem}:app", "--app-dir", str(args.peer.parent),
        "--host", LOCALHOST, "--port", str(server.port), "--workers", str(args.workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
    ]  # fmt: skip
    return command, env


def peer_virtualenv() -> Path:
    """The peer's own virtualenv (its dependencies are not the project's), rebuilt when its requirements change."""
    wanted = PEER_REQUIREMENTS.read_text()
    installed = PEER_VENV / "requirements.txt"
    if not installed.is_file() or installed.read_text() != wanted:
        print(f"creating {PEER_VENV.relative_to(REPO_ROOT)} from {PEER_REQUIREMENTS.name} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True, timeout=120)
        pip = [str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(PEER_REQUIREMENTS)]
        subprocess.run(pip, check=True, timeout=600)
        installed.write_text(wanted)
    return PEER_VENV


def migrate_ours(args: argparse.Namespace, server: Server) -> None:
    command, env = ours_command(args, server)
    subprocess.run([command[0], "migrate"], env=env, check=True, timeout=60)


@contextmanager
def serving(server: Server, command: list[str], env: dict[str, str]) -> Iterator[None]:
    """Run a server until the block ends; its output goes to bench/results/<name>.log."""
    log_path = RESULTS_DIR / f"{server.name}.log"
    with log_path.open("w") as log:
        # A session of its own: Ctrl-C reaches only this script, which then stops the server's whole
        # process group (granian's workers included) in order.
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(server, process, log_path)
        yield
    finally:
        stop(process)


@contextmanager
def exclusive_run() -> Iterator[None]:
    """One bench at a time: a second run would replace the first one's databases under its servers."""
    with (RESULTS_DIR / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError("another bench/run.py is running") from None
        yield


def ensure_port_free(port: int) -> None:
    """Refuse to start if something already listens there: the bench would measure that instead."""
    with socket.socket() as probe:
        if probe.connect_ex((LOCALHOST, port)) == 0:
            raise RuntimeError(f"port {port} is already in use")


def wait_until_serving(server: Server, process: subprocess.Popen[bytes], log_path: Path, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(server.base_url + PROBE_PATH, timeout=1).status_code == 404:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} was not serving after {limit:.0f} s; see {log_path}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


# --- measuring -------------------------------------------------------------------------------------


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
    args: argparse.Namespace, server: Server, scenario: Scenario, plan: CodePlan, round_index: int, cache: redis.Redis
) -> RunResult:
    keys_before = cache.dbsize()
    figures = run_wrk(args, server, scenario, lua_args(scenario, plan, round_index, args.threads), args.duration)
    keys_added = cache.dbsize() - keys_before
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


def problems(
    scenario: Scenario, server: Server, figures: dict[str, int], keys_added: int, connections: int
) -> Iterator[str]:
    """What makes a run not measure what it claims: errors, wrong statuses, or hits that should be misses."""
    requests = figures["requests"]
    if figures["socket_errors"]:
        yield f"{figures['socket_errors']} socket errors/timeouts"
    if scenario.expect_404 and figures["non2xx"] != requests:
        yield f"{requests - figures['non2xx']} answers were not 404"
    if not scenario.expect_404 and figures["non2xx"]:
        yield f"{figures['non2xx']} answers were 4xx/5xx"
    # Requests still in flight when wrk stops may complete (and cache) after it has counted.
    remembers = scenario.ours_remembers_each_request and server.name == "ours"
    expected = requests if scenario.caches_each_request or remembers else 0
    if abs(keys_added - expected) > connections + requests // 100:
        yield f"Redis gained {keys_added} keys, expected about {expected}"


def run_rounds(
    args: argparse.Namespace, servers: Sequence[Server], plan: CodePlan, caches: dict[int, redis.Redis]
) -> list[RunResult]:
    results = []
    print_row_header()
    for round_index in range(args.rounds):
        for scenario in args.scenarios:
            for server in servers:
                result = measure(args, server, scenario, plan, round_index, caches[server.redis_db])
                print_row(result)
                results.append(result)
    return results


# --- reporting -------------------------------------------------------------------------------------

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


# --- main ------------------------------------------------------------------------------------------


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so everything started is stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    RESULTS_DIR.mkdir(exist_ok=True)
    ours = Server("ours", args.ours_port, OURS_DATABASE, args.ours_redis_db)
    peer = Server("peer", args.peer_port, PEER_DATABASE, args.peer_redis_db)
    peer_virtualenv()  # before anything is started: the first time it takes a while

    with ExitStack() as stack:
        stack.enter_context(exclusive_run())
        for server in (ours, peer):
            ensure_port_free(server.port)
        scratch_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roomservice-bench-")))
        stack.enter_context(scratch_databases(args.postgres_url, [ours.database, peer.database]))
        caches = stack.enter_context(scratch_redis(args.redis_url, [ours.redis_db, peer.redis_db]))
        migrate_ours(args, ours)
        stack.enter_context(serving(ours, *ours_command(args, ours)))
        stack.enter_context(serving(peer, *peer_command(args, peer)))  # the peer creates its table on start

        print(f"loading {args.rows} rooms into each database ...", flush=True)
        plan = CodePlan(scratch_dir / "codes.txt", args.hit_rooms, args.rows, args.rounds)
        codes = write_room_codes(plan.path, args.rows)
        asyncio.run(
            load_rooms(with_path(args.postgres_url, ours.database), with_path(args.postgres_url, peer.database), codes)
        )
        for server in (ours, peer):
            asyncio.run(warm_cache(server.base_url, codes[: args.hit_rooms]))
            run_wrk(args, server, SCENARIOS["post"], [], args.warmup)  # opens the pools; not measured

        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.workers} server process(es) each, "
            f"{os.cpu_count()} CPUs, {args.rounds} rounds\n",
            flush=True,
        )
        results = run_rounds(args, [ours, peer], plan, caches)

    print_summary(results, args.connections)
    print(f"\nsaved {save(args, results).relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
