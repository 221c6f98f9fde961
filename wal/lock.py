"""One process per data directory: an ``flock`` on the data directory itself.

flock (not a pid file) because the kernel releases it when the process dies, however it dies, so
a crash never leaves a stale lock behind. The lock is taken on the directory, not on a file in it:
a lock on ``data_dir/LOCK`` could be sidestepped by deleting that file (the next process would
lock a new inode while the first still held the old one, and both would append to the same log).
A directory cannot be deleted while it holds the log, and ``rmdir`` + ``mkdir`` gives a new, empty
directory: nothing to share. The pid is still written into ``LOCK``, only for the message a second
process prints ("locked by another process (pid N)"); if someone deleted it, the pid reads
"unknown" and the lock holds all the same.

Taking the lock also checks that the directory can be used, so a start fails with one clear
:class:`DataDirError` (path and reason) instead of a traceback from deep inside recovery: missing
parents are created; a path that is a file, a parent that is a file, a directory that cannot be
written (permissions, read-only mount) or a full disk are refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from pathlib import Path
from types import TracebackType

from wal.errors import DataDirError, LockedError
from wal.layout import LOCK_FILE

#: O_TMPFILE is refused with one of these where the file system does not support it
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})


def os_reason(exc: OSError) -> str:
    """A person's words for why a path cannot be used, with the system's own in brackets."""
    said = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not writable ({said})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({said})"
    if exc.errno == errno.ENOTDIR:
        return f"not a directory ({said})"
    return said


def lock_holder_text(data_dir: Path) -> str:
    """The pid the lock holder wrote into ``LOCK`` ("unknown" if it is gone or empty)."""
    try:
        with open(Path(data_dir) / LOCK_FILE, "rb") as f:
            return f.read(32).decode(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


def open_dir(data_dir: Path) -> int:
    """A read-only descriptor on the directory itself (what the lock is taken on)."""
    return os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _make_dir(data_dir: Path) -> None:
    """Create ``data_dir`` and missing parents, or raise :class:`DataDirError` saying why not."""
    try:
        if data_dir.is_dir():
            return
        if data_dir.exists() or data_dir.is_symlink():
            raise DataDirError(str(data_dir), "not a directory (a file is in the way)")
        for parent in data_dir.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise DataDirError(str(data_dir),
                                       f"a parent, {parent}, is a file, not a directory")
                break
        data_dir.mkdir(parents=True, exist_ok=True)
    except DataDirError:
        raise
    except OSError as exc:
        raise DataDirError(str(data_dir), f"cannot create it: {os_reason(exc)}") from None


def _probe_writable(dir_fd: int, data_dir: Path) -> None:
    """Create and drop a file in the directory; :class:`DataDirError` if that fails."""
    try:
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise
            name = f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
            os.unlink(name, dir_fd=dir_fd)
        os.close(fd)
    except OSError as exc:
        raise DataDirError(str(data_dir), os_reason(exc)) from None


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        #: where the holder's pid is written (for messages only: the lock is on the directory)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise at once (never waits): :class:`LockedError` if another
        process holds it, :class:`DataDirError` if the directory cannot be used."""
        if self._fd is not None:
            raise RuntimeError(f"{self.data_dir} is already locked by this DataDirLock")
        _make_dir(self.data_dir)
        try:
            fd = open_dir(self.data_dir)
        except OSError as exc:
            raise DataDirError(str(self.data_dir), os_reason(exc)) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(str(self.data_dir), lock_holder_text(self.data_dir)) from None
            _probe_writable(fd, self.data_dir)
            self._write_pid()
        except BaseException:
            os.close(fd)  # drops the flock, if it was taken
            raise
        self._fd = fd

    def _write_pid(self) -> None:
        try:
            pid_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.ftruncate(pid_fd, 0)
                os.pwrite(pid_fd, f"{os.getpid()}\n".encode(), 0)
            finally:
                os.close(pid_fd)
        except OSError as exc:
            raise DataDirError(str(self.data_dir),
                               f"cannot write {self.path.name}: {os_reason(exc)}") from None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Closing the descriptor drops the flock; unlock first anyway so a forked child that
        # inherited the descriptor cannot keep it alive.
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
