"""``roster wal inspect | verify | repair`` (wal/tools.py, wal/cli.py) on hand-damaged logs.

The tools must agree with recovery: the property test at the end holds inspect's verdict to what
a strict recover() does on the same randomly damaged log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings

from tests.wal.helpers import Built, obj, patch, run_recover, write_segment
from tests.wal.test_recovery_property import build, damage, damaged_logs
from wal import CorruptLogError, DataDirLock, list_snapshots, pack, write_snapshot
from wal import cli as wal_cli
from wal.framing import RT_SNAP_CHUNK, RT_SNAP_TRAILER, SNAPSHOT_MAGIC, encode_header, encode_record
from wal.layout import snapshot_path
from wal.tools import (
    EXIT_CLEAN,
    EXIT_NOT_A_DATA_DIR,
    EXIT_REFUSED,
    EXIT_REPAIRABLE,
    format_inspection,
    inspect,
    repair,
    to_json,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]


def fingerprint(data: Path) -> dict[str, str]:
    """Every file under ``data`` with a hash of its content (to prove a tool changed nothing)."""
    return {str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data.rglob("*")) if p.is_file()}


def two_segments(data: Path) -> tuple[Built, Built]:
    """Records 1..4 and 5..8, about 40 bytes each."""
    first = write_segment(data, 1, [obj(i, 20) for i in range(1, 5)])
    second = write_segment(data, 5, [obj(i, 20) for i in range(5, 9)])
    return first, second


def flag_only(data_dir: str | None, config_file: Path | None) -> Path:
    """The data dir resolution these tests need: --data-dir given (the server's is tested in
    tests/unit/test_cli.py)."""
    assert data_dir is not None and config_file is None
    return Path(data_dir)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = wal_cli.main(list(args), flag_only)
    out = capsys.readouterr()
    return code, out.out + out.err


# -- inspect / verify ----------------------------------------------------------------------------

def test_inspect_clean_log_with_snapshots(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    two_segments(tmp_path)
    trio.run(write_snapshot, tmp_path, 4, iter([{"kind": "meta"}, [1, 2]]))
    ins = inspect(tmp_path)
    assert ins.clean and ins.exit_code == EXIT_CLEAN and ins.locked_by is None
    assert [(s.first_lsn, s.last_lsn, s.records) for s in ins.segments] == [(1, 4, 4), (5, 8, 4)]
    assert all(s.bytes == s.valid_bytes == Path(s.path).stat().st_size for s in ins.segments)
    assert [(s.lsn, s.chunks, s.valid) for s in ins.snapshots] == [(4, 2, True)]
    assert (ins.snapshot_lsn, ins.last_lsn, ins.records) == (4, 8, 8)
    assert ins.last_lsn == run_recover(tmp_path).report.last_lsn

    code, text = cli(capsys, "inspect", "--data-dir", str(tmp_path))
    assert code == 0
    assert "00000000000000000005.wal  lsn 5..8  4 records" in text
    assert "00000000000000000004.snap  lsn 4" in text and "2 chunks  ok" in text
    code, text = cli(capsys, "verify", "--data-dir", str(tmp_path))
    assert code == 0 and text.startswith("ok: ") and "2 segment(s), 8 records" in text
    code, text = cli(capsys, "inspect", "--json", "--data-dir", str(tmp_path))
    doc = json.loads(text)
    assert code == 0 and doc["clean"] and doc["exit_code"] == 0 and doc["last_lsn"] == 8
    assert [s["records"] for s in doc["segments"]] == [4, 4]
    assert doc["snapshots"][0]["valid"] is True


def test_inspect_and_verify_change_nothing(tmp_path: Path) -> None:
    second = two_segments(tmp_path)[1].path
    patch(second, second.stat().st_size - 5, b"\xff\xff")  # a torn tail
    (tmp_path / "wal" / "00000000000000000009.wal.tmp").write_bytes(b"half")
    (tmp_path / "snap").mkdir()
    before = fingerprint(tmp_path)
    for _ in range(2):
        assert verify(tmp_path).exit_code == EXIT_REPAIRABLE
        inspect(tmp_path)
    assert fingerprint(tmp_path) == before
    assert not (tmp_path / "LOCK").exists()


def test_verify_torn_tail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second = two_segments(tmp_path)[1].path
    size = second.stat().st_size
    with second.open("ab") as f:
        f.write(encode_record(9, 1, pack(obj(9)))[:10])
    ins = verify(tmp_path)
    assert ins.exit_code == EXIT_REPAIRABLE and not ins.fatal
    [problem] = ins.problems
    assert (problem.kind, problem.path, problem.offset) == ("torn_tail", str(second), size)
    assert ins.segments[1].valid_bytes == size and ins.segments[1].damage is not None
    assert ins.last_lsn == 8
    code, text = cli(capsys, "verify", "--data-dir", str(tmp_path))
    assert code == EXIT_REPAIRABLE
    assert text.startswith("DAMAGED: torn tail: ") and f"{second} at offset {size}" in text


@pytest.mark.parametrize("where", ["first", "second"])
def test_verify_corruption_names_file_and_offset(tmp_path: Path, where: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    built = two_segments(tmp_path)[0 if where == "first" else 1]
    seg, offset = built.path, built.offsets[1]
    patch(seg, offset + 20, b"\x00")
    ins = verify(tmp_path)
    assert ins.exit_code == EXIT_REFUSED and ins.fatal
    problem = ins.problems[0]
    assert (problem.kind, problem.path, problem.offset) == ("corruption", str(seg), offset)
    with pytest.raises(CorruptLogError) as info:
        run_recover(tmp_path)
    assert (info.value.path, info.value.offset) == (problem.path, problem.offset)
    code, text = cli(capsys, "verify", "--data-dir", str(tmp_path))
    assert code == EXIT_REFUSED
    assert text.startswith("FAILED: CORRUPTION: ") and f"{seg} at offset {offset}" in text


def test_verify_gap_and_duplicate(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1), obj(2)])
    gap = write_segment(tmp_path, 4, [obj(4)])
    ins = verify(tmp_path)
    assert ins.fatal and "lsn gap: records 3..3" in ins.problems[0].reason
    assert ins.problems[0].path == str(gap.path)
    other = tmp_path / "dup"
    write_segment(other, 1, [obj(1), obj(2), obj(2)], lsns=[1, 2, 2])
    ins = verify(other)
    assert ins.fatal and "duplicate lsn" in ins.problems[0].reason


async def test_verify_snapshots(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(i) for i in range(1, 9)])
    await write_snapshot(tmp_path, 3, iter([[1]]))
    await write_snapshot(tmp_path, 6, iter([[1], [2]]))
    newest, oldest = snapshot_path(tmp_path, 6), snapshot_path(tmp_path, 3)
    # The older one broken while the newer is fine: start is unaffected, the fallback is gone.
    patch(oldest, oldest.stat().st_size - 3, b"\x00")
    ins = verify(tmp_path)
    assert ins.exit_code == EXIT_REPAIRABLE and ins.snapshot_lsn == 6
    assert "no longer a fallback" in ins.problems[0].reason
    # The newest without its trailer: start falls back (to the full log here).
    newest.write_bytes(newest.read_bytes()[:-10])
    ins = verify(tmp_path)
    assert ins.exit_code == EXIT_REPAIRABLE and ins.snapshot_lsn == 0 and ins.last_lsn == 8
    assert [s.valid for s in ins.snapshots] == [False, False]
    assert "renamed .broken at start" in ins.problems[0].reason
    # A CRC-valid snapshot whose chunk does not decode: start refuses.
    for snap in list_snapshots(tmp_path):
        snap.path.unlink()
    path = snapshot_path(tmp_path, 5)
    path.write_bytes(encode_header(5, SNAPSHOT_MAGIC) + encode_record(0, RT_SNAP_CHUNK, b"\xc1")
                     + encode_record(1, RT_SNAP_TRAILER,
                                     struct.pack("<QI", 1, zlib.crc32(b"\xc1"))))
    ins = verify(tmp_path)
    assert ins.exit_code == EXIT_REFUSED and "does not decode" in ins.problems[0].reason


def test_not_a_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    for command in ("inspect", "verify", "repair"):
        code, text = cli(capsys, command, "--data-dir", str(missing))
        assert code == EXIT_NOT_A_DATA_DIR and "not a Roster data directory" in text
    assert not missing.exists()  # repair did not create it


# -- repair --------------------------------------------------------------------------------------

def test_repair_torn_tail_keeps_a_backup(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    second = two_segments(tmp_path)[1].path
    good = second.read_bytes()
    with second.open("ab") as f:
        f.write(b"\x00" * 40)
    damaged = second.read_bytes()
    code, text = cli(capsys, "repair", "--data-dir", str(tmp_path))
    assert code == EXIT_CLEAN, text
    assert "torn tail" in text and "now: clean" in text
    assert second.read_bytes() == good
    [backup] = tmp_path.glob("repair-backup-*")
    assert (backup / "wal" / second.name).read_bytes() == damaged
    assert verify(tmp_path).clean
    assert run_recover(tmp_path).lsns == list(range(1, 9))
    # A second repair has nothing to do.
    code, text = cli(capsys, "repair", "--data-dir", str(tmp_path))
    assert code == EXIT_CLEAN and text.startswith("nothing to repair")


def test_repair_refuses_corruption_without_the_flag(tmp_path: Path) -> None:
    built = two_segments(tmp_path)[0]
    first, offsets = built.path, built.offsets
    patch(first, offsets[2] + 3, b"\x55")
    before = fingerprint(tmp_path)
    result = repair(tmp_path)
    assert result.action == "refused" and result.exit_code == EXIT_REFUSED
    assert result.refusal is not None
    assert f"{first} at offset {offsets[2]}" in result.refusal
    assert "1 later segment(s) holding 4 intact record(s) (up to lsn 8)" in result.refusal
    assert "--drop-after-corruption" in result.refusal
    after = fingerprint(tmp_path)
    assert after.pop("LOCK") and after == before  # only the lock file was created


def test_repair_drop_after_corruption(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built, later = two_segments(tmp_path)
    first, second = built.path, later.path
    patch(first, built.offsets[2] + 3, b"\x55")
    originals = {first.name: first.read_bytes(), second.name: second.read_bytes()}
    backup = tmp_path / "elsewhere"
    code, text = cli(capsys, "repair", "--data-dir", str(tmp_path), "--drop-after-corruption",
                     "--backup-dir", str(backup), "--json")
    doc = json.loads(text)
    assert code == EXIT_CLEAN and doc["action"] == "repaired" and doc["after"]["clean"]
    assert doc["backup_dir"] == str(backup)
    assert {p.name: p.read_bytes() for p in (backup / "wal").iterdir()} == originals
    assert run_recover(tmp_path).lsns == [1, 2]
    assert any("CORRUPTION REPAIRED" in m for m in doc["messages"])


def test_repair_sets_aside_an_unused_bad_snapshot(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(i) for i in range(1, 9)])
    trio.run(write_snapshot, tmp_path, 3, iter([[1]]))
    trio.run(write_snapshot, tmp_path, 6, iter([[2]]))
    older = snapshot_path(tmp_path, 3)
    older.write_bytes(older.read_bytes()[:-1])
    result = repair(tmp_path)
    assert result.action == "repaired" and result.exit_code == EXIT_CLEAN
    assert (tmp_path / "snap" / f"{older.name}.broken").exists()
    assert result.after is not None and result.after.clean
    assert "set aside" in to_json(result)


def test_repair_refuses_while_the_lock_is_held(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    second = two_segments(tmp_path)[1].path
    with second.open("ab") as f:
        f.write(b"\x01")
    with DataDirLock(tmp_path):
        code, text = cli(capsys, "repair", "--data-dir", str(tmp_path))
        assert code == EXIT_REFUSED and "refusing" in text and "locked" in text
        ins = inspect(tmp_path)
        assert ins.locked_by is not None and "locked by pid" in format_inspection(ins)
    assert second.read_bytes().endswith(b"\x01")  # untouched
    assert inspect(tmp_path).locked_by is None


def test_module_entry_point(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1)])
    proc = subprocess.run([sys.executable, "-m", "server", "wal", "verify", "--data-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: "), proc.stderr


def test_add_parser_wires_into_a_roster_style_parser(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1)])
    parser = argparse.ArgumentParser(prog="roster")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve")
    wal_cli.add_parser(sub)
    args = parser.parse_args(["wal", "verify", "--data-dir", str(tmp_path)])
    assert args.command == "wal" and args.log_level == "WARNING"
    assert wal_cli.run(args, flag_only) == 0


# -- agreement with recovery ---------------------------------------------------------------------

@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_logs())
def test_inspect_predicts_recovery(case: tuple[list[int], int, str, int, bytes]) -> None:
    sizes, segment, how, position, data = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        damage(build(root, sizes)[segment], how, position, data)
        ins = inspect(root)
        try:
            report = run_recover(root).report
        except CorruptLogError as exc:
            assert ins.fatal, (exc, ins.problems)
            first = ins.problems[0]
            assert (first.path, first.offset) == (exc.path, exc.offset)
            return
        assert not ins.fatal, ins.problems
        assert ins.last_lsn == report.last_lsn
        assert (report.torn_tail is not None) == any(p.kind == "torn_tail" for p in ins.problems)
        assert verify(root).clean  # recovery repaired it; the tools agree

