"""Model-based test: random mutations, snapshots (fuzzy, with writes in between) and restarts
through the real ``State`` + ``WriteAheadLog`` on real files, against a plain dict/set model.

The log runs in a trio loop on a background thread for as long as one "process" lives; rules
call into it with ``trio.from_thread.run``. A restart closes the log, ends that loop, recovers the
data directory into a fresh ``State`` (as ``server/runner.py`` does) and opens a new log at the
next LSN. After every restart the recovered state must equal the model; between restarts the live
state must equal it too (an invariant after every rule).

Restarts come in three kinds: clean; with a torn partial record appended to the last segment (a
crash mid-append); and with the newest snapshot damaged, which must fall back to the older one
plus the log (so retention must have kept every segment the older one needs).

Settings: ``max_examples=40``, ``stateful_step_count=30`` (about 10-25 s here).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio
import trio.lowlevel
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from server.restore import load_state
from server.state import FLAG_NAMES, TEMP, State
from wal import RecoveryReport, WriteAheadLog, list_segments, list_snapshots, pack
from wal.framing import RT_OPS, encode_record

T = TypeVar("T")

SEGMENT_BYTES = 700  # small: rotations happen all the time
CALL_TIMEOUT_S = 20.0

# -- the model: plain dicts and sets, written from the documented rules independently --------

LIST_ATTR = {"sub": "subscribers", "wl": "whitelist", "bl": "blacklist"}


def fresh(now: int) -> dict[str, Any]:
    return {**dict.fromkeys(FLAG_NAMES, 0), "subscribers": set(), "whitelist": set(),
            "blacklist": set(), "created_at": now, "updated_at": now, "expires_at": 0}


class Model:
    def __init__(self) -> None:
        self.channels: dict[tuple[str, int], dict[str, Any]] = {}
        self.system_uids: set[str] = set()

    def _touch(self, key: tuple[str, int], now: int) -> dict[str, Any]:
        ch = self.channels.get(key)
        if ch is None:
            ch = self.channels[key] = fresh(now)
            if key[1] == TEMP:  # a temporary channel is never created by a list/flag op:
                ch["expires_at"] = now  # such an op (replayed) finds it born expired
        else:
            ch["updated_at"] = now
        return ch

    def apply(self, now: int, ops: list[tuple[Any, ...]]) -> None:
        for op in ops:
            name = op[0]
            if name == "ch_put":
                ch = self._touch((op[1], op[2]), now)
                for flag, value in op[3].items():
                    ch[flag] = value
            elif name == "ch_del":
                self.channels.pop((op[1], op[2]), None)
            elif name.split("_")[0] in LIST_ATTR:
                prefix, action = name.split("_")
                attr = LIST_ATTR[prefix]
                ch = self._touch((op[1], op[2]), now)
                uids = set(op[3])
                ch[attr] = (ch[attr] | uids if action == "add" else
                            ch[attr] - uids if action == "rm" else uids)
            elif name == "tmp_set":
                key = (op[1], TEMP)
                old = self.channels.get(key)
                tmp = self.channels[key] = (
                    fresh(now) if old is None or 0 < old["expires_at"] <= now else old)
                tmp["updated_at"] = now
                tmp["subscribers"] = set(op[2])
                tmp["expires_at"] = op[3]
            elif name == "tmp_expire":
                gone = self.channels.get((op[1], TEMP))
                if gone is not None and 0 < gone["expires_at"] <= now:
                    del self.channels[(op[1], TEMP)]
            elif name == "sys_add":
                self.system_uids |= set(op[1])
            elif name == "sys_rm":
                self.system_uids -= set(op[1])
            else:
                raise AssertionError(f"unknown op {name}")

    def plain(self) -> dict[str, Any]:
        return {"system_uids": set(self.system_uids),
                "channels": {k: dict(v) for k, v in self.channels.items()}}


# -- strategies: ops as the routes build them ------------------------------------------------

CIDS = st.sampled_from(["c1", "c2", "c3"])
TYPES = st.sampled_from([1, 2, 5])
TMP_IDS = st.sampled_from(["t1", "t2"])
UIDS = st.lists(st.sampled_from([f"u{i}" for i in range(6)]), max_size=4)
LIST_OPS = [f"{p}_{a}" for p in LIST_ATTR for a in ("add", "rm", "set")]

OPS = st.one_of(
    st.tuples(st.just("ch_put"), CIDS, TYPES,
              st.dictionaries(st.sampled_from(FLAG_NAMES), st.integers(0, 1), max_size=3)),
    st.tuples(st.just("ch_del"), CIDS, TYPES),
    st.tuples(st.sampled_from(LIST_OPS), CIDS, TYPES, UIDS),
    st.tuples(st.sampled_from(LIST_OPS), TMP_IDS, st.just(TEMP), UIDS),
    # ("tmp_set", id, uids, ttl_ms): stamped into expires_at = now + ttl when the batch is built
    st.tuples(st.just("tmp_set"), TMP_IDS, UIDS.filter(bool), st.integers(1, 20_000)),
    st.tuples(st.just("tmp_expire"), TMP_IDS),
    st.tuples(st.sampled_from(["sys_add", "sys_rm"]), UIDS),
)
BATCHES = st.tuples(st.integers(0, 8_000), st.lists(OPS, min_size=1, max_size=4))
"""(milliseconds since the previous batch, ops): time never goes backwards, as in the server."""


# -- a log living in its own trio loop -------------------------------------------------------


class LogThread:
    """``WriteAheadLog.run`` in ``trio.run`` on a thread: one server process's lifetime."""

    def __init__(self, data_dir: Path, next_lsn: int) -> None:
        self.log = WriteAheadLog(data_dir, next_lsn=next_lsn, segment_bytes=SEGMENT_BYTES)
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="wal-loop", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the log's trio loop did not start")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                await nursery.start(self.log.run)
                self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def call(self, afn: Callable[[], Awaitable[T]]) -> T:
        """Run ``afn`` in the log's loop; a hang fails (TooSlowError) instead of blocking."""
        assert self._token is not None

        async def bounded() -> T:
            with trio.fail_after(CALL_TIMEOUT_S):
                return await afn()

        return trio.from_thread.run(bounded, trio_token=self._token)

    def close(self) -> None:
        if self._thread.is_alive():
            self.call(self.log.close)
            self._thread.join(30)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error


