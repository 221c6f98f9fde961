"""The open log segment: its descriptor, how far it is written, rotation, cut-back, the spare.

Every method here blocks (file I/O) and runs in the flusher's worker thread, never two at once;
the log (wal/log.py) decides when, this class only knows how. Writes and fdatasyncs go through
the two callables it is given, so the log's failure hooks (tests, ROSTER_FAILPOINTS) reach the
header writes and the rotation fsync too.

The wal directory stays open for the segment's lifetime (its fsyncs), and the next segment is
created and held open ahead of time as ``wal/next.spare``; a rotation writes the header into the
spare, renames it to its segment name and only then closes the old segment, whose freed slot the
new spare takes. Without a spare and without a descriptor to make one, :meth:`rotate` changes
nothing and says so: the caller keeps appending to the current segment.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from wal.failpoints import failpoint
from wal.framing import HEADER_SIZE, encode_header
from wal.layout import segment_path, spare_segment_path, wal_dir

# Out of descriptors: a rotation waits for one instead of failing the log.
_NO_DESCRIPTOR = (errno.EMFILE, errno.ENFILE)

log = logging.getLogger("roster")


class Segment:
    def __init__(self, data_dir: Path, write: Callable[[int, memoryview], int],
                 fdatasync: Callable[[int], None]) -> None:
        self.data_dir = data_dir
        self._write = write
        self._fdatasync = fdatasync
        self.fd = -1
        self.dir_fd = -1
        self.spare_fd = -1
        self.first_lsn = 0
        #: end of what was written into the segment
        self.offset = 0
        #: end of the last acknowledged batch: where a failure cuts the file back to
        self.good_offset = 0

    @property
    def name(self) -> str:
        return segment_path(self.data_dir, self.first_lsn).name

    def open(self, first_lsn: int) -> None:
        """Open the directory, make a spare and turn it into the first segment."""
        self.dir_fd = os.open(wal_dir(self.data_dir), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.spare_fd = self._open_spare()
        self._start(self._promote_spare(first_lsn), first_lsn)
        self._refill_spare()

    def advance(self, written: int) -> None:
        self.offset += written

    def mark_good(self) -> None:
        self.good_offset = self.offset

    def timed_fdatasync(self) -> float:
        started = time.perf_counter()
        self._fdatasync(self.fd)
        return time.perf_counter() - started

    def rotate(self, first_lsn: int) -> float | None:
        """Make the current segment durable, then start the next one at ``first_lsn`` from the
        spare; return the fdatasync's seconds. None, touching nothing, if there is no spare and
        no descriptor to make one."""
        if self.spare_fd < 0:
            try:
                self.spare_fd = self._open_spare()
            except OSError as exc:
                if exc.errno in _NO_DESCRIPTOR:
                    return None
                raise
        seconds = self.timed_fdatasync()
        new_fd = self._promote_spare(first_lsn)
        # The old segment's slot is freed just before the new spare is opened, so the spare
        # usually gets it even when clients hold every other descriptor.
        old_fd, self.fd = self.fd, -1
        os.close(old_fd)
        self._start(new_fd, first_lsn)
        self._refill_spare()
        return seconds

    def cut_back(self) -> None:
        """Best effort, after a failure: drop un-acknowledged bytes so a restart cannot replay
        them, and close the segment. No fsync: the truncation reaching the disk is nice to
        have, retrying a failed fsync is not."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            os.ftruncate(fd, self.good_offset)
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        """On a clean close: the segment, the directory, and the spare (deleted: a clean
        shutdown leaves only segments behind)."""
        if self.spare_fd >= 0:
            spare_segment_path(self.data_dir).unlink(missing_ok=True)
        self.close_descriptors()

    def close_descriptors(self) -> None:
        for name in ("fd", "spare_fd", "dir_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def _start(self, fd: int, first_lsn: int) -> None:
        self.fd, self.first_lsn = fd, first_lsn
        self.offset = self.good_offset = HEADER_SIZE

    def _open_spare(self) -> int:
        """Create (or truncate a leftover) spare segment and keep it open. It needs no fsync:
        it only becomes a segment through :meth:`_promote_spare`."""
        return os.open(spare_segment_path(self.data_dir),
                       os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def _refill_spare(self) -> None:
        """After a rotation: take a new spare. A failure is not the log's: the next rotation
        tries again (and waits if descriptors are still short)."""
        try:
            self.spare_fd = self._open_spare()
        except OSError as exc:
            log.warning("no spare log segment for the next rotation (%s); trying again then",
                        exc)

    def _promote_spare(self, first_lsn: int) -> int:
        """Turn the open spare into the segment starting at ``first_lsn``: its header is written
        and fdatasync'ed before the rename, so a crash never leaves a segment with a half-made
        header, and the directory fsync makes the name durable."""
        path = segment_path(self.data_dir, first_lsn)
        if path.exists() and path.stat().st_size > HEADER_SIZE:
            # Recovery would have ended the log before this LSN; records here mean the caller
            # passed the wrong next_lsn. Never overwrite them.
            raise FileExistsError(errno.EEXIST, "segment already holds records", str(path))
        fd, self.spare_fd = self.spare_fd, -1
        try:
            header = encode_header(first_lsn)
            if self._write(fd, memoryview(header)) != len(header):
                raise OSError(errno.ENOSPC, "short write of a segment header")
            self._fdatasync(fd)
            failpoint("spare_before_rename")
            # Replaces a header-only leftover with the same first LSN.
            os.replace(spare_segment_path(self.data_dir), path)
            os.fsync(self.dir_fd)
        except BaseException:
            os.close(fd)
            raise
        return fd
