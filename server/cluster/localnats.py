"""nats-server processes with JetStream on free loopback ports, routed into one cluster.

For trying cluster mode on one machine and for what does exactly that: ``roster bench cluster``
and the cluster tests. Each server has its own store directory, client port, route port and
monitor port; ``wait_healthy`` polls ``/healthz`` (200 once JetStream is up) with a deadline.
Each process is a ``server.spawn.Child`` with its output in ``<name>.log`` beside its store.
"""

from __future__ import annotations

import http.client
import shutil
import time
from pathlib import Path

from server.spawn import Child, free_port

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
HEALTHY_TIMEOUT_S = 30.0


class NatsServer:
    def __init__(self, name: str, store: Path, port: int, cluster_port: int, monitor_port: int,
                 routes: list[int], cluster: str) -> None:
        self.name, self.store, self.port = name, store, port
        self.cluster_port, self.monitor_port, self.routes = cluster_port, monitor_port, routes
        self.cluster = cluster
        self.log = store.parent / f"{name}.log"
        args = [NATS_SERVER or "nats-server", "-js", "-sd", str(store), "-n", name,
                "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port)]
        if routes:
            args += ["--cluster_name", cluster, "--cluster", f"nats://127.0.0.1:{cluster_port}",
                     "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in routes)]
        # ready=None: nats-server's start lines say nothing about JetStream; /healthz does
        self.child = Child(args, name=f"nats-server {name}", log_path=self.log, ready=None,
                           stop_timeout=10.0)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        if NATS_SERVER is None:
            raise RuntimeError("nats-server is not installed (Debian package nats-server)")
        self.store.mkdir(parents=True, exist_ok=True)
        self.child.start()
        return self

    def running(self) -> bool:
        return self.child.running()

    def kill(self) -> None:
        if self.child.running():
            self.child.kill()

    def healthy(self) -> bool:
        # http.client, not httpx: this is polled, and an httpx client loads the certificate
        # store when it is made (~20 ms of CPU) even for a plain-HTTP URL
        conn = http.client.HTTPConnection("127.0.0.1", self.monitor_port, timeout=1.0)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()


class NatsCluster:
    def __init__(self, root: Path, size: int = 3, name: str = "roster-nats") -> None:
        self.root, self.size, self.name = root, size, name
        self.servers = self._plan()

    def _plan(self) -> list[NatsServer]:
        ports = [(free_port(), free_port(), free_port()) for _ in range(self.size)]
        cluster_ports = [p[1] for p in ports]
        return [NatsServer(f"n{i}", self.root / f"nats{i}", p, c, m,
                           [q for q in cluster_ports if q != c] if self.size > 1 else [],
                           self.name)
                for i, (p, c, m) in enumerate(ports)]

    @property
    def urls(self) -> str:
        return ",".join(s.url for s in self.servers)

    def start(self) -> NatsCluster:
        """Start every server and wait until JetStream answers. A server that lost one of its
        ports to another process between the pick and its own bind exits at once; then the
        cluster starts afresh on new ports (three attempts)."""
        for attempt in range(3):
            for s in self.servers:
                s.start()
            try:
                self.wait_healthy()
                return self
            except RuntimeError:
                self.stop()
                lost = any("address already in use" in s.child.text() for s in self.servers)
                if not lost or attempt == 2:
                    raise
                for s in self.servers:
                    shutil.rmtree(s.store, ignore_errors=True)
                self.servers = self._plan()
        raise AssertionError("unreachable")

    def wait_healthy(self, servers: list[NatsServer] | None = None) -> None:
        for s in servers or self.servers:
            deadline = time.monotonic() + HEALTHY_TIMEOUT_S
            while not s.healthy():
                if time.monotonic() > deadline or not s.running():
                    raise RuntimeError(f"nats-server {s.name} is not healthy; see {s.log}")
                time.sleep(0.05)

    def stop(self) -> None:
        for s in self.servers:
            s.kill()