# -- the machine -----------------------------------------------------------------------------

_EMPTY_EXTRAS = {k: v for k, v in State().as_plain().items() if k not in ("system_uids",
                                                                           "channels")}


def plain(state: State) -> dict[str, Any]:
    """The state's channels and system uids; parts this machine never writes (presence) must
    still be empty."""
    out = state.as_plain()
    extras = {k: out.pop(k) for k in list(out) if k not in ("system_uids", "channels")}
    assert extras == _EMPTY_EXTRAS
    return out



class RosterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="roster-model-")
        self.data = Path(self._tmp.name) / "data"
        self.model = Model()
        self.now = 1_700_000_000_000
        self.lsn = 0  # records submitted (and acknowledged) so far
        self.restarts = 0
        self.state, report = self._recover()
        self.wal = LogThread(self.data, report.last_lsn + 1)

    def _recover(self) -> tuple[State, RecoveryReport]:
        # many recoveries in one process: leave them to the collector
        return load_state(self.data, freeze=False)

    def _stamp(self, dt: int, ops: list[tuple[Any, ...]]) -> tuple[int, list[tuple[Any, ...]]]:
        self.now += dt
        stamped = [(*op[:3], self.now + op[3]) if op[0] == "tmp_set" else op for op in ops]
        return self.now, self._as_commands_build(stamped)

    def _as_commands_build(self, ops: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Drop list and flag ops on a temporary channel that is missing or expired at the
        batch's instant: the command layer refuses those (404 / temp_channel_unsupported), so
        they never reach a log. (Replayed over a fuzzy snapshot they would not be blind writes:
        a tmp_set on an expired channel starts afresh, but the snapshot may already hold that
        fresh channel.)"""
        now, kept = self.now, []
        live = {cid for (cid, ctype), ch in self.model.channels.items()
                if ctype == TEMP and ch["expires_at"] > now}
        for op in ops:
            name = op[0]
            if name == "tmp_set":
                (live.add if op[3] > now else live.discard)(op[1])
            elif name == "ch_del" and op[2] == TEMP:
                live.discard(op[1])
            elif (name == "ch_put" or name in LIST_OPS) and op[2] == TEMP and op[1] not in live:
                continue
            kept.append(op)
        return kept

    def _commit(self, batch: tuple[int, list[tuple[Any, ...]]]) -> int:
        """Submit + apply in one synchronous step, as Roster.commit does (no await between)."""
        lsn = self.wal.log.submit(batch)
        self.state.apply(batch)
        self.model.apply(*batch)
        self.lsn += 1
        assert lsn == self.lsn
        return lsn

    # -- rules -----------------------------------------------------------------------------

    @rule(batch=BATCHES)
    def write(self, batch: tuple[int, list[tuple[Any, ...]]]) -> None:
        stamped = self._stamp(*batch)

        async def durable() -> None:
            # In the log's own thread: submit() sets trio Events, which are not thread-safe.
            await self.wal.log.wait_durable(self._commit(stamped))

        self.wal.call(durable)

    @rule(batches=st.lists(BATCHES, min_size=2, max_size=6))
    def write_concurrently(self, batches: list[tuple[int, list[tuple[Any, ...]]]]) -> None:
        """Several requests in flight at once: they share flushes (group commit)."""
        stamped = [self._stamp(*b) for b in batches]

        async def many() -> None:
            async def one(batch: tuple[int, list[tuple[Any, ...]]]) -> None:
                await trio.lowlevel.checkpoint()
                await self.wal.log.wait_durable(self._commit(batch))

            async with trio.open_nursery() as nursery:
                for batch in stamped:
                    nursery.start_soon(one, batch)

        self.wal.call(many)

    @rule(during=st.lists(BATCHES, max_size=5), rows=st.integers(1, 3))
    def snapshot(self, during: list[tuple[int, list[tuple[Any, ...]]]], rows: int) -> None:
        """A fuzzy snapshot: writes keep landing while its chunks are built and written."""
        stamped = [self._stamp(*b) for b in during]

        async def snap() -> None:
            async def writes() -> None:
                for batch in stamped:
                    await trio.lowlevel.checkpoint()
                    await self.wal.log.wait_durable(self._commit(batch))

            async with trio.open_nursery() as nursery:
                # LSN and the state copy in one synchronous step, as Roster.snapshot does.
                lsn = self.wal.log.last_lsn
                chunks = self.state.snapshot_chunks(rows_per_chunk=rows)
                nursery.start_soon(writes)
                await self.wal.log.snapshot(lsn, chunks)

        self.wal.call(snap)

    def _restart(self, damage: Callable[[], None] | None = None) -> RecoveryReport:
        self.wal.close()
        if damage is not None:
            damage()
        self.state, report = self._recover()
        self.restarts += 1
        assert report.last_lsn == self.lsn
        assert plain(self.state) == self.model.plain()
        self.wal = LogThread(self.data, report.last_lsn + 1)
        return report

    @rule()
    def restart(self) -> None:
        assert self._restart().torn_tail is None

    @rule(dt=st.integers(0, 100), ops=st.lists(OPS, min_size=1, max_size=3),
          keep=st.floats(0.0, 0.99))
    def restart_after_torn_append(self, dt: int, ops: list[tuple[Any, ...]],
                                  keep: float) -> None:
        """A crash while appending the next record: part of its frame is on disk."""
        _, stamped = self._stamp(dt, ops)
        frame = encode_record(self.lsn + 1, RT_OPS, pack((self.now, stamped)))
        torn = frame[: max(1, int(len(frame) * keep))]

        def tear() -> None:
            last = list_segments(self.data)[-1].path
            with last.open("ab") as f:
                f.write(torn)

        assert self._restart(tear).torn_tail == len(torn)

    @precondition(lambda self: len(list_snapshots(self.data)) >= 2)
    @rule(cut=st.integers(1, 40))
    def restart_with_newest_snapshot_damaged(self, cut: int) -> None:
        """The newest snapshot lost its tail: the older one plus the log must still give
        everything (retention deletes only what the older one covers)."""
        snaps = list_snapshots(self.data)

        def damage() -> None:
            newest = snaps[-1].path
            newest.write_bytes(newest.read_bytes()[:-cut])

        assert self._restart(damage).snapshot_lsn == snaps[-2].lsn

    @invariant()
    def live_state_equals_model(self) -> None:
        assert plain(self.state) == self.model.plain()

    def teardown(self) -> None:
        try:
            self.wal.close()
        finally:
            self._tmp.cleanup()


RosterMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRosterModel = RosterMachine.TestCase
