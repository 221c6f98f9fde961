"""State survives restarts (every acknowledged write, temporary channels included):
write through many routes, stop the server (SIGTERM → exit 0, or SIGKILL under --fsync always),
start a new process on the same data directory and read everything back equal."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TOKEN
from tests.e2e.helpers import (
    assert_error,
    client_for,
    ok,
    reason_of,
    running,
    snapshot,
    system_uids,
)

G, G5, GDEL, P_OWNER, P_OTHER, TMP = "dur_g", "dur_g5", "dur_gone", "dur_owner", "dur_other", \
    "dur_tmp"
USERS = ["alice", "bob", "carol", "dave", "sys1", "sys2"]


def write_everything(c: httpx.Client) -> None:
    ok(c, "/channel", {"channel_id": G, "channel_type": 2, "large": 1,
                       "subscribers": ["alice", "bob", "carol", "zed"]})
    ok(c, "/channel/info", {"channel_id": G, "channel_type": 2, "send_ban": 1})
    ok(c, "/channel/subscriber_remove", {"channel_id": G, "channel_type": 2,
                                         "subscribers": ["zed"]})
    ok(c, "/channel/subscriber_add", {"channel_id": G, "subscribers": ["dave"]})
    ok(c, "/channel/whitelist_add", {"channel_id": G, "channel_type": 2,
                                     "uids": ["alice", "x1", "x2"]})
    ok(c, "/channel/whitelist_remove", {"channel_id": G, "channel_type": 2, "uids": ["x2"]})
    ok(c, "/channel/blacklist_set", {"channel_id": G, "channel_type": 2, "uids": ["carol", "y"]})
    ok(c, "/channel", {"channel_id": G5, "channel_type": 5, "subscribers": ["alice", "bob"]})
    ok(c, "/channel", {"channel_id": G5, "channel_type": 5, "subscribers": ["bob"], "reset": 1})
    ok(c, "/channel/whitelist_set", {"channel_id": G5, "channel_type": 5, "uids": ["bob"]})
    ok(c, "/channel/whitelist_set", {"channel_id": G5, "channel_type": 5, "uids": []})
    ok(c, "/channel/blacklist_add", {"channel_id": G5, "channel_type": 5, "uids": ["q"]})
    ok(c, "/channel/blacklist_remove_all", {"channel_id": G5, "channel_type": 5})
    ok(c, "/channel", {"channel_id": GDEL, "channel_type": 2, "subscribers": ["alice"]})
    ok(c, "/channel/delete", {"channel_id": GDEL, "channel_type": 2})
    ok(c, "/channel/blacklist_add", {"channel_id": P_OWNER, "channel_type": 1, "uids": ["bob"]})
    ok(c, "/channel/whitelist_add", {"channel_id": P_OWNER, "channel_type": 1,
                                     "uids": ["alice", "carol"]})
    ok(c, "/channel/info", {"channel_id": P_OWNER, "channel_type": 1, "allow_stranger": 0})
    ok(c, "/channel", {"channel_id": P_OTHER, "channel_type": 1, "send_ban": 1})
    ok(c, "/tmpchannel/subscriber_set", {"channel_id": TMP, "uids": ["alice", "bob"]})
    ok(c, "/tmpchannel/subscriber_set", {"channel_id": TMP, "uids": ["carol", "dave"],
                                         "ttl": 3600})
    ok(c, "/user/systemuids_add", {"uids": ["sys1", "sys2", "sys3"]})
    ok(c, "/user/systemuids_remove", {"uids": ["sys3"]})


def write_more(c: httpx.Client) -> None:
    """Writes after a restart: they must land after the recovered log, not over it."""
    ok(c, "/channel/subscriber_add", {"channel_id": G, "channel_type": 2,
                                      "subscribers": ["erin"]})
    ok(c, "/channel/info", {"channel_id": G, "channel_type": 2, "send_ban": 0})
    ok(c, "/channel/delete", {"channel_id": G5, "channel_type": 5})
    ok(c, "/user/systemuids_remove", {"uids": ["sys2"]})
    ok(c, "/channel/info", {"channel_id": P_OTHER, "channel_type": 1, "send_ban": 0})


def read_everything(c: httpx.Client) -> dict[str, Any]:
    channels = [(G, 2), (G5, 5), (GDEL, 2), (P_OWNER, 1), (P_OTHER, 1), (TMP, 8), (G, 5)]
    checks = [{"from_uid": u, "channel_id": cid, "channel_type": t}
              for u in [*USERS, P_OTHER] for cid, t in channels]
    r = c.post("/permission/check_batch", json={"checks": checks})
    assert r.status_code == 200, r.text
    return {
        "channels": {f"{cid}/{t}": snapshot(c, cid, t) for cid, t in channels},
        "system_uids": system_uids(c),
        "decisions": [reason_of(x) for x in r.json()["results"]],
        "lsn": c.get("/health").json()["lsn"],
    }


def _expected_after_first_writes(state: dict[str, Any]) -> None:
    """Spot checks that the writes did what they should (so 'equal after restart' means much)."""
    g = state["channels"][f"{G}/2"]
    assert g["subscribers"] == ["alice", "bob", "carol", "dave"]
    assert g["whitelist"] == ["alice", "x1"] and g["blacklist"] == ["carol", "y"]
    assert (g["info"]["large"], g["info"]["send_ban"]) == (1, 1)
    assert state["channels"][f"{G5}/5"]["subscribers"] == ["bob"]
    assert state["channels"][f"{GDEL}/2"] is None
    assert state["channels"][f"{TMP}/8"]["subscribers"] == ["carol", "dave"]
    assert state["channels"][f"{G}/5"] is None
    assert {"sys1", "sys2"} <= set(state["system_uids"]) and "sys3" not in state["system_uids"]
    assert state["lsn"] > 0


def test_state_survives_sigterm_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running(data) as proc:
        with client_for(proc.url, TOKEN) as c:
            write_everything(c)
            before = read_everything(c)
        _expected_after_first_writes(before)
        assert proc.stop(signal.SIGTERM, timeout=15) == 0, proc.text()

    with running(data) as proc:
        with client_for(proc.url, TOKEN) as c:
            assert read_everything(c) == before
            write_more(c)
            after_more = read_everything(c)
        assert after_more["lsn"] > before["lsn"]
        assert after_more["channels"][f"{G5}/5"] is None
        assert proc.stop(signal.SIGTERM, timeout=15) == 0, proc.text()

    with running(data) as proc, client_for(proc.url, TOKEN, keep_alive=False) as c:
        assert read_everything(c) == after_more


def test_state_survives_sigkill_with_fsync_always(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running(data, "--fsync", "always") as proc, client_for(proc.url, TOKEN) as c:
        write_everything(c)
        before = read_everything(c)
        _expected_after_first_writes(before)
        proc.kill()  # SIGKILL: every acknowledged write must already be on disk
        assert proc.proc is not None and proc.proc.returncode == -signal.SIGKILL

    with running(data, "--fsync", "always") as proc, client_for(proc.url, TOKEN) as c:
        assert read_everything(c) == before
        write_more(c)
        after_more = read_everything(c)
        proc.kill()

    with running(data, "--fsync", "always") as proc, \
            client_for(proc.url, TOKEN, keep_alive=False) as c:
        assert read_everything(c) == after_more
        # and the restarted server still refuses what it should
        assert_error(c.post("/channel/whitelist_add", json={"channel_id": GDEL,
                                                            "channel_type": 2, "uids": ["a"]}),
                     404)
