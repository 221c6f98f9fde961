"""Start-up of a cluster node when NATS cannot be used: one line, exit code 3 (wait and retry)."""

from __future__ import annotations

from pathlib import Path

from bench.procs import free_port
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
