"""Settings of one Roster process, with their defaults (SPEC §7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

FsyncPolicy = Literal["always", "interval", "none"]
RecoveryMode = Literal["strict", "truncate"]


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 5001
    fsync: FsyncPolicy = "always"
    #: manager token; None = the JSON API is open (fine on loopback, warned about elsewhere)
    token: str | None = None
    #: seconds a temporary channel lives after its last subscriber_set (WuKongIM's tag expiry)
    tmpchannel_ttl: int = 1200
    max_body_bytes: int = 4 * 1024 * 1024
    max_uids_per_request: int = 10_000
    max_checks_per_request: int = 10_000
    #: take a snapshot once this many log bytes were written since the last one
    snapshot_bytes: int = 64 * 1024 * 1024
    segment_bytes: int = 64 * 1024 * 1024
    wal_recovery: RecoveryMode = "strict"
    system_uids: tuple[str, ...] = field(default_factory=tuple)
    #: how often expired temporary channels are purged (the purge is logged)
    purge_interval_s: float = 10.0
    access_log: bool = False

    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "::1", "localhost") or self.host.startswith("127.")
