"""kill -9 loop: concurrent writers, SIGKILL at random moments, restart, check every acknowledged
write is there.

    python -m tests.crash.killloop --cycles 200 --seconds 600          # the long run
    python -m tests.crash.killloop --cycles 5 --seconds 40 --verbose   # what test_killloop runs

Each cycle starts ``roster serve --fsync always`` (tiny ``--snapshot-bytes``, so size-triggered
snapshots run all the time, plus ``POST /admin/snapshot`` at random intervals) on the same data
directory, lets several writer threads hammer it, and SIGKILLs it at a random moment. Then:

1. A copy of the data directory is recovered in this process (``server.restore.load_state``): the
   whole state must be exactly what the writers' acknowledged requests produce, plus at most each
   writer's one request that was in flight at the kill (tests/crash/oracle.py says why that is
   the whole proof).
2. The server is restarted on the original directory (its own recovery repairs torn tails) and
   the same state is read back over HTTP, and ``/health`` reports the same LSN.

It lives with the tests, not in bench/: it checks correctness and measures nothing, and the
oracle it runs is test code, which the installed package does not carry.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.crash.oracle import Violation, Workload, client
from tests.server_process import ServerProcess


@contextmanager
def _maybe_tempdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="killloop-") as tmp:
        yield Path(tmp)


# -- the loop ----------------------------------------------------------------------------------


@dataclass
class LoopResult:
    cycles: int = 0
    seconds: float = 0.0
    acked: int = 0
    sent: int = 0
    in_flight_present: int = 0
    in_flight_absent: int = 0
    in_flight_either: int = 0
    torn_tails: int = 0
    half_written_snapshots: int = 0
    admin_snapshots: int = 0
    kills_during_admin_snapshot: int = 0
    max_recovery_s: float = 0.0
    last_lsn: int = 0
    lost: int = 0
    violation: str | None = None

    def summary(self, writers: int, seed: int, snapshot_bytes: int) -> str:
        verdict = "OK" if self.violation is None else f"VIOLATION: {self.violation}"
        return "\n".join([
            f"killloop: {self.cycles} kill -9 cycles in {self.seconds:.1f} s ({writers} writers, "
            f"seed {seed}, --fsync always, --snapshot-bytes {snapshot_bytes})",
            f"  acknowledged writes checked: {self.acked} of {self.sent} sent; lost: {self.lost}",
            f"  in flight at the kill: present {self.in_flight_present}, absent "
            f"{self.in_flight_absent}, no-op either way {self.in_flight_either}",
            f"  torn tails repaired: {self.torn_tails}; half-written snapshots removed: "
            f"{self.half_written_snapshots}; /admin/snapshot answered: {self.admin_snapshots} "
            f"(kills aimed at one: {self.kills_during_admin_snapshot})",
            f"  final lsn {self.last_lsn}; slowest recovery {self.max_recovery_s * 1000:.0f} ms",
            f"  {verdict}",
        ])


def run_loop(
    *,
    cycles: int,
    seconds: float,
    writers: int = 4,
    seed: int | None = None,
    snapshot_bytes: int = 16_384,
    max_run_s: float = 1.5,
    data_dir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> LoopResult:
    """Run up to ``cycles`` kill/restart cycles, starting no new cycle after ``seconds``."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    result = LoopResult()
    started = time.monotonic()
    workload = Workload(writers, seed)
    with _maybe_tempdir(data_dir) as root:
        data = root / "data"
        server = ServerProcess(data, "--fsync", "always", "--snapshot-bytes", str(snapshot_bytes))
        url = server.start().url
        try:
            workload.setup(url)
            while result.cycles < cycles and time.monotonic() - started < seconds:
                result.cycles += 1
                workload.start(url, snapshot_interval=(0.05, 0.4))
                left = seconds - (time.monotonic() - started)
                how = rng.choice(("random", "random", "after_acks", "at_snapshot"))
                aim: threading.Thread | None = None
                if how == "random":
                    # A random moment (not a timing assertion).
                    time.sleep(rng.uniform(0.0, max(0.0, min(max_run_s, left))))
                elif how == "after_acks":
                    workload.wait_acked(rng.randint(1, 200), timeout=max(0.1, min(max_run_s,
                                                                                   left)))
                else:
                    workload.wait_acked(rng.randint(1, 50), timeout=max(0.1, min(1.0, left)))
                    # Aim at a snapshot: ask for one and kill while it is being written.
                    aim = threading.Thread(target=_post_quietly, args=(url, "/admin/snapshot"),
                                           daemon=True)
                    aim.start()
                    time.sleep(rng.uniform(0.0, 0.03))  # a random moment, not a timing assertion
                    result.kills_during_admin_snapshot += 1
                code = server.kill()
                if code != -signal.SIGKILL:
                    raise Violation(f"the server exited by itself with {code}:\n"
                                    + server.log_tail(2000))
                workload.stop()
                if aim is not None:
                    aim.join(10)
                if workload.errors():
                    raise Violation("unexpected answers: " + "; ".join(workload.errors()[:5]))
                settled = workload.settle_offline(data)
                url = server.start().url
                workload.check_http(url)
                with client(url) as c:
                    lsn = c.get("/health").json()["lsn"]
                if lsn != settled.last_lsn:
                    raise Violation(f"server recovered to lsn {lsn}, this process to "
                                    f"{settled.last_lsn}")
                result.in_flight_present += settled.in_flight_present
                result.in_flight_absent += settled.in_flight_absent
                result.in_flight_either += settled.in_flight_either
                result.torn_tails += settled.torn_tails
                result.half_written_snapshots += settled.half_written_snapshots
                result.max_recovery_s = max(result.max_recovery_s, settled.recovery_s)
                result.last_lsn = settled.last_lsn
                log(f"cycle {result.cycles}: kill ({how}) at lsn {settled.last_lsn}, "
                    f"{workload.acked} acked so far, recovery {settled.recovery_s * 1000:.0f} ms"
                    + "".join(f"\n    {m}" for m in settled.messages))
            # A clean stop at the end must keep everything too.
            if server.stop() != 0:
                raise Violation("SIGTERM did not exit 0:\n" + server.log_tail(2000))
            workload.settle_offline(data)
        except Violation as exc:
            result.violation = str(exc)
            result.lost = exc.lost
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.kill()
            workload._stop.set()
    result.seconds = time.monotonic() - started
    result.acked = workload.acked
    result.sent = workload.sent
    result.admin_snapshots = workload.snapshots_ok
    return result


def _post_quietly(url: str, path: str) -> None:
    try:
        with client(url) as c:
            c.post(path)
    except httpx.TransportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash.killloop",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=200, help="at most this many kills")
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="start no new cycle after this many seconds")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer threads")
    parser.add_argument("--seed", type=int, default=None, help="repeat a run (printed)")
    parser.add_argument("--snapshot-bytes", type=int, default=16_384)
    parser.add_argument("--max-run", type=float, default=1.5,
                        help="longest stretch of writing before a kill (s)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the data here (default: a temporary directory)")
    parser.add_argument("--verbose", action="store_true", help="a line per cycle")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    result = run_loop(cycles=args.cycles, seconds=args.seconds, writers=args.writers, seed=seed,
                      snapshot_bytes=args.snapshot_bytes, max_run_s=args.max_run,
                      data_dir=args.data_dir,
                      log=(lambda m: print(m, flush=True)) if args.verbose else (lambda _: None))
    print(result.summary(args.writers, seed, args.snapshot_bytes), flush=True)
    return 0 if result.violation is None else 1


if __name__ == "__main__":
    sys.exit(main())
