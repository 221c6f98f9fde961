"""Start-up of a cluster node when NATS cannot be used: one line, exit code 3 (wait and retry);
and of the local NATS cluster the tests and the benchmark start (server/cluster/localnats.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from server.cluster.localnats import NATS_SERVER, NatsCluster
from server.spawn import free_port
from tests.cluster.helpers import RosterNode, leader_of
from tests.server_process import run_cli


def test_unreachable_nats_refuses_the_start_with_exit_3(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = run_cli("serve", "--data-dir", str(tmp_path / "data"), "--port", "0",
                   "--resp-port", "off", "--cluster", f"nats://127.0.0.1:{port}",
                   "--log-format", "text")
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"roster: refusing to start: cannot connect to NATS at "
                           f"nats://127.0.0.1:{port}")


def test_a_node_with_another_lease_than_the_bucket_is_warned(tmp_path: Path) -> None:
    if NATS_SERVER is None:
        pytest.skip("nats-server is not installed (.ci/run installs the Debian package)")
    nats = NatsCluster(tmp_path / "nats", size=1)
    try:
        nats.start()
        first = RosterNode(tmp_path / "a", nats.urls, "a", replicas=1, lease_ms=1500).start()
        assert first.stop() == 0
        again = RosterNode(tmp_path / "a", nats.urls, "a", replicas=1, lease_ms=3000).start()
        try:
            leader_of([again])  # it still leads: the warning is advice, not a refusal
            assert "expires keys after 1.500 s but --lease-ms is 3000" in again.text()
        finally:
            assert again.stop() == 0
    finally:
        nats.stop()


def test_a_port_taken_before_nats_binds_it_gets_new_ports(tmp_path: Path) -> None:
    if NATS_SERVER is None:
        pytest.skip("nats-server is not installed (.ci/run installs the Debian package)")
    nats = NatsCluster(tmp_path / "nats", size=1)
    taken = nats.servers[0].port
    with socket.socket() as squatter:  # another process got there between the pick and the bind
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            nats.start()
            assert nats.servers[0].port != taken
            assert nats.servers[0].healthy()
        finally:
            nats.stop()
