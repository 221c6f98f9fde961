"""Shared by the crash tests: a real server into a crash, then recovery checked two ways."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.crash.oracle import Settled, Workload
from tests.server_process import ServerProcess
from wal.failpoints import ENV_VAR

#: how long a server may take to die by itself once it hit a failpoint or a log error
DIE_TIMEOUT_S = 60.0


@contextmanager
def server(data: Path, *args: str, failpoints: str | None = None) -> Iterator[ServerProcess]:
    """A started ``roster serve`` (``ROSTER_FAILPOINTS`` armed if given), killed if the test
    leaves it running."""
    env = {ENV_VAR: failpoints} if failpoints is not None else {ENV_VAR: ""}
    proc = ServerProcess(data, *args, env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


def recovered_and_checked(data: Path, workload: Workload) -> Settled:
    """After a crash: recover a copy in-process and match it against what the writers sent,
    then restart the real server (its own recovery) and read the same state over HTTP."""
    settled = workload.settle_offline(data)
    with server(data, "--fsync", "always") as proc:
        workload.check_http(proc.url)
        with httpx.Client(base_url=proc.url, verify=False, timeout=30) as c:
            assert c.get("/health").json()["lsn"] == settled.last_lsn
        assert proc.stop() == 0, proc.text()
    return settled


def post(url: str, path: str) -> httpx.Response:
    with httpx.Client(base_url=url, verify=False, timeout=30) as c:
        return c.post(path)
