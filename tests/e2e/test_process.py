"""The process seen from outside: the listening line and a clean SIGTERM/SIGINT while idle."""

from __future__ import annotations

import json
import re
import signal
import socket
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, ok, running, stop_within
from tests.server_process import wait_until

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
STOP_BOUND_S = 10.0
KEEP_ALIVE_STOP_BOUND_S = 5.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_stop_exits_0_quickly(tmp_path: Path, sig: signal.Signals) -> None:
    with running(tmp_path / "data") as proc:
        with client_for(proc.url, TOKEN) as c:
            ok(c, "/channel", {"channel_id": "g", "channel_type": 2})
        code = stop_within(proc, STOP_BOUND_S, sig)
    assert code == 0, proc.text()
    # the port is closed afterwards
    with pytest.raises(httpx.TransportError), client_for(proc.url, timeout=2) as c:
        c.get("/health")


def test_idle_keep_alive_connection_does_not_delay_sigterm(tmp_path: Path) -> None:
    """A gateway's pooled connection that is idle is no in-flight request: SIGTERM
    must not wait for the client to hang up (hypercorn's graceful_timeout is 10 s)."""
    with running(tmp_path / "data") as proc, client_for(proc.url, TOKEN) as c:
        ok(c, "/channel", {"channel_id": "g", "channel_type": 2})  # connection now idle, open
        code = stop_within(proc, KEEP_ALIVE_STOP_BOUND_S)
    assert code == 0, proc.text()


def test_listening_line_contains_the_bound_address(tmp_path: Path) -> None:
    with running(tmp_path / "data") as proc:
        lines = [ln for ln in proc.text().splitlines() if "roster: listening on" in ln]
        assert len(lines) == 1, proc.text()
        m = re.search(r"http://(127\.0\.0\.1):(\d+)", lines[0])
        assert m is not None, lines[0]
        port = int(m.group(2))
        assert port != 0  # --port 0: the line says which port was really bound
        with client_for(f"http://127.0.0.1:{port}", keep_alive=False, timeout=5) as c:
            r = c.get("/health")
            assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
def test_non_loopback_bind_without_token_warns(tmp_path: Path, token: str | None) -> None:
    # ServerProcess passes --host 127.0.0.1 first; a later --host wins
    with running(tmp_path / "data", "--host", "0.0.0.0", token=token) as proc:
        port = int(proc.url.rsplit(":", 1)[1])
        with client_for(f"http://127.0.0.1:{port}", token, keep_alive=False) as c:
            assert c.get("/health").status_code == 200
        text = proc.text()
    warned = [ln for ln in text.splitlines()
              if "warning" in ln.lower() and "token" in ln.lower()]
    if token is None:
        assert warned, text
    else:
        assert not warned, text


def test_version_in_the_listening_line_health_and_openapi(tmp_path: Path) -> None:
    with PYPROJECT.open("rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    with running(tmp_path / "data") as proc, client_for(proc.url, TOKEN) as c:
        [line] = [ln for ln in proc.text().splitlines() if "roster: listening on" in ln]
        assert f"(version {expected}, data " in line, line
        assert c.get("/health").json()["version"] == expected
        assert c.get("/openapi.json").json()["info"]["version"] == expected


def test_repeated_signals_during_the_drain(tmp_path: Path) -> None:
    """SIGTERM, then SIGTERM and SIGINT again while a request is still in flight: each repeat is
    logged once, the request is still answered, and the exit is the clean 0."""
    body = json.dumps({"channel_id": "slow", "channel_type": 2}).encode()
    head = (f"POST /channel HTTP/1.1\r\nhost: x\r\ntoken: {TOKEN}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "expect: 100-continue\r\n\r\n").encode()
    with running(tmp_path / "data") as proc:
        assert proc.proc is not None
        url = urlsplit(proc.url)
        with socket.create_connection((url.hostname, url.port), timeout=30) as s:
            s.sendall(head)
            # the 100 comes once the request is handed to the app: it is in flight from here
            assert s.recv(100).startswith(b"HTTP/1.1 100 "), "no 100 Continue"
            s.sendall(body[:5])
            proc.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: "received SIGTERM: finishing" in proc.text(), 30, "first SIGTERM")
            proc.proc.send_signal(signal.SIGTERM)
            proc.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: "received SIGTERM while stopping" in proc.text(), 30, "repeat")
            proc.proc.send_signal(signal.SIGINT)
            wait_until(lambda: "received SIGINT while stopping" in proc.text(), 30, "SIGINT")
            s.sendall(body[5:])
            answer = b""
            for _ in range(100):  # until the server closes (it is stopping), bounded
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        code = proc.wait()
        text = proc.text()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert code == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.count("received SIGTERM while stopping") == 1, text
    assert text.count("received SIGINT while stopping") == 1, text
