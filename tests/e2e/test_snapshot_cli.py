"""``roster snapshot`` finds a real server the way ``roster serve`` was configured: flags >
``ROSTER_*`` environment > ``--config`` file, token included; errors are one line."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, ok, running
from tests.server_process import ServerProcess, run_cli


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client must not pick up a ROSTER_* of the environment the tests run in (run_cli
    passes os.environ on)."""
    for name in ("ROSTER_HOST", "ROSTER_PORT", "ROSTER_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def snapshot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("snapshot", *args, env=env, timeout=120)


def port_of(proc: ServerProcess) -> int:
    port = urlsplit(proc.url).port
    assert port is not None
    return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running(tmp_path / "data") as proc, client_for(proc.url, TOKEN) as c:
        ok(c, "/channel", {"channel_id": "g", "channel_type": 2})
        yield proc


def snapshotted(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done
    answer = json.loads(done.stdout)
    assert answer["status"] == "ok" and answer["lsn"] >= 1, answer
    return dict(answer)


def one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done
    assert done.stdout == "" and "Traceback" not in done.stderr, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("roster: "), done.stderr
    return lines[0]


def test_from_the_environment(server: ServerProcess) -> None:
    snapshotted(snapshot(env={"ROSTER_PORT": str(port_of(server)), "ROSTER_TOKEN": TOKEN}))
    assert list(server.data_dir.glob("snap/*"))


def test_from_the_config_file(server: ServerProcess, tmp_path: Path) -> None:
    # 0.0.0.0 is where a server listens, not where to connect: the client goes to the loopback
    toml = tmp_path / "roster.toml"
    toml.write_text(f'host = "0.0.0.0"\nport = {port_of(server)}\ntoken = "{TOKEN}"\n')
    snapshotted(snapshot("--config", str(toml)))


def test_flags_win_over_the_environment_and_the_file(server: ServerProcess,
                                                     tmp_path: Path) -> None:
    toml = tmp_path / "roster.toml"
    toml.write_text('port = 1\ntoken = "wrong-token"\n')
    snapshotted(snapshot("--config", str(toml), "--port", str(port_of(server)),
                         "--token", TOKEN, env={"ROSTER_PORT": "2"}))


def test_url_without_a_scheme(server: ServerProcess) -> None:
    snapshotted(snapshot("--url", f"127.0.0.1:{port_of(server)}", "--token", TOKEN))


def test_wrong_token_is_one_line(server: ServerProcess) -> None:
    line = one_error_line(snapshot("--port", str(port_of(server)), "--token", "not-it"), 1)
    assert line.startswith(f"roster: snapshot refused by http://127.0.0.1:{port_of(server)}: "
                           "403 "), line
    assert "--token" in line and "ROSTER_TOKEN" in line, line
    line = one_error_line(snapshot("--port", str(port_of(server))), 1)
    assert "403" in line and "no token was sent" in line, line


def test_unreachable_is_one_line() -> None:
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        line = one_error_line(snapshot("--port", str(port), "--token", TOKEN), 1)
    assert line.startswith(f"roster: cannot reach the server at http://127.0.0.1:{port}: "), line


@pytest.mark.parametrize(("args", "said"), [
    (("--url", "ftp://127.0.0.1:5001"), "expected http://host:port"),
    (("--url", "127.0.0.1:port"), "is not a URL"),
    (("--port", "http"), "invalid port"),
])
def test_invalid_configuration_is_exit_2(args: tuple[str, ...], said: str) -> None:
    line = one_error_line(snapshot(*args), 2)
    assert line.startswith("roster: invalid configuration: ") and said in line, line
