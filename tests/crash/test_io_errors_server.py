"""Write and fsync errors in a real server's flusher (``ROSTER_FAILPOINTS=fsync_eio@N`` and
friends, wal/failpoints.py): fail-stop. Clients waiting on the failed batch get 503
``log_unavailable``, nothing un-logged is acknowledged (a 503'd request must be absent after
restart), the process exits 1, and the next start recovers every acknowledged write."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from tests.crash.helpers import DIE_TIMEOUT_S, post, recovered_and_checked, server
from tests.crash.oracle import Workload

WRITERS = 4
#: the N-th write / fdatasync call fails. Calls 1 are the first segment's header; setup() then
#: writes 3 + WRITERS batches, one write and one fdatasync each under --fsync always.
N = 25


@pytest.mark.parametrize(
    ("points", "said"),
    [
        (f"fsync_eio@{N}", "injected EIO on fdatasync"),
        (f"fsync_enospc@{N}", "injected ENOSPC on fdatasync"),
        (f"write_eio@{N}", "injected EIO on write"),
        (f"write_enospc@{N}", "injected ENOSPC on write"),
        # half the batch reaches the file, then the disk is full: the half must be cut back off
        (f"write_short@{N},write_enospc@{N + 1}", "injected short write"),
    ],
)
def test_log_error_is_fail_stop(tmp_path: Path, points: str, said: str) -> None:
    data = tmp_path / "data"
    seed = random.randrange(1 << 30)
    workload = Workload(WRITERS, seed)
    with server(data, "--fsync", "always", failpoints=points) as proc:
        workload.setup(proc.url)
        workload.start(proc.url)
        code = proc.wait(DIE_TIMEOUT_S)
        workload.stop()
        text = proc.text()
    assert code == 1, text
    assert said in text and "write-ahead log failed, stopping" in text, text
    assert not workload.errors(), workload.errors()
    assert workload.refused >= 1, (seed, text)  # the waiters of the failed batch got 503
    assert workload.acked >= 1
    # recovered_and_checked treats every 503 as "not logged": present after restart = failure.
    settled = recovered_and_checked(data, workload)
    assert settled.acked_checked == workload.acked
    assert settled.torn_tails == 0  # the failed batch was cut back, not left torn


def test_one_short_write_is_retried_not_fatal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    workload = Workload(WRITERS, random.randrange(1 << 30))
    with server(data, "--fsync", "always", failpoints=f"write_short@{N}") as proc:
        workload.setup(proc.url)
        workload.start(proc.url)
        assert workload.wait_acked(60, timeout=30)
        assert proc.proc is not None and proc.proc.poll() is None
        workload.stop()
        assert proc.stop() == 0, proc.text()
        assert "injected short write on write call" in proc.text()
    assert not workload.errors() and workload.refused == 0
    recovered_and_checked(data, workload)


# -- a log failure during a snapshot ---------------------------------------------------------------
# Under --fsync none the only fdatasync calls are segment headers and snapshots, so
# fsync_eio@2 fails the first snapshot's "make the log durable" step (or its rotation).

SNAPSHOT_FAILS = "fsync_eio@2"


def test_admin_snapshot_during_a_log_failure_is_503(tmp_path: Path) -> None:
    with server(tmp_path / "data", "--fsync", "none", failpoints=SNAPSHOT_FAILS) as proc:
        workload = Workload(1, 0)
        workload.setup(proc.url)
        r = post(proc.url, "/admin/snapshot")
        assert proc.wait(DIE_TIMEOUT_S) == 1
        assert (r.status_code, r.json().get("code")) == (503, "log_unavailable"), r.text


def test_size_triggered_snapshot_during_a_log_failure_is_an_orderly_stop(tmp_path: Path) -> None:
    with server(tmp_path / "data", "--fsync", "none", "--snapshot-bytes", "50",
                failpoints=SNAPSHOT_FAILS) as proc:
        answers = []
        with httpx.Client(base_url=proc.url, verify=False, timeout=30) as c:
            for i in range(5):  # the first record already asks for a snapshot
                try:
                    r = c.post("/channel", json={"channel_id": f"g{i}", "channel_type": 2})
                except httpx.TransportError:
                    break  # stopped
                answers.append(r.status_code)
        code = proc.wait(DIE_TIMEOUT_S)
        text = proc.text()
    assert code == 1
    assert set(answers) <= {200, 503}, answers
    assert "write-ahead log failed, stopping" in text
    assert "Traceback" not in text, text
