"""`roomservice`: serve the API, run the worker, migrate, make ticket keys, or run it all locally (`dev`).

This is the composition root: the only package that imports both `api` and `worker`. They are
imported inside the subcommands that need them, so `migrate` starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.environment import load_settings, unknown_variables
from common.logs import LogFormat, configure_logging, formatter
from common.settings import ENV_PREFIX, Settings, SettingsError, require

if TYPE_CHECKING:
    from granian.server.common import AbstractServer

log = logging.getLogger("roomservice")

DEV_DATA_DIR = Path(".data")
# prometheus_client's variable, read when it is first imported: this module must not import it.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
DEV_DATABASE = "rooms"
DEV_TICKET_KEY = DEV_DATA_DIR / "ticket-key.pem"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomservice", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('roomservice')}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP API (granian, ROOMS_WORKERS processes)")
    commands.add_parser("worker", help="run the background worker (arq)")
    migrate = commands.add_parser("migrate", help="apply pending database migrations, then exit")
    migrate.add_argument(
        "--status",
        action="store_true",
        help="apply nothing: list the applied and pending migrations; exit 1 if some are pending",
    )
    commands.add_parser(
        "dev", help="run everything locally; starts embedded Postgres/Redis where ROOMS_*_URL are unset"
    )
    keygen = commands.add_parser("keygen", help="write a new Ed25519 key for join tickets; prints its kid")
    keygen.add_argument("path", type=Path, help="the file to create (never overwritten), for ROOMS_TICKET_KEYS")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"roomservice: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    log_format = settings.log_format or ("text" if args.command == "dev" else "json")
    configure_logging(settings.log_level, log_format)
    for variable, closest in unknown_variables(os.environ):
        log.warning("%s is not a setting of this service%s", variable, f"; did you mean {closest}?" if closest else "")

    try:
        if args.command == "serve":
            serve(settings)
        elif args.command == "worker":
            run_worker(settings)
        elif args.command == "migrate" and args.status:
            return show_migrations(settings)
        elif args.command == "migrate":
            run_migrations(settings)
        elif args.command == "keygen":
            return generate_key(args.path)
        else:
            dev(settings)
    except SettingsError as exc:
        print(f"roomservice: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def serve(settings: Settings) -> None:
    """Run the API under granian. Each process builds its app from the ROOMS_* environment."""
    require(settings.database_url, "DATABASE_URL")
    require_redis(settings)
    from common.tickets.keys import load_ticket_keys

    # Each API process reads the keys again; read here first, a bad one stops the command itself.
    if not load_ticket_keys(settings.ticket_keys).configured:
        log.warning("ROOMS_TICKET_KEYS is not set: POST /rooms/{roomId}/tickets answers 503 tickets_not_configured")
    with shared_metrics(settings.workers):
        granian_server(
            "api.app:app_from_environment",
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            factory=True,
            log_format=settings.log_format or "json",
        ).serve()


@contextlib.contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """With several API processes, a directory where each keeps its metric values, so that a scrape
    answered by any of them counts all of them: `PROMETHEUS_MULTIPROC_DIR` if the operator chose one
    (emptied now: the files of an earlier run would add its counts), else a fresh one, removed at exit.
    Set before granian starts the processes, which read it when they first import prometheus_client."""
    if workers == 1:
        # One process: its own registry, with its process metrics; a directory inherited from the
        # environment would switch prometheus_client to files nobody empties.
        os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)
        yield
        return
    chosen = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    directory = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="roomservice-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIR_VARIABLE] = str(directory)
    log.info("metrics of the %d API processes kept in %s", workers, directory)
    try:
        yield
    finally:
        if not chosen:
            shutil.rmtree(directory, ignore_errors=True)


def granian_server(
    target: str, *, host: str, port: int, workers: int, factory: bool, log_format: LogFormat = "json"
) -> AbstractServer[Any]:
    """The granian the API is served by. bench/serve_ceiling.py serves the framework ceiling with it
    too, so that the two are measured under the same server settings."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    return Granian(
        target,
        factory=factory,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
        loop=Loops.uvloop if sys.platform != "win32" else Loops.asyncio,
        log_access=False,
        # granian's own lines (start, stop, its processes) in the service's format, on stderr.
        log_dictconfig={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"service": {"()": formatter, "log_format": log_format}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "service"}},
            "loggers": {"_granian": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
        },
        backlog=2048,
    )


