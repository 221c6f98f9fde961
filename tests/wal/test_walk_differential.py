"""Differential: the shared walker (wal/walk.py, through ``wal.recover``) against the frozen walk
recovery had before it (tests/wal/reference_walk.py), on random logs with random damage.

Both recover a byte-identical copy of the same data directory, in strict and in truncate mode.
They must agree on everything observable: the records handed to ``apply_record`` (lsn and
object, in order), the snapshot chunks loaded, the verdict (clean, torn tail, or corruption with
file, offset and reason), the report, the messages, and every file left in the directory.
"""

from __future__ import annotations

import random
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wal import reference_walk
from wal import CorruptLogError, SnapshotError, pack, recover
from wal.framing import (
    RT_OPS,
    RT_SNAP_CHUNK,
    RT_SNAP_TRAILER,
    SNAPSHOT_MAGIC,
    encode_header,
    encode_record,
)
from wal.layout import segment_path, snapshot_path

Mode = Literal["strict", "truncate"]

# -- building a random data directory ---------------------------------------------------------


@dataclass
class Case:
    seed: int
    sizes: list[int]
    snapshot: Literal["none", "valid", "broken", "two"]
    snapshot_at: int
    damages: list[tuple[str, int, int, int]]  # how, segment index, position, byte/bit


def _random_obj(rng: random.Random, lsn: int) -> object:
    kind = rng.randrange(4)
    if kind == 0:
        return [lsn, "x" * rng.randrange(0, 40)]
    if kind == 1:
        return (1_700_000_000_000 + lsn,
                [("wl_set", f"g{rng.randrange(50)}", 2,
                  [f"u{rng.randrange(1000)}" for _ in range(rng.randrange(0, 6))])])
    if kind == 2:
        return {"lsn": lsn, "blob": rng.randbytes(rng.randrange(0, 64)), "f": rng.random()}
    return [lsn, [rng.randrange(-(2**40), 2**40) for _ in range(rng.randrange(0, 8))], None, True]


def _snapshot_bytes(lsn: int, chunks: list[object]) -> bytes:
    buf = bytearray(encode_header(lsn, SNAPSHOT_MAGIC))
    crc = 0
    for index, chunk in enumerate(chunks):
        payload = pack(chunk)
        crc = zlib.crc32(payload, crc)
        buf += encode_record(index, RT_SNAP_CHUNK, payload)
    buf += encode_record(len(chunks), RT_SNAP_TRAILER, struct.pack("<QI", len(chunks), crc))
    return bytes(buf)


def _damage(buf: bytearray, how: str, position: int, value: int, rng: random.Random) -> bytes:
    at = position % (len(buf) + 1)
    if how == "truncate":
        del buf[at:]
    elif how == "zero":  # a zeroed sector-ish run
        buf[at : at + 512] = bytes(len(buf[at : at + 512]))
    elif how == "overwrite":
        junk = rng.randbytes(1 + value % 40)
        buf[at : at + len(junk)] = junk[: max(0, len(buf) - at)]
    elif how == "flip" and buf:
        buf[at % len(buf)] ^= 1 << (value % 8)
    elif how == "empty":
        buf.clear()
    return bytes(buf)


def build(root: Path, case: Case) -> None:
    """Write the case's data directory under ``root`` (deterministic in ``case``)."""
    rng = random.Random(case.seed)
    root.mkdir(parents=True)
    lsn = 1
    paths: list[Path] = []
    total = sum(case.sizes)
    for size in case.sizes:
        path = segment_path(root, lsn)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = bytearray(encode_header(lsn))
        for i in range(lsn, lsn + size):
            payload = pack(_random_obj(rng, i))
            if rng.random() < 0.03:  # a CRC-valid record that does not decode
                payload = b"\xc1"
            rtype = RT_OPS if rng.random() > 0.02 else 7
            wrong = rng.random() < 0.03  # a duplicate or out-of-order lsn
            buf += encode_record(i + rng.choice((-1, 1)) if wrong else i, rtype, payload)
        path.write_bytes(bytes(buf))
        paths.append(path)
        lsn += size
    for how, index, position, value in case.damages:
        if not paths:
            break
        path = paths[index % len(paths)]
        if how == "gap":  # a segment lost (retention or an operator)
            path.unlink(missing_ok=True)
            continue
        if not path.exists():
            continue
        path.write_bytes(_damage(bytearray(path.read_bytes()), how, position, value, rng))
    if rng.random() < 0.2:  # a half-written leftover, deleted at start
        (root / "wal").mkdir(exist_ok=True)
        (root / "wal" / "00000000000000000099.wal.tmp").write_bytes(b"half")
    if case.snapshot == "none":
        return
    (root / "snap").mkdir(parents=True, exist_ok=True)
    at = case.snapshot_at % (total + 1)
    lsns = [at] if case.snapshot != "two" else sorted({at, max(0, at - 3)})
    for snap_lsn in lsns:
        data = _snapshot_bytes(snap_lsn, [{"chunk": snap_lsn, "i": k} for k in range(3)])
        snapshot_path(root, snap_lsn).write_bytes(data)
    if case.snapshot in ("broken", "two"):
        newest = snapshot_path(root, lsns[-1])
        newest.write_bytes(_damage(bytearray(newest.read_bytes()), "flip",
                                   case.snapshot_at * 7, case.seed, rng))


