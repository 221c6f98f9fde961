"""kill -9 under pipelined RESP writers: every ``+OK`` survives, nothing unsent appears.

Several writer threads pipeline batches of ``SUB.ADD`` / ``WL.ADD`` / ``PRESENCE.SET`` with
redis-py (``transaction=False``), each on channels and uids of its own, and record every command
whose reply was ``OK``. The server (``--fsync always``, small snapshots so they run under load)
is SIGKILLed mid-load, restarted on the same data dir, and every acknowledged write of every
cycle so far must be there, read back over HTTP and over RESP. Writes are only ever additions,
so "present" is exact: a uid acknowledged once stays. A uid that was never sent must not appear.

A batch whose replies were cut off by the kill counts as unacknowledged (redis-py raises for the
whole pipeline), which only makes the check weaker for that batch, never wrong.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, get_list, running, subscribers
from tests.server_process import ServerProcess

WRITERS = 4
BATCH = 30  # uids per pipeline; three commands each
CHANNELS_PER_WRITER = 4
CYCLES = 5
#: a cycle's load ends at its kill: after this many acknowledged commands, or this deadline
ACKED_TARGETS = (1000, 10_000)
LOAD_DEADLINE_S = 6.0
SERVER_ARGS = ("--fsync", "always", "--snapshot-bytes", "200000", "--segment-bytes", "65536")


def client(proc: ServerProcess) -> redis.Redis:
    assert proc.resp is not None
    host, port = proc.resp
    # no retries: after the kill a retry would only hide which batch got which answer
    return redis.Redis(host=host, port=port, password=TOKEN, decode_responses=True,
                       socket_timeout=30, retry=Retry(NoBackoff(), 0))


@dataclass
class Ledger:
    """What the writers sent and what was acknowledged, by channel / uid."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent_subs: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sent_wl: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sent_presence: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    subs: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    wl: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    presence: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    acked: int = 0
    errors: list[str] = field(default_factory=list)


def write(proc: ServerProcess, ledger: Ledger, cycle: int, w: int, stop: threading.Event) -> None:
    """One writer: pipelined batches until the connection dies (the kill) or ``stop``."""
    n = 0
    try:
        with client(proc) as r:
            while not stop.is_set() and n < 1_000_000:
                pipe = r.pipeline(transaction=False)
                sent: list[tuple[str, str, str | int]] = []
                for _ in range(BATCH):
                    cid = f"kc{cycle}w{w}c{n % CHANNELS_PER_WRITER}"
                    uid = f"ku{cycle}w{w}n{n}"
                    flag = n % 3
                    n += 1
                    pipe.execute_command("SUB.ADD", cid, 2, uid)
                    pipe.execute_command("WL.ADD", cid, 2, uid)
                    pipe.execute_command("PRESENCE.SET", uid, flag, 1)
                    sent += [("sub", cid, uid), ("wl", cid, uid), ("presence", uid, flag)]
                with ledger.lock:  # before they can be logged: anything not here is a phantom
                    for kind, key, value in sent:
                        if kind == "sub":
                            ledger.sent_subs[key].add(str(value))
                        elif kind == "wl":
                            ledger.sent_wl[key].add(str(value))
                        else:
                            ledger.sent_presence[key].add(int(value))
                results = pipe.execute(raise_on_error=False)
                with ledger.lock:
                    for (kind, key, value), res in zip(sent, results, strict=True):
                        if res != "OK":
                            ledger.errors.append(f"{kind} {key} {value}: {res!r}")
                            continue
                        ledger.acked += 1
                        if kind == "sub":
                            ledger.subs[key].add(str(value))
                        elif kind == "wl":
                            ledger.wl[key].add(str(value))
                        else:
                            ledger.presence[key].add(int(value))
    except (redis.ConnectionError, redis.TimeoutError):
        return  # the kill
    except Exception as exc:
        with ledger.lock:
            ledger.errors.append(repr(exc))


