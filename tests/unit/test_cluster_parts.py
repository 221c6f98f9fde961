"""The cluster's pure parts: names, the lease's value, what a node advertises; and the bridge
between trio and an asyncio loop in its own thread."""

from __future__ import annotations

import asyncio

import pytest
import trio

from server.cluster.bridge import AsyncioThread
from server.cluster.names import Names, NodeInfo, advertised


def test_names_of_a_cluster() -> None:
    n = Names.of("eu-1")
    assert (n.stream, n.subject) == ("ROSTER_EU_1", "roster.eu-1.log")
    assert (n.lease_bucket, n.snapshot_bucket) == ("ROSTER_EU_1_LEASE", "ROSTER_EU_1_SNAP")


def test_node_info_round_trips_and_refuses_foreign_values() -> None:
    info = NodeInfo("a", "http://10.0.0.1:5001", "10.0.0.1:5002")
    assert NodeInfo.decode(info.encode()) == info
    for bad in (b"", b"{", b"[]", b'{"node_id": "a"}', b'{"node_id":"a","url":"u","resp":3}'):
        assert NodeInfo.decode(bad) is None


def test_advertised_addresses() -> None:
    me = advertised(None, None, "http://0.0.0.0:5001", "0.0.0.0:5002")
    assert me == NodeInfo("127.0.0.1:5001", "http://127.0.0.1:5001", "127.0.0.1:5002")
    me = advertised("n1", "http://roster-1.internal:8080/", "http://0.0.0.0:5001", None)
    assert me == NodeInfo("n1", "http://roster-1.internal:8080", None)
    me = advertised("n1", "http://[fd00::1]:5001", "http://[::]:5001", "[::]:5002")
    assert me.resp == "[fd00::1]:5002"


async def test_bridge_returns_results_raises_errors_and_cancels() -> None:
    bridge = AsyncioThread()
    bridge.start()
    try:
        async def add(a: int, b: int) -> int:
            await asyncio.sleep(0)
            return a + b

        assert await bridge.call(add, 2, 3) == 5

        async def fail() -> None:
            raise ValueError("from asyncio")

        with pytest.raises(ValueError, match="from asyncio"):
            await bridge.call(fail)

        cancelled = asyncio.Event()

        async def forever() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with trio.move_on_after(0.05):
            await bridge.call(forever)

        async def was_cancelled() -> bool:
            await asyncio.wait_for(cancelled.wait(), 5)
            return True

        assert await bridge.call(was_cancelled)
    finally:
        bridge.stop()
    assert not bridge.loop.is_running()
