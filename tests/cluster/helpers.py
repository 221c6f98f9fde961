"""Real clusters for the cluster-mode tests: nats-server processes and `roster serve` nodes.

``NatsCluster`` (``server/cluster/localnats.py``, shared with ``roster bench cluster``) starts three
(or one) ``nats-server -js`` on free loopback ports, routed into one JetStream cluster, each with
its own store directory, and waits on their ``/healthz`` until JetStream answers. ``RosterNode`` is
a ``ServerProcess`` started with ``--cluster``. Every wait is a poll with a deadline
(``wait_until``), never a sleep for timing.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx

from server.cluster.localnats import NATS_SERVER, NatsCluster, NatsServer
from tests.server_process import ServerProcess, wait_until

__all__ = ["HTTP", "NATS_SERVER", "NatsCluster", "NatsServer", "RosterNode", "leader_of",
           "stop_all"]

#: one client for every plain request of the cluster tests (health polls above all): making an
#: httpx client loads the certificate store, ~20 ms of CPU, which a poll every 20 ms per node
#: turned into most of this suite's CPU time. Thread-safe; timeout as httpx's default.
HTTP = httpx.Client(timeout=5.0)

#: the lease the test nodes run with: short, so failovers stay quick, yet well above a
#: scheduling hiccup on a busy two-core machine
LEASE_MS = 1500


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
            r = HTTP.get(self.url + "/health", timeout=2.0)
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