def check_http(api: httpx.Client, ledger: Ledger) -> None:
    for cid, sent in ledger.sent_subs.items():
        acked = ledger.subs.get(cid, set())
        exists = api.get("/channel/info", params={"channel_id": cid, "channel_type": 2})
        if exists.status_code == 404:
            assert not acked, f"channel {cid} lost with {len(acked)} acknowledged subscribers"
            continue
        got = set(subscribers(api, cid, 2))
        assert acked <= got, f"{cid}: lost acknowledged subscribers {sorted(acked - got)[:5]}"
        assert got <= sent, f"{cid}: subscribers never sent {sorted(got - sent)[:5]}"
        wl = set(get_list(api, "whitelist", cid, 2))
        acked_wl = ledger.wl.get(cid, set())
        assert acked_wl <= wl, f"{cid}: lost acknowledged whitelist {sorted(acked_wl - wl)[:5]}"
        assert wl <= ledger.sent_wl[cid], f"{cid}: whitelist never sent"
    uids = sorted(ledger.sent_presence)
    online: dict[str, set[int]] = defaultdict(set)
    for i in range(0, len(uids), 5000):
        r = api.post("/user/onlinestatus", json=uids[i:i + 5000])
        assert r.status_code == 200, r.text
        for row in r.json():
            online[row["uid"]].add(row["device_flag"])
    for uid, flags in ledger.presence.items():
        assert flags <= online[uid], f"{uid}: lost acknowledged presence {flags - online[uid]}"
    for uid, flags in online.items():
        assert flags <= ledger.sent_presence[uid], f"{uid}: presence never sent"


def check_resp(proc: ServerProcess, ledger: Ledger) -> None:
    with client(proc) as r:
        pipe = r.pipeline(transaction=False)
        cids = sorted(ledger.subs)
        for cid in cids:
            pipe.execute_command("SUB.LIST", cid, 2, "COUNT", 10_000)
            pipe.execute_command("WL.LIST", cid, 2)
        results = pipe.execute()
        for i, cid in enumerate(cids):
            cursor, subs = results[2 * i]
            assert cursor is None
            assert ledger.subs[cid] <= set(subs), cid
            assert ledger.wl.get(cid, set()) <= set(results[2 * i + 1]), cid
        uids = sorted(ledger.presence)
        for i in range(0, len(uids), 5000):
            part = uids[i:i + 5000]
            flags = r.execute_command("PRESENCE.GET", *part)
            for uid, got in zip(part, flags, strict=True):
                assert ledger.presence[uid] <= set(got), uid


def test_kill_9_under_pipelined_resp_writers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ledger = Ledger()
    rng = random.Random(9)
    for cycle in range(CYCLES):
        target = rng.randrange(*ACKED_TARGETS)
        with running(data, *SERVER_ARGS) as proc:
            base = ledger.acked
            stop = threading.Event()
            threads = [threading.Thread(target=write, args=(proc, ledger, cycle, w, stop),
                                        daemon=True) for w in range(WRITERS)]
            for t in threads:
                t.start()
            try:
                deadline = time.monotonic() + LOAD_DEADLINE_S
                while (ledger.acked - base < target and time.monotonic() < deadline
                       and all(t.is_alive() for t in threads)):
                    time.sleep(0.005)  # polling the writers' progress, not timing anything
                alive = sum(t.is_alive() for t in threads)
                proc.kill()  # SIGKILL mid-load
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            assert not ledger.errors, ledger.errors[:5]
            assert alive == WRITERS, "a writer stopped before the kill"
            assert ledger.acked - base >= min(target, 300), "too little load to kill"
        with running(data, *SERVER_ARGS) as proc, client_for(proc.url, TOKEN) as api:
            check_http(api, ledger)
            check_resp(proc, ledger)
            assert proc.stop() == 0, proc.text()[-3000:]
    assert ledger.acked > 1000
