"""Snapshot formats of the state engine: old snapshots keep loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.state import State
from wal.codec import unpack
from wal.snapshot import read_snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
V1 = FIXTURES / "snapshot_v1"


def json_plain(plain: dict[str, Any]) -> dict[str, Any]:
    """``State.as_plain()`` in the JSON form of ``tests/fixtures/snapshot_v1``."""
    channels = {f"{cid}|{ctype}": {k: sorted(v) if isinstance(v, set) else v
                                   for k, v in ch.items()}
                for (cid, ctype), ch in plain["channels"].items()}
    pres = plain["presence"]
    return {
        "system_uids": sorted(plain["system_uids"]),
        "channels": channels,
        "presence": {
            "subscriptions": sorted([*k, *v] for k, v in pres["subscriptions"].items()),
            "followers": sorted([*k, *v] for k, v in pres["followers"].items()),
            "devices": {u: {str(f): t for f, t in d.items()} for u, d in pres["devices"].items()},
        },
    }


def load_file(path: Path) -> State:
    state = State()
    for payload in read_snapshot(path).payloads:
        state.load_chunk(unpack(payload))
    return state


def test_v1_snapshot_fixture_loads() -> None:
    state = load_file(V1 / "snap" / "00000000000000000042.snap")
    expected = json.loads((V1 / "expected_as_plain.json").read_text(encoding="utf-8"))
    assert json_plain(state.as_plain()) == expected
    counts = state.counts()
    assert counts["channels"] == len(expected["channels"])
    assert counts["subscribers"] == sum(len(c["subscribers"])
                                        for c in expected["channels"].values())
    assert counts["whitelist"] == sum(len(c["whitelist"]) for c in expected["channels"].values())
    assert counts["blacklist"] == sum(len(c["blacklist"]) for c in expected["channels"].values())