def generate_key(path: Path) -> int:
    """`roomservice keygen PATH`: a new ticket key, owner-only; prints its kid (what the JWKS will list)."""
    from common.tickets.keys import write_new_key

    try:
        kid = write_new_key(path)
    except FileExistsError:
        print(f"roomservice: {path} exists; a key is never overwritten", file=sys.stderr)  # noqa: T201
        return 1
    except OSError as exc:
        print(f"roomservice: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(kid)  # noqa: T201
    return 0


def run_worker(settings: Settings) -> None:
    os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)  # one process, as for `serve` with one (shared_metrics)
    from worker.main import run_worker as run

    require(settings.database_url, "DATABASE_URL")
    require_redis(settings)
    asyncio.run(run(settings))


def require_redis(settings: Settings) -> None:
    """Stop with a message naming the variable if the settings do not say where Redis is."""
    if not settings.redis_configured:
        variable = "REDIS_SENTINELS" if settings.redis_mode == "sentinel" else "REDIS_URL"
        require("", variable, f"in {settings.redis_mode} mode")


def run_migrations(settings: Settings) -> None:
    from roomservice.migrate import migrate

    applied = asyncio.run(migrate(require(settings.database_url, "DATABASE_URL")))
    log.info("migrations applied: %s", ", ".join(applied) if applied else "none (up to date)")


def show_migrations(settings: Settings) -> int:
    """Print each migration, applied (when) or pending; 1 if any is pending, 2 if one was edited."""
    from roomservice.migrate import migration_status

    states = asyncio.run(migration_status(require(settings.database_url, "DATABASE_URL")))
    for state in states:
        if state.applied_at is None:
            print(f"pending  {state.name}")  # noqa: T201
        else:
            edited = "  (edited since: migrate refuses to run)" if state.edited else ""
            print(f"applied  {state.name}  {state.applied_at:%Y-%m-%d %H:%M:%S %Z}{edited}")  # noqa: T201
    if any(state.edited for state in states):
        return 2
    return 1 if any(state.applied_at is None for state in states) else 0


def dev(settings: Settings) -> None:
    """Everything on one machine: embedded servers where no URL is given, migrations, the worker, the API."""
    from roomservice.embedded import embedded_postgres, embedded_redis, ensure_database

    with contextlib.ExitStack() as running:
        overrides: dict[str, str] = {}
        if not settings.database_url:
            server_url = running.enter_context(embedded_postgres(DEV_DATA_DIR / "postgres", persist=True))
            overrides["DATABASE_URL"] = asyncio.run(ensure_database(server_url, DEV_DATABASE))
            log.info("embedded Postgres running, data in %s", DEV_DATA_DIR / "postgres")
        if not settings.redis_configured:
            overrides["REDIS_URL"] = running.enter_context(embedded_redis(DEV_DATA_DIR / "valkey", persist=True))
            log.info("embedded Redis (Valkey) running at %s", overrides["REDIS_URL"])
        if not settings.ticket_keys:
            overrides["TICKET_KEYS"] = str(_dev_ticket_key().resolve())
        # The API processes and the worker read their settings from the environment, so the URLs go
        # there, and the text log format that `dev` defaults to.
        os.environ.update({ENV_PREFIX + name: value for name, value in overrides.items()})
        os.environ.setdefault(ENV_PREFIX + "LOG_FORMAT", "text")
        settings = load_settings(os.environ)

        run_migrations(settings)
        worker = subprocess.Popen([sys.executable, "-m", "roomservice", "worker"])
        running.callback(_stop_process, worker)
        log.info("Room Service on http://%s:%d (Ctrl-C stops everything)", settings.host, settings.port)
        serve(settings)


def _dev_ticket_key() -> Path:
    """The ticket key of `dev`, made on first use and kept with the rest of its data."""
    from common.tickets.keys import write_new_key

    if not DEV_TICKET_KEY.exists():
        DEV_TICKET_KEY.parent.mkdir(parents=True, exist_ok=True)
        log.info("new ticket key in %s, kid %s", DEV_TICKET_KEY, write_new_key(DEV_TICKET_KEY))
    return DEV_TICKET_KEY


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """Ask politely (SIGTERM: finish the batch in hand), insist after a while."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
