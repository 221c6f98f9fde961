"""Fixtures of the cluster suite: real nats-server processes and real `roster serve` nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.helpers import NATS_SERVER, NatsCluster, RosterNode, stop_all


def start_nodes(root: Path, nats: NatsCluster, count: int = 3, *args: str) -> list[RosterNode]:
    nodes = [RosterNode(root / f"node{i}", nats.urls, f"node{i}", *args) for i in range(count)]
    try:
        for node in nodes:
            node.start()
    except BaseException:
        stop_all(nodes)
        raise
    return nodes


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server with JetStream in one cluster, for one test."""
    if NATS_SERVER is None:
        pytest.skip("nats-server is not installed (.ci/run installs the Debian package)")
    cluster = NatsCluster(tmp_path / "nats")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def nodes(tmp_path: Path, nats: NatsCluster) -> Iterator[list[RosterNode]]:
    """Three Roster nodes on ``nats``, for one test."""
    started = start_nodes(tmp_path, nats)
    try:
        yield started
    finally:
        stop_all(started)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsCluster,
                                                                       list[RosterNode]]]:
    """One cluster for the tests that only write fresh channels and read them back."""
    if NATS_SERVER is None:
        pytest.skip("nats-server is not installed (.ci/run installs the Debian package)")
    root = tmp_path_factory.mktemp("cluster")
    cluster = NatsCluster(root / "nats")
    try:
        cluster.start()
        started = start_nodes(root, cluster)
        try:
            yield cluster, started
        finally:
            stop_all(started)
    finally:
        cluster.stop()
