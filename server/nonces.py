"""The RongCloud nonce cache on disk, ``<data_dir>/rc_nonces``: a captured signed request cannot
be replayed after a restart while its timestamp is still inside the ±300 s window.

One line per accepted nonce, ``[until_ms,"nonce"]\\n`` (JSON, so any header text round-trips),
where ``until_ms`` is when the nonce stops mattering (its timestamp + 300 s). A line is appended
with one ``write`` before the request is served, so a process crash (kill -9) never forgets a
served nonce. Under ``--fsync always`` the file is also fdatasync'ed before the answer (requests
waiting together share one fdatasync); under ``interval`` and ``none`` only when it is rewritten,
so a power loss may forget the newest nonces: the same trade the log makes.

At start the unexpired lines are loaded and the file is rewritten without the expired ones and
without a torn or garbled line. While serving, the file is rewritten once most of its lines have
expired: the live entries go to ``rc_nonces.tmp`` (fsynced) in a worker thread, the lines appended
meanwhile are added, then rename and a directory fsync.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import trio

log = logging.getLogger("roster")

FILE_NAME: Final = "rc_nonces"
#: rewrite while serving only past this many lines, and only when most of them have expired
COMPACT_MIN_LINES: Final = 4096
#: the longest nonce a line may hold (the verifier refuses longer ones anyway)
MAX_NONCE_CHARS: Final = 64

Entry = tuple[str, int]  # (nonce, until_ms)

_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


def encode_line(nonce: str, until_ms: int) -> bytes:
    return json.dumps([until_ms, nonce], separators=(",", ":")).encode() + b"\n"


def decode_line(line: bytes) -> Entry | None:
    """The entry of one complete line, or None if the line is not one this module wrote."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if (isinstance(value, list) and len(value) == 2 and type(value[0]) is int
            and isinstance(value[1], str) and 1 <= len(value[1]) <= MAX_NONCE_CHARS):
        return value[1], value[0]
    return None


def read_entries(path: Path, now_ms: int) -> tuple[list[Entry], int]:
    """The unexpired entries of ``path`` in file order, and how many lines were unreadable
    (a torn last line counts as one)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    lines = data.split(b"\n")
    bad = 1 if lines[-1] else 0  # no newline at the end: the last write was cut short
    entries: list[Entry] = []
    for line in lines[:-1]:
        entry = decode_line(line)
        if entry is None:
            bad += 1
        elif entry[1] >= now_ms:
            entries.append(entry)
    return entries, bad


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class NonceFile:
    """The append-only file behind :class:`server.rcsign.ReplayCache`."""

    def __init__(self, path: Path, fd: int, lines: int, *, fsync_each: bool) -> None:
        self.path = path
        self.fsync_each = fsync_each
        self._fd = fd
        #: lines in the file (what a rewrite would shrink)
        self.lines = lines
        self._appended = 0  # lines appended since open
        self._synced = 0  # of those, how many are known to be fdatasync'ed
        self._lock = trio.Lock()
        #: lines appended while a rewrite runs; None when none runs
        self._during: list[bytes] | None = None
        self.write_errors = 0

    @classmethod
    def open(cls, data_dir: Path, now_ms: int, *, fsync_each: bool) -> tuple[NonceFile,
                                                                              list[Entry]]:
        """Load the unexpired entries and rewrite the file with just them (blocking: call at
        start-up, before serving)."""
        path = Path(data_dir) / FILE_NAME
        entries, bad = read_entries(path, now_ms)
        if bad:
            log.warning("%s: %d unreadable line(s) skipped (a torn last write is one)", path, bad)
        fd = _replace_file(path, b"".join(encode_line(n, u) for n, u in entries))
        return cls(path, fd, len(entries), fsync_each=fsync_each), entries

    def append(self, nonce: str, until_ms: int) -> None:
        """Record an accepted nonce (a page-cache write; :meth:`settle` makes it durable). A
        failed write is logged and counted, never raised: the cache in memory still refuses the
        replay until a restart."""
        line = encode_line(nonce, until_ms)
        try:
            _write_all(self._fd, line)
        except OSError as exc:
            self.write_errors += 1
            log.error("cannot record a RongCloud nonce in %s: %s", self.path, exc)
            return
        if self._during is not None:
            self._during.append(line)
        self._appended += 1
        self.lines += 1

    async def settle(self, live: Callable[[], list[Entry]]) -> None:
        """Before answering: fdatasync what was appended (``fsync_each``), and rewrite the file
        if most of its lines have expired (``live`` lists the entries to keep)."""
        if self.fsync_each and self._synced < self._appended:
            target = self._appended
            async with self._lock:
                if self._synced < target:
                    upto = self._appended
                    try:
                        await trio.to_thread.run_sync(_fdatasync, self._fd)
                    except OSError as exc:
                        # The request is still served: the cache in memory refuses its replay
                        # until a restart; the error is what an operator needs to see.
                        self.write_errors += 1
                        log.error("cannot fsync the RongCloud nonces in %s: %s", self.path, exc)
                        return
                    self._synced = upto
        if self.lines >= COMPACT_MIN_LINES and not self._lock.locked():
            entries = live()
            if len(entries) * 2 < self.lines:
                async with self._lock:
                    await self._rewrite(entries)

    async def _rewrite(self, entries: Iterable[Entry]) -> None:
        data = b"".join(encode_line(n, u) for n, u in entries)
        count = data.count(b"\n")
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._during = []
        try:
            fd = await trio.to_thread.run_sync(_write_tmp, tmp, data)
        except OSError as exc:
            self._during = None
            log.error("cannot rewrite %s (the old file stays in use): %s", self.path, exc)
            return
        # No await from here to the swap: nothing is appended to the old file unseen.
        during, self._during = self._during, None
        try:
            _write_all(fd, b"".join(during))
            os.replace(tmp, self.path)
        except OSError as exc:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            log.error("cannot rewrite %s (the old file stays in use): %s", self.path, exc)
            return
        old, self._fd = self._fd, fd
        self.lines = count + len(during)
        upto = self._appended
        os.close(old)
        try:
            await trio.to_thread.run_sync(_sync_new, fd, self.path.parent)
        except OSError as exc:
            log.error("cannot fsync the rewritten %s: %s", self.path, exc)
            return
        self._synced = max(self._synced, upto)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def _write_tmp(tmp: Path, data: bytes) -> int:
    fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, data)
        _fdatasync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd


def _sync_new(fd: int, directory: Path) -> None:
    _fdatasync(fd)
    _fsync_dir(directory)


def _replace_file(path: Path, data: bytes) -> int:
    """Write ``path`` anew with ``data`` (tmp + fsync + rename + fsync dir); return an append
    descriptor on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = _write_tmp(tmp, data)
    try:
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd

