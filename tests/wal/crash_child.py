"""Child process for the failpoint tests: ``python -m tests.wal.crash_child DATA POINT AFTER``.

Writes ``set k<i> = i`` records (fsync always, small segments), printing each LSN once it is
acknowledged, and arms failpoint POINT after AFTER acknowledged records (0: armed from the start
through ROSTER_FAILPOINTS in the environment). With a snap_* / segment point it takes a snapshot
every 10 records. The parent checks that recovery holds every acknowledged record.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from wal import WriteAheadLog, failpoints


async def main(data: Path, point: str, after: int) -> None:
    log = WriteAheadLog(data, next_lsn=1, segment_bytes=256)
    model: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)
        for i in range(1, 61):
            if i == after + 1 and after:
                os.environ[failpoints.ENV_VAR] = point
                failpoints.reload()
            lsn = log.submit(["set", f"k{i}", i])
            model[f"k{i}"] = i
            await log.wait_durable(lsn)
            print(lsn, flush=True)
            if i % 10 == 0 and point.startswith(("snap", "before_segment")):
                rows = [[k, v] for k, v in sorted(model.items())]
                await log.snapshot(log.last_lsn, (rows[j : j + 4] for j in range(0, len(rows), 4)))
                print("snapshot", lsn, flush=True)
        await log.close()


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
