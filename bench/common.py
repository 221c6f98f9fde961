"""What every sub-command shares: machine facts, the result record, the printed table.

A *record* is a plain dict that ``--json`` prints as one JSON document::

    {"bench": "decide", "quick": false, "started": "...", "machine": {...},
     "params": {...}, "results": {...}, "notes": [...]}

``results`` holds only numbers, strings and nested dicts of them, so a later run can be compared
with a plain ``jq``. The table is for people and goes to stdout, or to stderr under ``--json``
so that stdout stays one parseable document.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

Record = dict[str, Any]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def source_version() -> dict[str, Any]:
    """The commit measured, and whether server/ or wal/ had uncommitted edits at the time (the
    servers run from the work tree, so such edits are part of what was measured)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "server", "wal",
                                        "bench").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "dirty": dirty}


def machine() -> dict[str, Any]:
    """Facts that decide whether two records are comparable (and how noisy this one was)."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "usable_cores": usable,
        "mem_gib": mem_total_gib(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "source": source_version(),
    }


def new_record(bench: str, quick: bool, params: dict[str, Any]) -> Record:
    return {
        "bench": bench,
        "quick": quick,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": params,
        "results": {},
        "notes": [],
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:,.2f}"
        return f"{value:.3g}"
    return str(value)


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]],
          out: TextIO | None = None) -> None:
    """Print a plain aligned table (first column left, the rest right)."""
    stream = out if out is not None else sys.stdout
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in header]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [c.rjust(widths[i + 1]) for i, c in enumerate(row[1:])]
        return "  ".join(parts).rstrip()

    print(f"\n{title}", file=stream)
    print(line(list(header)), file=stream)
    print("  ".join("-" * w for w in widths), file=stream)
    for row in cells:
        print(line(row), file=stream)
    stream.flush()


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def log(message: str) -> None:
    """Progress lines go to stderr so they never mix with a --json document."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
