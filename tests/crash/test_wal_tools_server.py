"""``roster wal`` tools against a real server's data directory: refused while the server holds
the LOCK; after a kill -9 and a flipped byte in a middle record, start and verify name the same
file and offset, repair refuses without --drop-after-corruption and with it gives a log the
server starts from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.crash.helpers import server
from tests.crash.oracle import Workload
from tests.server_process import run_cli
from wal import list_segments
from wal.framing import HEADER_SIZE, RecordReader

ROOT = Path(__file__).resolve().parents[2]


def wal_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", "wal", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_tools_on_a_real_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    workload = Workload(2, seed=7)
    with server(data, "--fsync", "always") as proc:
        workload.setup(proc.url)
        workload.start(proc.url)
        assert workload.wait_acked(40, timeout=30)
        workload.stop()
        refused = wal_cli("repair", "--data-dir", str(data))
        assert refused.returncode == 1 and "refusing" in refused.stderr, refused
        checked = wal_cli("verify", "--data-dir", str(data))
        assert checked.returncode == 0, checked
        assert f"a server (pid {proc.proc.pid if proc.proc else '?'}) holds" in checked.stdout
        proc.kill()

    # Flip one payload byte of a middle record of the (only) segment.
    [seg] = list_segments(data)
    records = list(RecordReader(seg.path.read_bytes(), HEADER_SIZE))
    victim = records[len(records) // 2]
    with seg.path.open("r+b") as f:
        f.seek(victim.offset + 20)
        byte = f.read(1)
        f.seek(victim.offset + 20)
        f.write(bytes([byte[0] ^ 0x40]))
    where = f"{seg.path} at offset {victim.offset}"

    start = run_cli("serve", "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0",
                    "--resp-port", "0")
    assert start.returncode == 6 and where in start.stderr, start.stderr  # 6: the log is corrupt
    verify = wal_cli("verify", "--data-dir", str(data))
    assert verify.returncode == 1 and where in verify.stdout, verify
    repair = wal_cli("repair", "--data-dir", str(data))
    assert repair.returncode == 1 and "--drop-after-corruption" in repair.stdout, repair
    repair = wal_cli("repair", "--data-dir", str(data), "--drop-after-corruption")
    assert repair.returncode == 0 and "now: clean" in repair.stdout, repair
    assert list(data.glob("repair-backup-*/wal/*.wal"))
    with server(data, "--fsync", "always") as proc:
        with httpx.Client(base_url=proc.url, verify=False, timeout=30) as c:
            assert c.get("/health").json()["lsn"] == victim.lsn - 1
        assert proc.stop() == 0
