"""Smoke test of the benchmark harness at tiny sizes: the JSON records have the keys the
RESULTS.md reading relies on, and the figures are positive. Never a timing assertion: benchmarks
do not gate CI (docs/architecture.md, "How we test")."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from bench.cli import main


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def check_common(rec: dict[str, Any], bench: str) -> None:
    assert rec["bench"] == bench
    assert not rec.get("error")
    for key in ("cpu", "cores", "python"):
        assert rec["machine"][key]
    assert rec["machine"]["cores"] >= 1


def test_decide_record(capsys: pytest.CaptureFixture[str]) -> None:
    rec = run_json(capsys, "decide", "--channels", "300", "--members", "3", "--checks", "2000")
    check_common(rec, "decide")
    res = rec["results"]
    assert res["state_channels"] > 0
    assert res["memberships"] > 0
    for pattern in ("hot", "random"):
        figures = res[pattern]
        for key in ("median_ns", "p90_ns", "p99_ns", "max_ns"):
            assert figures[key] >= 0  # timer overhead is subtracted, so 0 is possible
        assert figures["mean_ns"] > 0
        assert figures["checks_per_s"] > 0


def test_memory_record(capsys: pytest.CaptureFixture[str]) -> None:
    rec = run_json(capsys, "memory", "--channels", "2000", "--members", "5")
    check_common(rec, "memory")
    res = rec["results"]
    assert res["memberships"] > 0
    assert res["rss_after_bytes"] > res["rss_before_bytes"] > 0
    for key in ("bytes_per_membership", "bytes_per_subscriber", "bytes_per_channel"):
        assert res[key] > 0


def test_wal_record(capsys: pytest.CaptureFixture[str]) -> None:
    rec = run_json(capsys, "wal", "--channels", "300", "--members", "3", "--records", "400",
                   "--seconds", "0.05", "--writers", "1,4", "--policies", "none")
    check_common(rec, "wal")
    res = rec["results"]
    for writers in ("1", "4"):
        append = res["appends"]["none"][writers]
        assert append["acks_per_s"] > 0
        assert append["records_per_batch"] >= 1
    assert res["replay_apply"]["records"] == 400
    assert res["replay_apply"]["records_per_s"] > 0
    for variant in ("gc_on", "gc_frozen"):
        snap = res["snapshot"][variant]
        assert snap["seconds"] > 0
        assert snap["bytes"] > 0
        assert snap["max_lag_ms"] >= 0
    assert res["restart"]["channels"] > 0
    assert res["restart"]["seconds"] > 0


def test_uid_table_snapshot_prototype_loads_to_the_same_state() -> None:
    from bench.gen import Shape, generate
    from bench.proposals import UidTableLoader, uid_table_chunks
    from server.state import State

    state = generate(Shape(channels=700, members=4, users=300))
    loaded = State()
    loader = UidTableLoader(loaded)
    for chunk in uid_table_chunks(state, rows_per_chunk=64, uids_per_chunk=50):
        loader.load_chunk(chunk)
    assert loaded.as_plain() == state.as_plain()
    assert loaded.counts() == state.counts()


RESP_ROWS = ("resp_check_1", "resp_check_64", "resp_check_64_hot", "resp_check_p100",
             "resp_checkm_1000", "http_check_64", "http_check_batch_1000",
             "resp_wl_set_always_64", "resp_wl_set_none_64", "http_whitelist_set_always_64")


@pytest.mark.skipif(shutil.which("redis-benchmark") is None,
                    reason="redis-benchmark not installed (apt-get install -y redis-server)")
def test_resp_record(capsys: pytest.CaptureFixture[str]) -> None:
    rec = run_json(capsys, "resp", "--quick", "--channels", "300", "--members", "3",
                   "--duration", "0.05", "--client", "trio")
    check_common(rec, "resp")
    res = rec["results"]
    assert res["tools"]["redis-benchmark"]
    assert res["probe"]["agree"]
    assert res["probe"]["check_member"] == 1
    for name in ("none", "always"):
        assert res["servers"][name]["resp_port"] > 0
    rows = res["rows"]
    for key in RESP_ROWS:
        row = rows[key]
        assert "error" not in row, row
        assert row["rate"] > 0
        assert row["access"] in ("random", "hot")
    assert rows["resp_checkm_1000"]["unit"] == "checks/s"
    ratios = res["ratios"]
    for name in ("resp_check_64_over_http_check_64",
                 "resp_wl_set_always_64_over_http_whitelist_set_always_64",
                 "resp_wl_set_always_64_over_resp_wl_set_none_64",
                 "resp_checkm_1000_over_http_check_batch_1000"):
        assert ratios[name]["value"] > 0
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        assert rows["redis_sismember_64"]["rate"] > 0
        for name in ("resp_check_64_over_redis_sismember_64",
                     "resp_check_p100_over_redis_sismember_p100"):
            assert ratios[name]["value"] > 0
            assert ratios[name]["goal"] > 0


@pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
                    reason="redis-server/redis-cli not installed (apt-get install -y redis-server)")
def test_restart_record(capsys: pytest.CaptureFixture[str]) -> None:
    rec = run_json(capsys, "restart", "--quick", "--channels", "300", "--members", "3",
                   "--tail-records", "20")
    check_common(rec, "restart")
    res = rec["results"]
    assert res["build"]["tail_records"] == 20
    assert res["build"]["template"]["snapshot_bytes"] > 0
    assert res["build"]["redis"]["rdb_bytes"] > 0
    roster = res["roster"]["best"]
    for key in ("start_to_health_s", "start_to_listening_s", "recovery_s", "rss_bytes"):
        assert roster[key] > 0
    assert roster["health"]["status"] == "ok"
    assert roster["recovered_lsn"] == 20
    assert roster["records_replayed"] == 20
    assert len(res["roster"]["rounds_s"]) == 1
    redis = res["redis"]["best"]
    assert redis["start_to_loaded_s"] > 0
    assert redis["rss_bytes"] > 0
    assert redis["dbsize"] == res["build"]["redis"]["dbsize"] > 0
    assert res["roster_over_redis"] > 0
    for goal in ("seconds", "ratio"):
        assert isinstance(res["goals"][goal]["met"], bool)
        assert res["goals"][goal]["goal"] > 0
    assert res["goals"]["applies"] is False
