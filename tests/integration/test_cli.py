"""The `roomservice` command as an operator runs it: real processes, real servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.support.processes import REPO_ROOT, ROOMSERVICE, environment, free_port, wait_until_ready


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
        pytest.fail("the service did not stop on Ctrl-C")


def test_a_bad_setting_stops_the_process_with_its_name() -> None:
    result = subprocess.run(
        [*ROOMSERVICE, "migrate"], env=environment(port="eighty"), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "ROOMS_PORT" in result.stderr


def test_cluster_mode_refuses_to_start_without_a_queue_redis() -> None:
    env = environment(database_url="postgresql://x/y", redis_mode="cluster", redis_url="redis://127.0.0.1:7001")
    result = subprocess.run([*ROOMSERVICE, "worker"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "ROOMS_QUEUE_REDIS_URL is required in cluster mode" in result.stderr
    assert "hash slots" in result.stderr  # and why


def test_serve_needs_the_database_url() -> None:
    result = subprocess.run(
        [*ROOMSERVICE, "serve"], env=environment(redis_url="redis://x"), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "ROOMS_DATABASE_URL is required" in result.stderr


def test_keygen_writes_an_owner_only_key_whose_kid_the_jwks_lists(tmp_path: Path, settings_with) -> None:
    path = tmp_path / "ticket.pem"
    made = subprocess.run(
        [*ROOMSERVICE, "keygen", str(path)], env=environment(), capture_output=True, text=True, timeout=30
    )
    assert made.returncode == 0, made.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_bytes()

    again = subprocess.run(
        [*ROOMSERVICE, "keygen", str(path)], env=environment(), capture_output=True, text=True, timeout=30
    )
    assert again.returncode == 1
    assert "never overwritten" in again.stderr
    assert path.read_bytes() == before

    async def published() -> list[str]:
        async with AsyncTestClient(app=create_app(settings_with(ticket_keys=str(path)))) as client:
            return [key["kid"] for key in (await client.get("/.well-known/jwks.json")).json()["keys"]]

    assert asyncio.run(published()) == [made.stdout.strip()]


def test_serve_stops_on_a_ticket_key_it_cannot_use(tmp_path: Path) -> None:
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    for keys, says in [
        (tmp_path / "absent.pem", "ROOMS_TICKET_KEYS: cannot read"),
        (not_a_key, f"ROOMS_TICKET_KEYS: {not_a_key} is not an unencrypted PEM private key"),
    ]:
        env = environment(database_url="postgresql://x/y", redis_url="redis://x", ticket_keys=str(keys))
        result = subprocess.run([*ROOMSERVICE, "serve"], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert says in result.stderr


def test_version_is_the_installed_one() -> None:
    result = subprocess.run([*ROOMSERVICE, "--version"], env=environment(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.strip() == f"roomservice {metadata.version('roomservice')}"


def test_migrate_status_lists_pending_then_applied(scratch_database: str) -> None:
    env = environment(database_url=scratch_database)
    shipped = sorted(entry.name for entry in (REPO_ROOT / "migrations").glob("*.sql"))

    def status() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ROOMSERVICE, "migrate", "--status"], env=env, capture_output=True, text=True, timeout=60
        )

    before = status()
    assert before.returncode == 1, before.stderr  # something is pending
    assert [line.split() for line in before.stdout.splitlines()] == [["pending", name] for name in shipped]

    assert subprocess.run([*ROOMSERVICE, "migrate"], env=env, capture_output=True, timeout=60).returncode == 0
    after = status()
    assert after.returncode == 0, after.stderr
    assert [line.split()[:2] for line in after.stdout.splitlines()] == [["applied", name] for name in shipped]


def test_an_unknown_variable_is_named_with_the_closest_setting(scratch_database: str) -> None:
    env = environment(database_url=scratch_database, worker="4", no_such_thing="1")
    result = subprocess.run([*ROOMSERVICE, "migrate", "--status"], env=env, capture_output=True, text=True, timeout=60)
    assert "ROOMS_WORKER is not a setting of this service; did you mean ROOMS_WORKERS?" in result.stderr
    assert '"ROOMS_NO_SUCH_THING is not a setting of this service"' in result.stderr  # nothing close to it


def test_migrate_then_serve(scratch_database: str, redis_url: str) -> None:
    port = free_port()
    env = environment(database_url=scratch_database, redis_url=redis_url, port=str(port))
    migrated = subprocess.run([*ROOMSERVICE, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr

    server = subprocess.Popen([*ROOMSERVICE, "serve"], env=env)
    try:
        wait_until_ready(port, server)
        host = {"X-User-Id": "6f1c1a3e-9a53-4c1e-8a53-1b2c3d4e5f60"}
        created = httpx.post(f"http://127.0.0.1:{port}/rooms", headers=host)
        assert created.status_code == 201
        fetched = httpx.get(f"http://127.0.0.1:{port}/rooms/{created.json()['roomId']}", headers=host)
        assert fetched.json() == created.json()
    finally:
        assert stop(server) in (0, -signal.SIGINT, 130)


@pytest.mark.skipif("ROOMS_TEST_DATABASE_URL" in os.environ, reason="exercises the embedded servers")
def test_dev_runs_everything_from_nothing(tmp_path: Path) -> None:
    port = free_port()
    dev = subprocess.Popen([*ROOMSERVICE, "dev"], env=environment(port=str(port)), cwd=tmp_path)
    try:
        wait_until_ready(port, dev, within=60)
        user = {"X-User-Id": "6f1c1a3e-9a53-4c1e-8a53-1b2c3d4e5f60"}
        created = httpx.post(f"http://127.0.0.1:{port}/rooms", headers=user)
        assert created.status_code == 201
        # `dev` made a ticket key: tickets are issued.
        issued = httpx.post(f"http://127.0.0.1:{port}/rooms/{created.json()['roomId']}/tickets", headers=user)
        assert issued.status_code == 201, issued.text
    finally:
        assert stop(dev) in (0, -signal.SIGINT, 130)
    # Data is kept between runs, under ./.data, the ticket key too (owner-only).
    assert (tmp_path / ".data" / "postgres" / "PG_VERSION").exists()
    assert (tmp_path / ".data" / "ticket-key.pem").stat().st_mode & 0o777 == 0o600
    # Nothing is left running: the embedded Postgres released its data directory.
    assert not (tmp_path / ".data" / "postgres" / "postmaster.pid").exists()
