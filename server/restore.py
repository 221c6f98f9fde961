"""Rebuild a :class:`State` from a data directory: the one way the server, the benchmarks and the
tests recover, so that what a benchmark measures or a test checks is what ``roster serve`` loads."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, cast

from server.state import Batch, State
from wal import RecoveryMode, RecoveryProgress, RecoveryReport, recover


class RecoveryWatcher(Protocol):
    """Told about each snapshot chunk (after the state has loaded it) and about replay progress."""

    def snapshot_chunk(self, state: State, chunk: object) -> None: ...
    def log_replay(self, progress: RecoveryProgress) -> None: ...


def replayer(state: State, *, stream: bool = False) -> Callable[[int, object], None]:
    """The ``apply_record`` callback that applies each logged record to ``state``.

    A record is one batch, or with ``stream`` (cluster mode, where a local record is a stream
    record) a list of batches. Records are written by the server, so their shape is trusted.
    """
    if stream:
        def apply_stream(lsn: int, batches: object) -> None:
            for batch in cast(list[Batch], batches):
                state.apply(batch)

        return apply_stream

    def apply(lsn: int, batch: object) -> None:
        state.apply(cast(Batch, batch))

    return apply


def _ignore(message: str) -> None:
    pass


def load_state(
    data_dir: Path,
    *,
    mode: RecoveryMode = "strict",
    system_uids: Iterable[str] = (),
    stream: bool = False,
    freeze: bool = True,
    log: Callable[[str], None] = _ignore,
    watcher: RecoveryWatcher | None = None,
) -> tuple[State, RecoveryReport]:
    """Load the newest valid snapshot of ``data_dir`` and replay the log after it.

    With ``freeze`` (what ``roster serve`` does) the recovered objects are moved out of the cyclic
    collector's sight afterwards; tests that recover many times in one process pass ``False``.
    Errors from :func:`wal.recover` propagate unchanged.
    """
    uids = tuple(system_uids)
    state = State(uids)

    def load_chunk(chunk: object) -> None:
        state.load_chunk(chunk)
        if watcher is not None:
            watcher.snapshot_chunk(state, chunk)

    progress: Callable[[RecoveryProgress], None] | None = (
        watcher.log_replay if watcher is not None else None)
    # The state is millions of small objects with no reference cycles: the cyclic collector can
    # free nothing here, but its full passes over them took half of a restart (bench/RESULTS.md).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        report = recover(data_dir, mode=mode, load_snapshot_chunk=load_chunk,
                         apply_record=replayer(state, stream=stream), log=log, progress=progress)
    finally:
        if was_enabled:
            gc.enable()
    if freeze:
        # Recovered state is long-lived: out of the collector's sight, later full collections
        # (e.g. during a snapshot) do not walk it and stall the event loop.
        gc.freeze()
    if uids:
        state.system_uids.update(uids)
    return state, report
