"""kill -9 loop: concurrent writers, SIGKILL at random moments, restart, check every acknowledged
write is there.

    python -m bench.killloop --cycles 200 --seconds 600          # the long run
    python -m bench.killloop --cycles 5 --seconds 40 --verbose   # what tests/crash runs

Each cycle starts ``roster serve --fsync always`` (tiny ``--snapshot-bytes``, so size-triggered
snapshots run all the time, plus ``POST /admin/snapshot`` at random intervals) on the same data
directory, lets several writer threads hammer it, and SIGKILLs it at a random moment. Then:

1. A copy of the data directory is recovered in this process (``wal.recover`` into a
   ``server.state.State``): the whole state must be exactly what the writers' acknowledged
   requests produce, plus at most each writer's one request that was in flight at the kill.
2. The server is restarted on the original directory (its own recovery repairs torn tails) and
   the same state is read back over HTTP, and ``/health`` reports the same LSN.

Why that proves "the state equals a replay of a prefix of what was sent": every writer sends one
request at a time, touches only uids that carry its own prefix in the shared channels and a channel
of its own, so the writers' requests commute with each other and the state splits into one part per
writer that depends only on that writer's sequence. A per-writer prefix is therefore a prefix of
the interleaved log. A writer's part must equal the replay of its acknowledged requests, or of
those plus the one in flight (sent but unanswered: it may or may not have been logged). Anything
else -- an acknowledged request missing, a request applied that was never sent, a foreign uid --
is a violation. A 503 (``log_unavailable``) answer means "not logged": that request must be absent.

The :class:`Workload` is also what ``tests/crash`` drives into failpoints and injected I/O errors.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from server.restore import load_state
from server.state import State

CHANNEL_TYPE = 2
SHARED = ("kl_s0", "kl_s1", "kl_s2")
LISTS = ("subscribers", "whitelist", "blacklist")
NO_FLAGS = (0, 0, 0, 0, 0)  # ban, disband, send_ban, allow_stranger, large (server/state.py order)

#: key (channel, attribute) -> frozenset of uids, or for (channel, "flags") the five flags
View = dict[tuple[str, str], Any]
#: channel -> attribute -> frozenset of uids / flags tuple
Observed = dict[str, dict[str, Any]]


class Violation(AssertionError):
    """The recovered state is not a replay of a prefix of what was sent. ``lost`` counts
    acknowledged uid additions (and flag changes) missing from it."""

    def __init__(self, message: str, lost: int = 0) -> None:
        super().__init__(message)
        self.lost = lost


# -- one writer's requests and its part of the state ------------------------------------------


@dataclass(frozen=True)
class Op:
    path: str
    body: dict[str, Any]
    channel: str
    attr: str  # one of LISTS, or "flags"
    kind: str  # add | rm | set | flags
    uids: frozenset[str] = frozenset()
    flags: tuple[int, ...] = NO_FLAGS

    def apply(self, view: View) -> View:
        new = dict(view)
        key = (self.channel, self.attr)
        if self.kind == "add":
            new[key] = view[key] | self.uids
        elif self.kind == "rm":
            new[key] = view[key] - self.uids
        elif self.kind == "set":
            new[key] = self.uids
        else:
            new[key] = self.flags
        return new


class Writer:
    """One writer thread's op generator, its acknowledged view, and its in-flight request."""

    def __init__(self, index: int, seed: int) -> None:
        self.index = index
        self.prefix = f"w{index}x"
        self.own = f"kl_w{index}"
        self.rng = random.Random(seed * 1000 + index)
        self.counter = 0
        self.view: View = {(c, a): frozenset() for c in SHARED for a in ("subscribers",
                                                                          "whitelist")}
        self.view.update({(self.own, a): frozenset() for a in LISTS})
        self.view[(self.own, "flags")] = NO_FLAGS
        self.pending: Op | None = None
        self.acked = 0
        self.sent = 0
        self.refused = 0
        self.errors: list[str] = []

    def _new_uids(self, most: int, least: int = 1) -> frozenset[str]:
        uids = []
        for _ in range(self.rng.randint(least, most)):
            self.counter += 1
            uids.append(f"{self.prefix}{self.counter}")
        return frozenset(uids)

    def _mine_in(self, key: tuple[str, str]) -> frozenset[str]:
        present = sorted(self.view[key])
        picked = set(self.rng.sample(present, min(len(present), self.rng.randint(1, 2))))
        if not picked or self.rng.random() < 0.2:
            picked |= self._new_uids(1)  # removing a uid that was never added must succeed too
        return frozenset(picked)

    def next_op(self) -> Op:
        r = self.rng.random()
        shared = self.rng.choice(SHARED)
        own = self.own

        def body(channel: str, **extra: Any) -> dict[str, Any]:
            return {"channel_id": channel, "channel_type": CHANNEL_TYPE, **extra}

        if r < 0.30:
            uids = self._new_uids(3)
            return Op("/channel/subscriber_add", body(shared, subscribers=sorted(uids)), shared,
                      "subscribers", "add", uids)
        if r < 0.55:
            uids = self._new_uids(3)
            return Op("/channel/whitelist_add", body(shared, uids=sorted(uids)), shared,
                      "whitelist", "add", uids)
        if r < 0.65:
            uids = self._mine_in((shared, "subscribers"))
            return Op("/channel/subscriber_remove", body(shared, subscribers=sorted(uids)),
                      shared, "subscribers", "rm", uids)
        if r < 0.75:
            uids = self._mine_in((shared, "whitelist"))
            return Op("/channel/whitelist_remove", body(shared, uids=sorted(uids)), shared,
                      "whitelist", "rm", uids)
        if r < 0.85:
            uids = self._new_uids(3, least=0)  # [] clears the whitelist
            return Op("/channel/whitelist_set", body(own, uids=sorted(uids)), own, "whitelist",
                      "set", uids)
        if r < 0.90:
            uids = self._new_uids(2)
            return Op("/channel/blacklist_add", body(own, uids=sorted(uids)), own, "blacklist",
                      "add", uids)
        if r < 0.95:
            uids = self._new_uids(3)
            return Op("/channel/subscriber_add", body(own, subscribers=sorted(uids), reset=1),
                      own, "subscribers", "set", uids)
        send_ban, large = self.rng.randint(0, 1), self.rng.randint(0, 1)
        return Op("/channel/info", body(own, send_ban=send_ban, large=large), own, "flags",
                  "flags", flags=(0, 0, send_ban, 0, large))

    def project(self, observed: Observed) -> View:
        """This writer's part of an observed state."""
        part: View = {}
        for channel, attr in self.view:
            value = observed.get(channel, {}).get(attr)
            if value is None:
                part[(channel, attr)] = None  # the channel is missing altogether
            elif channel in SHARED:
                part[(channel, attr)] = frozenset(u for u in value if u.startswith(self.prefix))
            else:
                part[(channel, attr)] = value
        return part

    def run(self, url: str, stop: threading.Event, acked: Callable[[], None]) -> None:
        """Send one request at a time until ``stop``, a failed connection, or a 503."""
        with client(url) as c:
            while not stop.is_set():
                op = self.next_op()
                self.pending = op
                self.sent += 1
                try:
                    r = c.post(op.path, json=op.body)
                except httpx.TransportError:
                    return  # the server is gone: op stays pending (it may have been logged)
                if r.status_code == 200:
                    self.view = op.apply(self.view)
                    self.pending = None
                    self.acked += 1
                    acked()
                    continue
                self.pending = None
                if r.status_code == 503 and _code(r) == "log_unavailable":
                    self.refused += 1  # not logged: must be absent after restart
                else:
                    self.errors.append(f"{op.path} {op.body}: {r.status_code} {r.text[:200]}")
                return


