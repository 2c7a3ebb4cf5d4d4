"""Signaling's join.lua on a Redis of its own: Redis's CPU per admission, for versions of the script
side by side (alternately, so that the machine's drift falls on all of them alike).

    .venv/bin/python bench/script_bench.py --script before=old.lua --script after=common/signaling/join.lua

Needs `redis-server` and `redis-benchmark` on PATH (Debian: apt-get install redis-server). For each
round and each script: a fresh server on a free port (--save '' --appendonly no), 100,000 room objects
of 50 places (the JSON the sweep writes), each given 8 members by the script itself (so each version
starts from its own keys), then `redis-benchmark -c 32 -P <pipeline> -r 100000` of

    EVALSHA <script> 2 room:__rand_int__ {room:__rand_int__}:participants participant-__rand_int__ 30000

(each __rand_int__ drawn on its own: a join reads one room's object and writes another room's set; the
sets hold 8-18 members, so almost every call is the dearest answer, `admitted`). Reported: joins/s,
Redis's own time per call (INFO commandstats usec_per_call) and the server's CPU (utime + stime of
its process) per call.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

ROOMS = 100_000
MEMBERS = 8
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def room_object(code: str, expires_ms: int) -> str:
    return json.dumps({"id": code, "hostId": "6f1c2a9e-1d1b-4f5e-9a0b-2f5d1c3e4b5a", "maxParticipants": 50,
                       "createdAt": "2026-12-03T10:00:00+00:00", "expiresAt": "2026-12-04T10:00:00+00:00",
                       "expiresAtMs": expires_ms, "status": "active", "version": 1, "metadata": {},
                       "cohostIds": [], "emptyTimeoutSeconds": 0, "unusedTimeoutSeconds": 0})  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run(source: str, pipeline: int, requests: int) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port, socket_timeout=60)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            sha = client.script_load(source)
            expires_ms = int(time.time() * 1000) + 86_400_000
            pipe = client.pipeline(transaction=False)
            for n in range(ROOMS):
                code = f"{n:012d}"  # as redis-benchmark writes __rand_int__ with -r 100000
                pipe.set(f"room:{code}", room_object(code, expires_ms), px=86_400_000)
                for member in range(MEMBERS):
                    pipe.evalsha(
                        sha, 2, f"room:{code}", "{room:" + code + "}:participants", f"member-{member}", 3_600_000
                    )
                if n % 1000 == 999:
                    pipe.execute()
            pipe.execute()
            client.config_resetstat()
            cpu_before = cpu_seconds(server.pid)
            output = subprocess.run(
                ["redis-benchmark", "-p", str(port), "-c", "32", "-P", str(pipeline), "-r", str(ROOMS), "-n",
                 str(requests), "-q", "EVALSHA", sha, "2", "room:__rand_int__", "{room:__rand_int__}:participants",
                 "participant-__rand_int__", "30000"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            cpu = cpu_seconds(server.pid) - cpu_before
            stats = client.info("commandstats")["cmdstat_evalsha"]
            rate = float(re.findall(r"([\d.]+) requests per second", output)[-1])
            return {
                "joins_per_s": rate,
                "usec_per_call": float(stats["usec_per_call"]),
                "cpu_us_per_call": cpu * 1e6 / stats["calls"],
                "failed": float(stats.get("failed_calls", 0)),
            }
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", action="append", required=True, help="name=path of a join.lua")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipeline", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=400_000)
    args = parser.parse_args()
    scripts = dict(item.split("=", 1) for item in args.script)
    sources = {name: Path(path).read_text() for name, path in scripts.items()}
    for pipeline in args.pipeline:
        results: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
        for round_ in range(args.rounds):
            for name, source in sources.items():
                result = run(source, pipeline, args.requests)
                results[name].append(result)
                print(f"-P {pipeline} round {round_ + 1} {name}: {result}", flush=True)
        for name, runs in results.items():
            mean = {key: sum(r[key] for r in runs) / len(runs) for key in runs[0]}
            print(f"-P {pipeline} {name} mean: " + ", ".join(f"{k} {v:,.1f}" for k, v in mean.items()), flush=True)


if __name__ == "__main__":
    main()
