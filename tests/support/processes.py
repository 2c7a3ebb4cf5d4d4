"""Running the `roomservice` command as an operator would: its own process, its own environment."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOMSERVICE = [sys.executable, "-m", "roomservice"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**rooms: str) -> dict[str, str]:
    """This process's environment without its `ROOMS_*`, plus `ROOMS_<NAME>` for each keyword. A
    worker serves no metrics unless `worker_metrics_port` is given: two on the default port would collide."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMS_")}
    env.update({f"ROOMS_{k.upper()}": v for k, v in {"worker_metrics_port": "0", **rooms}.items()})
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def wait_until_ready(port: int, process: subprocess.Popen[bytes], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited during start-up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("the service did not become ready")


def stop_as_container(process: subprocess.Popen[Any], within: float = 30) -> float:
    """Stop a process as an orchestrator stops a container: SIGTERM to it alone (a container's first
    process), SIGKILL to its whole group (it was started with `start_new_session=True`) once it has
    exited or `within` seconds have passed, so that no child of it outlives the test. Returns the
    seconds it took to exit by itself (or `within`)."""
    started = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=within)
    took = time.monotonic() - started
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return took