def _code(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def client(url: str) -> httpx.Client:
    # verify=False: plain-HTTP loopback; otherwise httpx builds a TLS context per client (~50 ms).
    return httpx.Client(base_url=url, timeout=httpx.Timeout(15.0, connect=3.0), verify=False)


# -- the workload: writers + snapshot requests, and the check after a crash --------------------


@dataclass
class Settled:
    """What one check after a crash found."""

    last_lsn: int
    acked_checked: int
    snapshot_lsn: int = 0
    in_flight_present: int = 0
    in_flight_absent: int = 0
    in_flight_either: int = 0
    torn_tails: int = 0
    half_written_snapshots: int = 0
    recovery_s: float = 0.0
    messages: list[str] = field(default_factory=list)


class Workload:
    def __init__(self, writers: int = 4, seed: int = 0) -> None:
        self.seed = seed
        self.writers = [Writer(i, seed) for i in range(writers)]
        self.rng = random.Random(seed)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._acked_cv = threading.Condition()
        self._acked_total = 0
        self.snapshots_ok = 0
        self.snapshot_errors: list[str] = []

    @property
    def acked(self) -> int:
        return sum(w.acked for w in self.writers)

    @property
    def refused(self) -> int:
        return sum(w.refused for w in self.writers)

    @property
    def sent(self) -> int:
        return sum(w.sent for w in self.writers)

    def errors(self) -> list[str]:
        return [e for w in self.writers for e in w.errors] + self.snapshot_errors

    def setup(self, url: str) -> None:
        """Create the shared channels and one channel per writer (acknowledged before writing)."""
        with client(url) as c:
            for channel in (*SHARED, *(w.own for w in self.writers)):
                r = c.post("/channel", json={"channel_id": channel, "channel_type": CHANNEL_TYPE})
                if r.status_code != 200:
                    raise RuntimeError(f"creating {channel}: {r.status_code} {r.text}")

    def _note_ack(self) -> None:
        with self._acked_cv:
            self._acked_total += 1
            self._acked_cv.notify_all()

    def wait_acked(self, count: int, timeout: float) -> bool:
        """Block until ``count`` more requests were acknowledged (bounded by ``timeout``)."""
        with self._acked_cv:
            target = self._acked_total + count
            return self._acked_cv.wait_for(lambda: self._acked_total >= target, timeout)

    def start(self, url: str, *, snapshot_interval: tuple[float, float] | None = None) -> None:
        """Writer threads (and a thread asking for snapshots every ``snapshot_interval`` s)."""
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=w.run, args=(url, self._stop, self._note_ack),
                                          name=f"writer-{w.index}", daemon=True)
                         for w in self.writers]
        if snapshot_interval is not None:
            self._threads.append(threading.Thread(
                target=self._snapshots, args=(url, snapshot_interval), name="snapshots",
                daemon=True))
        for t in self._threads:
            t.start()

    def _snapshots(self, url: str, interval: tuple[float, float]) -> None:
        with client(url) as c:
            while not self._stop.wait(self.rng.uniform(*interval)):
                try:
                    r = c.post("/admin/snapshot")
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    self.snapshots_ok += 1
                elif r.status_code == 503 and _code(r) == "log_unavailable":
                    return
                else:
                    self.snapshot_errors.append(f"/admin/snapshot: {r.status_code} {r.text}")
                    return

    def stop(self, timeout: float = 30.0) -> None:
        """Stop sending and join the threads (call after the server died or was killed)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            raise RuntimeError(f"threads did not finish: {stuck}")
        self._threads = []

    # -- checking -----------------------------------------------------------------------------

    def expected(self) -> Observed:
        """The whole state the writers' (resolved) views add up to."""
        out: Observed = {c: {"subscribers": frozenset(), "whitelist": frozenset(),
                             "blacklist": frozenset(), "flags": NO_FLAGS} for c in SHARED}
        for w in self.writers:
            out[w.own] = {}
            for (channel, attr), value in w.view.items():
                if channel in SHARED:
                    out[channel][attr] = out[channel][attr] | value
                else:
                    out[channel][attr] = value
        return out

    def resolve(self, observed: Observed, settled: Settled) -> None:
        """Match each writer's part against its prefixes; adopt the in-flight request if it was
        logged. Raises :class:`Violation` if no prefix matches, or the whole state differs."""
        problems = []
        lost_total = 0
        for w in self.writers:
            part = w.project(observed)
            if part == w.view:
                if w.pending is not None:
                    after = w.pending.apply(w.view)
                    if after == w.view:
                        settled.in_flight_either += 1
                    else:
                        settled.in_flight_absent += 1
                w.pending = None
                continue
            if w.pending is not None and part == w.pending.apply(w.view):
                w.view = part
                w.pending = None
                settled.in_flight_present += 1
                continue
            missing = {k: v - (part.get(k) or frozenset()) for k, v in w.view.items()
                       if isinstance(v, frozenset)}
            lost_total += sum(len(v) for v in missing.values()) + sum(
                1 for k, v in w.view.items() if not isinstance(v, frozenset) and part[k] != v)
            lost = {k: sorted(v)[:5] for k, v in missing.items() if v}
            extra = {k: sorted((part.get(k) or frozenset()) - v)[:5]
                     for k, v in w.view.items()
                     if isinstance(v, frozenset) and (part.get(k) or frozenset()) - v}
            problems.append(f"writer {w.index}: state is no prefix of what it sent "
                            f"(acked {w.acked}, in flight {w.pending}); acknowledged but "
                            f"missing: {lost}; present but never acknowledged: {extra}")
        if problems:
            raise Violation(f"(workload seed {self.seed})\n" + "\n".join(problems), lost_total)
        expected = self.expected()
        if observed != expected:
            diff = sorted(set(observed) ^ set(expected)) or [
                f"{c}.{a}" for c in expected for a in expected[c]
                if observed[c].get(a) != expected[c][a]]
            raise Violation(f"whole state differs from the writers' views at {diff[:10]} "
                            f"(workload seed {self.seed})")
        settled.acked_checked = self.acked

    def settle_offline(self, data_dir: Path) -> Settled:
        """Recover a copy of ``data_dir`` in this process and :meth:`resolve` against it."""
        with tempfile.TemporaryDirectory(prefix="killloop-copy-") as tmp:
            copy = Path(tmp) / "data"
            shutil.copytree(data_dir, copy)
            messages: list[str] = []
            started = time.perf_counter()
            state, report = load_state(copy, freeze=False, log=messages.append)
            elapsed = time.perf_counter() - started
        settled = Settled(report.last_lsn, 0, report.snapshot_lsn, recovery_s=elapsed,
                          messages=messages,
                          torn_tails=sum("torn" in m for m in messages),
                          half_written_snapshots=sum(".snap.tmp" in m for m in messages))
        self.resolve(observe_state(state), settled)
        return settled

    def check_http(self, url: str) -> None:
        """The running server's state equals the (resolved) expected state."""
        expected = self.expected()
        with client(url) as c:
            observed = {channel: observe_http(c, channel) for channel in expected}
        if observed != expected:
            bad = [f"{ch}.{a}" for ch in expected for a in expected[ch]
                   if observed[ch].get(a) != expected[ch][a]]
            raise Violation(f"the restarted server's state differs at {bad[:10]} "
                            f"(workload seed {self.seed})")


