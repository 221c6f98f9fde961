"""Real clusters for the cluster-mode tests: nats-server processes and `roster serve` nodes.

``NatsCluster`` starts three (or one) ``nats-server -js`` on free loopback ports, routed into one
JetStream cluster, each with its own store directory, and waits on their ``/healthz`` until
JetStream answers. ``RosterNode`` is a ``ServerProcess`` started with ``--cluster``. Every wait is
a poll with a deadline (``wait_until``), never a sleep for timing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server_process import ServerProcess, wait_until

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
needs_nats = pytest.mark.skipif(NATS_SERVER is None, reason="nats-server is not installed "
                                "(.ci/run installs the Debian package)")
#: the lease the test nodes run with: short, so failovers stay quick, yet well above a
#: scheduling hiccup on a busy two-core machine
LEASE_MS = 1500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    def __init__(self, name: str, store: Path, port: int, cluster_port: int, monitor_port: int,
                 routes: list[int], cluster: str) -> None:
        self.name, self.store, self.port = name, store, port
        self.cluster_port, self.monitor_port, self.routes = cluster_port, monitor_port, routes
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = store.parent / f"{name}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert NATS_SERVER is not None
        args = [NATS_SERVER, "-js", "-sd", str(self.store), "-n", self.name, "-a", "127.0.0.1",
                "-p", str(self.port), "-m", str(self.monitor_port)]
        if self.routes:
            args += ["--cluster_name", self.cluster,
                     "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                     "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        self.store.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        cluster_ports = [p[1] for p in ports]
        self.servers = [
            NatsServer(f"n{i}", root / f"nats{i}", p, c, m,
                       [q for q in cluster_ports if q != c] if size > 1 else [], "roster-test")
            for i, (p, c, m) in enumerate(ports)]

    @property
    def urls(self) -> str:
        return ",".join(s.url for s in self.servers)

    def start(self) -> NatsCluster:
        for s in self.servers:
            s.start()
        self.wait_healthy()
        return self

    def wait_healthy(self, servers: list[NatsServer] | None = None) -> None:
        for s in servers or self.servers:
            wait_until(s.healthy, timeout=30, what=f"nats-server {s.name} healthy")

    def stop(self) -> None:
        for s in self.servers:
            s.kill()


class RosterNode(ServerProcess):
    def __init__(self, data_dir: Path, nats_urls: str, node_id: str, *args: str,
                 replicas: int = 3, lease_ms: int = LEASE_MS) -> None:
        super().__init__(data_dir, "--cluster", nats_urls, "--node-id", node_id,
                         "--cluster-replicas", str(replicas), "--lease-ms", str(lease_ms),
                         "--purge-interval-s", "3600", *args)
        self.node_id = node_id

    def health(self) -> dict[str, Any] | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            r = httpx.get(self.url + "/health", timeout=2.0)
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = r.json()
        return body

    def role(self) -> str | None:
        h = self.health()
        return None if h is None else str(h.get("role"))

    def applied(self) -> int:
        h = self.health()
        return -1 if h is None else int(h["applied_lsn"])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def leader_of(nodes: list[RosterNode], timeout: float = 30.0) -> RosterNode:
    """The one live node that says it leads, once the live nodes agree on it."""
    found: list[RosterNode] = []

    def one_leader() -> bool:
        live = [n for n in nodes if n.alive()]
        healths = {n.node_id: n.health() for n in live}
        leaders = [n for n in live if (healths[n.node_id] or {}).get("role") == "leader"]
        if len(leaders) != 1:
            return False
        url = leaders[0].url
        if all((h or {}).get("leader") == url for h in healths.values()):
            found[:] = leaders
            return True
        return False

    wait_until(one_leader, timeout=timeout, what="one leader all live nodes agree on")
    return found[0]


def stop_all(nodes: list[RosterNode]) -> None:
    for n in nodes:
        with suppress(Exception):
            if n.alive():
                n.kill()
