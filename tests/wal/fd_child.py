"""Child process for the descriptor tests: ``python -m tests.wal.fd_child DATA MODE``.

Lowers RLIMIT_NOFILE to 64, starts a log with small segments, then takes every free descriptor
slot with ``dup()`` (what 80 held client sockets do to a server under ``ulimit -n 64``) and writes
100 records through many rotations, waiting for each. MODE ``steal`` also takes the spare
segment's slot after record 10, so the next rotations find no spare and no descriptor (they must
wait, not fail), and frees one slot after record 60. MODE ``plain`` tries a snapshot after record
50, with the table still full (it must fail alone, the log going on), and another one once the
slots are released. Prints one JSON line with what it saw.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import sys
from pathlib import Path

import trio

from wal import WriteAheadLog, list_segments

LIMIT = 64
RECORDS = 100


def take_every_free_slot() -> list[int]:
    held: list[int] = []
    for _ in range(LIMIT):
        try:
            held.append(os.dup(0))
        except OSError as exc:
            if exc.errno != errno.EMFILE:
                raise
            return held
    raise RuntimeError(f"{LIMIT} dup()s did not exhaust a table of {LIMIT}")


def table_is_full() -> bool:
    try:
        os.close(os.dup(0))
    except OSError as exc:
        return exc.errno == errno.EMFILE
    return False


async def main(data: Path, mode: str) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))
    log = WriteAheadLog(data, next_lsn=1, segment_bytes=512)
    seen: dict[str, object] = {"acked": 0, "held": 0, "full_throughout": True,
                               "most_postponed": 0, "snapshot_errno": None, "snapshot_lsn": None}
    most_postponed = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)
        held = take_every_free_slot()
        seen["held"] = len(held)
        for i in range(1, RECORDS + 1):
            await log.wait_durable(log.submit(["set", f"k{i}", i]))
            seen["acked"] = i
            most_postponed = max(most_postponed, log.statistics().postponed_rotations)
            if mode == "steal" and i == 10:
                # The spare's slot goes to a "client": no spare, and no descriptor to make one.
                os.close(log._segment.spare_fd)  # the test takes the slot on purpose
                log._segment.spare_fd = -1
                held.append(os.dup(0))
            elif mode == "steal" and i == 60:
                os.close(held.pop())
            elif mode == "plain" and i == 50:
                try:
                    await log.snapshot(log.last_lsn, [[["k", i]]])
                except OSError as exc:
                    seen["snapshot_errno"] = errno.errorcode.get(exc.errno or 0)
            if not table_is_full():
                seen["full_throughout"] = False
        seen["most_postponed"] = most_postponed
        for fd in held:
            os.close(fd)
        seen["segments"] = len(list_segments(data))
        if mode == "plain":
            seen["snapshot_lsn"] = (await log.snapshot(log.last_lsn, [[["k", 100]]])).lsn
        await log.close()
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), sys.argv[2])
