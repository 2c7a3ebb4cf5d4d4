"""The servers bench/run.py measures: how each is started, when it is ready, and how it is stopped.

Ours (`roomservice serve`; also as `ours-off`, its request metrics off), the FastAPI peer (uvicorn,
in a virtualenv of its own) and the framework ceiling (a Litestar route doing no I/O, served through
bench/serve_ceiling.py by the same granian settings as ours). Each runs in a process group of its
own, its output in bench/results/<name>.log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from locations import BENCH_DIR, LOCALHOST, REPO_ROOT, RESULTS_DIR, with_path

PEER_VENV = BENCH_DIR / ".venv-peer"
PEER_REQUIREMENTS = BENCH_DIR / "peer-requirements.txt"

# The readiness probe: answered 404 by ours and the peer once their route and database work, and 200
# by the ceiling, whose route answers any code.
PROBE_PATH = "/rooms/aaa-aaaa-aaa"


@dataclass(frozen=True)
class Server:
    """One server under test, and where its data lives (the ceiling has no data)."""

    name: str
    port: int
    database: str = ""
    redis_db: int | None = None  # None: no Redis, so the runs' Redis-key check does not apply
    ready_status: int = 404  # what PROBE_PATH answers once it serves
    only_in: frozenset[str] | None = None  # the scenarios it is measured in; None: all of them

    def measured_in(self, scenario: str) -> bool:
        return self.only_in is None or scenario in self.only_in

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"


def ours_command(args: argparse.Namespace, server: Server, **settings: str) -> tuple[list[str], dict[str, str]]:
    """`roomservice serve` for the bench; `settings` are further ROOMS_* variables (e.g. http_metrics)."""
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
        **{f"ROOMS_{name.upper()}": value for name, value in settings.items()},
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


def ceiling_command(args: argparse.Namespace, server: Server) -> tuple[list[str], dict[str, str]]:
    """The ceiling through the project's granian_server(): ours and it differ in the app, not the server."""
    launcher = BENCH_DIR / "serve_ceiling.py"
    return [sys.executable, str(launcher), str(args.ceiling), str(server.port), str(args.workers)], dict(os.environ)


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
            if httpx.get(server.base_url + PROBE_PATH, timeout=1).status_code == server.ready_status:
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
