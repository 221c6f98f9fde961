"""The process seen from outside: the listening line and a clean SIGTERM/SIGINT while idle."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKEN
from tests.server_process import ServerProcess

STOP_BOUND_S = 10.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_stop_exits_0_quickly(tmp_path: Path, sig: signal.Signals) -> None:
    proc = ServerProcess(tmp_path / "data", "--token", TOKEN).start()
    try:
        with proc.client(TOKEN) as c:
            assert c.get("/health").status_code == 200
        started = time.monotonic()
        code = proc.stop(sig, timeout=STOP_BOUND_S + 5)
        elapsed = time.monotonic() - started
    finally:
        proc.kill()
    assert code == 0, proc.text()
    assert elapsed < STOP_BOUND_S, f"took {elapsed:.1f} s to stop"
    # the port is closed afterwards
    with pytest.raises(httpx.TransportError), httpx.Client(base_url=proc.url, timeout=2) as c:
        c.get("/health")


def test_listening_line_contains_the_bound_address(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", "--token", TOKEN) as proc:
        lines = [ln for ln in proc.text().splitlines() if "roster: listening on" in ln]
        assert len(lines) == 1, proc.text()
        m = re.search(r"http://(127\.0\.0\.1):(\d+)", lines[0])
        assert m is not None, lines[0]
        port = int(m.group(2))
        assert port != 0  # --port 0: the line says which port was really bound
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            r = c.get("/health")
            assert r.status_code == 200 and r.json()["status"] == "ok"
