"""The crash oracle: concurrent writers whose acknowledged requests must all survive a crash,
and the check that a recovered state is a replay of a prefix of what they sent.

Why that proves "the state equals a replay of a prefix of what was sent": every writer sends one
request at a time, touches only uids that carry its own prefix in the shared channels and a channel
of its own, so the writers' requests commute with each other and the state splits into one part per
writer that depends only on that writer's sequence. A per-writer prefix is therefore a prefix of
the interleaved log. A writer's part must equal the replay of its acknowledged requests, or of
those plus the one in flight (sent but unanswered: it may or may not have been logged). Anything
else -- an acknowledged request missing, a request applied that was never sent, a foreign uid --
is a violation. A 503 (``log_unavailable``) answer means "not logged": that request must be absent.

:class:`Workload` is what the kill loop (tests/crash/killloop.py) and the failpoint and I/O error
tests drive; tests/crash/test_checker.py proves it catches what it must.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
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
