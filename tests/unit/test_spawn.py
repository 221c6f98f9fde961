"""server/spawn.py: the one child-process wrapper the tests and the benchmarks start servers with.

The children here are tiny Python programs, so each case shows one behaviour of the wrapper
itself; ``roster serve`` through it is what the end-to-end suites do all day.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.spawn import (
    Child,
    ChildError,
    RosterChild,
    free_port,
    roster_command,
    with_nofile_limit,
)

READY = ("import time; print('noise'); "
         "print('listening on http://127.0.0.1:1234/ ok', flush=True)")


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_start_returns_at_the_ready_line_with_its_url() -> None:
    code = READY + "; time.sleep(60)"
    with Child(python(code), name="toy") as child:
        assert child.url == "http://127.0.0.1:1234/"
        assert child.running() and child.startup_s > 0
        assert child.text().splitlines()[0] == "noise"
        assert child.rss() > 0
    # the context manager's exit stopped it with SIGTERM
    assert child.wait() == -signal.SIGTERM and not child.running()


def test_a_child_that_exits_before_its_line_raises_with_its_output() -> None:
    child = Child(python("print('cannot bind'); raise SystemExit(3)"), name="toy")
    with pytest.raises(ChildError, match=r"toy did not start \(exited with 3\):\ncannot bind"):
        child.start()


def test_a_child_that_never_prints_the_line_is_killed_at_the_deadline() -> None:
    child = Child(python("import time; time.sleep(60)"), name="mute", timeout=0.2)
    with pytest.raises(ChildError, match=r"not ready in 0.2 s"):
        child.start()
    assert child.wait(10) == -signal.SIGKILL


def test_stop_times_out_and_leaves_the_child_for_close_to_kill() -> None:
    ignore_term = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('listening on http://x', flush=True); time.sleep(60)")
    child = Child(python(ignore_term), stop_timeout=0.2).start()
    with pytest.raises(subprocess.TimeoutExpired):
        child.stop()
    assert child.running()
    assert child.close() == -signal.SIGKILL


def test_close_of_a_child_never_started_is_none() -> None:
    assert Child(python("pass")).close() is None


def test_a_named_log_holds_the_output_and_a_restart_starts_it_afresh(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "toy.log"
    counter = tmp_path / "runs"
    code = (f"import pathlib; p = pathlib.Path({str(counter)!r}); "
            "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
            "print(f'run {n}'); print('listening on http://x', flush=True)")
    child = Child(python(code), log_path=log)
    child.start()
    assert child.wait(10) == 0 and "run 1" in log.read_text()
    child.start()
    assert child.wait(10) == 0
    assert "run 2" in child.text() and "run 1" not in child.text()


def test_ready_none_returns_at_once() -> None:
    child = Child(python("import time; time.sleep(60)"), ready=None, stop_timeout=10)
    with child:
        assert child.running() and child.url == "" and child.startup_s == 0.0


def test_a_ready_pattern_without_a_group_leaves_the_url_empty() -> None:
    with Child(python(READY + "; time.sleep(60)"), ready=re.compile("noise")) as child:
        assert child.url == ""


def test_roster_child_finds_both_listeners(tmp_path: Path) -> None:
    with RosterChild(tmp_path / "data", "--fsync", "none") as roster:
        assert roster.url.startswith("http://127.0.0.1:")
        assert roster.resp is not None and roster.resp[0] == "127.0.0.1"
        # args are read at each start: the restart serves without a RESP listener
        roster.stop()
        roster.args += ["--resp-port", "off"]
        roster.start()
        assert roster.resp is None
    assert roster.wait() == 0


def test_free_port_is_bindable_and_below_the_ephemeral_range() -> None:
    port = free_port()
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
        assert 1024 <= port < int(f.read().split()[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_a_running_child_is_not_started_twice() -> None:
    with Child(python(READY + "; time.sleep(60)"), name="toy") as child:
        with pytest.raises(RuntimeError, match="toy is already running"):
            child.start()
        assert child.running()


def test_with_nofile_limit_runs_the_server_at_that_limit(tmp_path: Path) -> None:
    cmd = with_nofile_limit(roster_command(tmp_path / "data", "--version"), 64, 128)
    assert cmd[1] == "-c" and cmd[-1] == "--version"
    with pytest.raises(ValueError, match="not a python -m server command"):
        with_nofile_limit(["redis-server", "--port", "0"], 64)
    probe = [sys.executable, "-c", cmd[2].replace(
        "runpy.run_module('server', run_name='__main__', alter_sys=True)",
        "print(resource.getrlimit(resource.RLIMIT_NOFILE))")]
    assert subprocess.run(probe, capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip() == "(64, 128)"
