"""The write-ahead log's lifecycle: one state, the legal moves in one table.

Why a table: the log used to keep its lifecycle in several flags checked ad hoc at each entry
point, so "may this happen now?" had as many answers as there were call sites. Here every
entry point names the action it is about to take and the table says whether that action is
legal in the current state and which state follows. An action missing from a state's row is a
programming error (``run()`` twice, ``started`` before ``run``) and raises ``RuntimeError``
with both names; the log turns the expected refusals (a submit after a failure or after close)
into its own errors before it gets here.

::

    state      action     next       who takes the action
    NEW        run        STARTING   run(), before the first segment is opened
    NEW        submit     NEW        submit() before run(): the records wait for the flusher
    NEW        close      CLOSED     close() before run(): nothing was opened
    STARTING   submit     STARTING
    STARTING   started    RUNNING    run(), once the first segment is open
    STARTING   close      CLOSING    close() while the segment is being opened
    STARTING   fail       FAILED     the first segment could not be made
    STARTING   stop       CLOSED     run() cancelled before it started
    RUNNING    submit     RUNNING
    RUNNING    snapshot   RUNNING
    RUNNING    close      CLOSING    close(): the flusher drains, syncs and closes the files
    RUNNING    fail       FAILED     a write or an fsync raised
    RUNNING    stop       CLOSED     run() cancelled: unwritten records are refused
    CLOSING    started    CLOSING    close() came during start-up: the flusher drains at once
    CLOSING    close      CLOSING    close() again waits for the same end
    CLOSING    fail       FAILED     the last write or fsync raised
    CLOSING    stop       CLOSED     the flusher closed the files
    FAILED     close      FAILED     close() after a failure is a no-op wait
    FAILED     stop       FAILED     run() ends; the failure stays what callers see
    CLOSED     close      CLOSED

Only the flusher (run) takes ``started``, ``fail`` and ``stop``; ``submit`` and ``snapshot``
are the callers'. FAILED and CLOSED are final: nothing brings a log back, a restart makes a new
one after recovery. ``snapshot`` is legal only while RUNNING because a snapshot needs the
flusher to rotate the segment and to make the log durable before the snapshot is committed.
"""

from __future__ import annotations

import enum


class LogState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    FAILED = "failed"
    CLOSED = "closed"


class LogAction(enum.Enum):
    RUN = "run"
    STARTED = "started"
    SUBMIT = "submit"
    SNAPSHOT = "snapshot"
    CLOSE = "close"
    FAIL = "fail"
    STOP = "stop"


_S, _A = LogState, LogAction

TRANSITIONS: dict[LogState, dict[LogAction, LogState]] = {
    _S.NEW: {_A.RUN: _S.STARTING, _A.SUBMIT: _S.NEW, _A.CLOSE: _S.CLOSED},
    _S.STARTING: {_A.SUBMIT: _S.STARTING, _A.STARTED: _S.RUNNING, _A.CLOSE: _S.CLOSING,
                  _A.FAIL: _S.FAILED, _A.STOP: _S.CLOSED},
    _S.RUNNING: {_A.SUBMIT: _S.RUNNING, _A.SNAPSHOT: _S.RUNNING, _A.CLOSE: _S.CLOSING,
                 _A.FAIL: _S.FAILED, _A.STOP: _S.CLOSED},
    _S.CLOSING: {_A.STARTED: _S.CLOSING, _A.CLOSE: _S.CLOSING, _A.FAIL: _S.FAILED,
                 _A.STOP: _S.CLOSED},
    _S.FAILED: {_A.CLOSE: _S.FAILED, _A.STOP: _S.FAILED},
    _S.CLOSED: {_A.CLOSE: _S.CLOSED},
}

# Where callers' records are no longer taken: the log raises its own error for these states.
REFUSING = frozenset({LogState.CLOSING, LogState.FAILED, LogState.CLOSED})


class Lifecycle:
    """The current state and the one way to change it."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = LogState.NEW

    def allows(self, action: LogAction) -> bool:
        return action in TRANSITIONS[self.state]

    def take(self, action: LogAction) -> LogState:
        """Move along the table; an action the current state has no row for is a bug."""
        try:
            self.state = TRANSITIONS[self.state][action]
        except KeyError:
            raise RuntimeError(f"write-ahead log: cannot {action.value} while "
                               f"{self.state.value}") from None
        return self.state
