"""One process per data directory: an ``flock`` on ``data_dir/LOCK``.

flock (not a pid file) because the kernel releases it when the process dies, however it dies, so
a crash never leaves a stale lock behind. The pid written into the file is only for the message.
The file is never deleted: unlinking a lock file lets a third process lock a new inode while the
second still holds the old one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from wal.errors import LockedError
from wal.layout import LOCK_FILE


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockedError` at once (never waits)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this DataDirLock")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"data directory {self.data_dir} is locked by another process (pid {holder}); "
                "is another roster running on it?"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

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