def observe_state(state: State) -> Observed:
    out: Observed = {}
    for (cid, ctype), ch in state.channels.items():
        key = cid if ctype == CHANNEL_TYPE else f"{cid}/{ctype}"
        out[key] = {"subscribers": frozenset(ch.subscribers),
                    "whitelist": frozenset(ch.whitelist),
                    "blacklist": frozenset(ch.blacklist),
                    "flags": (ch.ban, ch.disband, ch.send_ban, ch.allow_stranger, ch.large)}
    return out


def observe_http(c: httpx.Client, channel: str) -> dict[str, Any]:
    q: dict[str, str | int] = {"channel_id": channel, "channel_type": CHANNEL_TYPE}
    r = c.get("/channel/info", params=q)
    r.raise_for_status()
    info = r.json()
    out: dict[str, Any] = {"flags": tuple(info[k] for k in ("ban", "disband", "send_ban",
                                                            "allow_stranger", "large"))}
    subs: list[str] = []
    cursor: str | None = None
    for _ in range(10_000):  # pages of up to 10 000
        r = c.get("/channel/subscribers", params={**q, "cursor": cursor} if cursor else q)
        r.raise_for_status()
        page = r.json()
        subs += page["uids"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    out["subscribers"] = frozenset(subs)
    for name in ("whitelist", "blacklist"):
        r = c.get(f"/channel/{name}", params=q)
        r.raise_for_status()
        out[name] = frozenset(r.json())
    return out


# -- a server process --------------------------------------------------------------------------

_LISTENING = re.compile(r"roster: listening on (http://\S+)")


class Server:
    """``python -m server serve`` on 127.0.0.1, port 0; the URL comes from its first line."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> str:
        self.output = []
        self.url = ""
        self.proc = proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--data-dir", str(self.data_dir),
             "--host", "127.0.0.1", "--port", "0", "--resp-port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)
                m = _LISTENING.search(line)
                if m and not ready.is_set():
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or not self.url:
            self.kill()
            raise RuntimeError("roster did not start:\n" + "".join(self.output))
        return self.url

    def kill(self) -> int:
        """SIGKILL (no flush, no goodbye) and reap."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        return self._reap()

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self._reap(timeout)

    def _reap(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


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
        server = Server(data, "--fsync", "always", "--snapshot-bytes", str(snapshot_bytes))
        url = server.start()
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
                                    + "".join(server.output[-20:]))
                workload.stop()
                if aim is not None:
                    aim.join(10)
                if workload.errors():
                    raise Violation("unexpected answers: " + "; ".join(workload.errors()[:5]))
                settled = workload.settle_offline(data)
                url = server.start()
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
                raise Violation("SIGTERM did not exit 0:\n" + "".join(server.output[-20:]))
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
    parser = argparse.ArgumentParser(prog="python -m bench.killloop", description=__doc__.split(
        "\n\n")[0] if __doc__ else None)
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