# -- running one recovery and describing everything it did ------------------------------------


def run(recover_fn: Any, root: Path, mode: Mode) -> dict[str, Any]:
    records: list[tuple[int, object]] = []
    chunks: list[object] = []
    messages: list[str] = []
    outcome: dict[str, Any] = {}
    try:
        report = recover_fn(root, mode=mode, load_snapshot_chunk=chunks.append,
                            apply_record=lambda lsn, o: records.append((lsn, o)),
                            log=messages.append)
    except CorruptLogError as exc:
        outcome = {"verdict": "corrupt", "path": exc.path, "offset": exc.offset,
                   "reason": exc.reason}
    except SnapshotError as exc:
        outcome = {"verdict": "snapshot", "error": str(exc)}
    else:
        outcome = {"verdict": "torn" if report.torn_tail is not None else "clean",
                   "snapshot_lsn": report.snapshot_lsn, "last_lsn": report.last_lsn,
                   "records_replayed": report.records_replayed, "torn_tail": report.torn_tail,
                   "segments": report.segments, "messages": list(report.messages)}
    files = {str(p.relative_to(root)): p.read_bytes()
             for p in sorted(root.rglob("*")) if p.is_file()}
    return {"records": records, "chunks": chunks,
            "outcome": repr(outcome).replace(str(root), "<root>"),
            "messages": [m.replace(str(root), "<root>") for m in messages], "files": files,
            "verdict": outcome["verdict"]}


cases = st.builds(
    Case,
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 6), min_size=0, max_size=4),
    snapshot=st.sampled_from(["none", "valid", "broken", "two"]),
    snapshot_at=st.integers(0, 10_000),
    damages=st.lists(st.tuples(st.sampled_from(["truncate", "zero", "overwrite", "flip",
                                                "empty", "gap"]),
                               st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)),
                     max_size=2),
)


def _agree(case: Case) -> list[str]:
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("strict", "truncate"):
            old_root, new_root = Path(tmp) / f"old-{mode}", Path(tmp) / f"new-{mode}"
            build(old_root, case)
            build(new_root, case)
            old = run(reference_walk.recover, old_root, mode)
            new = run(recover, new_root, mode)
            # The replayed state (as the list of records applied), then the verdict with file,
            # offset and reason, then every side effect.
            assert new["records"] == old["records"]
            assert new["chunks"] == old["chunks"]
            assert new["outcome"] == old["outcome"]
            assert new["messages"] == old["messages"]
            assert new["files"] == old["files"]
            verdicts.append(new["verdict"])
    return verdicts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_new_walk_agrees_with_the_frozen_reference(case: Case) -> None:
    _agree(case)


def test_seeded_cases_reach_every_verdict() -> None:
    """A fixed sweep, so that every verdict is known to be compared (not only hoped for)."""
    rng = random.Random(20261203)
    seen: set[str] = set()
    hows = ["truncate", "zero", "overwrite", "flip", "empty", "gap"]
    for _ in range(120):
        case = Case(rng.randrange(2**32), [rng.randrange(0, 7) for _ in range(rng.randrange(5))],
                    rng.choice(["none", "valid", "broken", "two"]), rng.randrange(10_000),
                    [(rng.choice(hows), rng.randrange(4), rng.randrange(10_000),
                      rng.randrange(256)) for _ in range(rng.randrange(3))])
        seen.update(_agree(case))
    assert seen >= {"clean", "torn", "corrupt"}, seen
