"""``memory``: resident memory per membership of the generated state.

Measured in a fresh subprocess so nothing else the parent did is in the figure: RSS after the
imports, then after building the state (op batches of 100k channels bound the transient op
lists), a full ``gc.collect()`` and ``malloc_trim(0)`` (which hands freed heap back to the OS, so
the figure is what the state keeps, not what building it touched). Also reported: RSS without the
trim, peak RSS (VmHWM), and the same per subscriber (memberships also count whitelist and
blacklist entries). The parent process only starts the child and reads its JSON line.
"""

from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys
from typing import Any

from bench.common import Record, log, new_record, table
from bench.gen import Shape
from server.spawn import rss_bytes


def _peak_rss() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _malloc_trim() -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.malloc_trim(0)
    return True


def child(channels: int, members: int) -> dict[str, Any]:
    """Runs in the fresh subprocess: build, measure, return the figures."""
    from bench.gen import generate, memberships

    gc.collect()
    before = rss_bytes()
    state = generate(Shape(channels=channels, members=members))
    gc.collect()
    after_raw = rss_bytes()
    trimmed = _malloc_trim()
    after = rss_bytes()
    counts = state.counts()
    n = memberships(state)
    grown = after - before
    return {
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_after_untrimmed_bytes": after_raw,
        "peak_rss_bytes": _peak_rss(),
        "malloc_trim": trimmed,
        "state_bytes": grown,
        "channels": counts["channels"],
        "subscribers": counts["subscribers"],
        "memberships": n,
        "bytes_per_membership": grown / n if n else 0.0,
        "bytes_per_membership_untrimmed": (after_raw - before) / n if n else 0.0,
        "bytes_per_subscriber": grown / counts["subscribers"] if counts["subscribers"] else 0.0,
        "bytes_per_channel": grown / counts["channels"] if counts["channels"] else 0.0,
    }


def run(shape: Shape, quick: bool) -> Record:
    rec = new_record("memory", quick, shape.as_params())
    log(f"memory: building {shape.channels:,} channels x {shape.members} in a fresh process")
    code = ("import json, sys; from bench.memory import child; "
            "print(json.dumps(child(int(sys.argv[1]), int(sys.argv[2]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(shape.channels), str(shape.members)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        rec["error"] = f"child failed ({proc.returncode}): {proc.stderr[-2000:]}"
        return rec
    rec["results"] = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["notes"].append("users = channels*members/10 interned uid strings shared by ~10 channels; "
                        "uid strings are part of the figure")
    return rec


def print_table(rec: Record, out: Any = None) -> None:
    if rec.get("error"):
        print(f"memory: {rec['error']}", file=out or sys.stdout)
        return
    r = rec["results"]
    mb = 1024 * 1024
    rows = [
        ("RSS before / after (MiB)", f"{r['rss_before_bytes'] / mb:,.1f} / "
                                     f"{r['rss_after_bytes'] / mb:,.1f}"),
        ("state (MiB)", r["state_bytes"] / mb),
        ("peak RSS while building (MiB)", r["peak_rss_bytes"] / mb),
        ("memberships (subs + wl + bl)", r["memberships"]),
        ("bytes per membership", r["bytes_per_membership"]),
        ("bytes per membership, no malloc_trim", r["bytes_per_membership_untrimmed"]),
        ("bytes per subscriber", r["bytes_per_subscriber"]),
        ("bytes per channel", r["bytes_per_channel"]),
    ]
    table(f"memory: {r['channels']:,} channels ({rec['params']['channels']:,} groups x "
          f"{rec['params']['members']} members), fresh subprocess",
          ("what", "value"), rows, out)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    channels = args.channels or (100_000 if quick else 1_000_000)
    return run(Shape(channels=channels, members=args.members), quick)
