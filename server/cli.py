"""``roster`` command line: ``roster serve`` (and ``python -m server serve``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from server.config import Settings
from wal import CorruptLogError, LockedError, WalError


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("port must be 0-65535")
    return value


def _ttl(text: str) -> int:
    value = int(text)
    if not 60 <= value <= 604_800:
        raise argparse.ArgumentTypeError("ttl must be 60-604800 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = Settings()
    serve = sub.add_parser("serve", help="run the server (recovers the log first)")
    serve.add_argument("--data-dir", type=Path, default=d.data_dir,
                       help="where the log and snapshots live (default ./data)")
    serve.add_argument("--host", default=d.host, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=d.port,
                       help="listen port (default 5001; 0 picks a free one)")
    serve.add_argument("--fsync", choices=("always", "interval", "none"), default=d.fsync,
                       help="always: ack after fdatasync (default); interval: fsync every second; "
                            "none: the kernel decides")
    serve.add_argument("--token", default=d.token,
                       help="manager token required in the 'token' header of JSON-API calls")
    serve.add_argument("--tmpchannel-ttl", type=_ttl, default=d.tmpchannel_ttl,
                       help="seconds a temporary channel lives after its last subscriber_set")
    serve.add_argument("--snapshot-bytes", type=int, default=d.snapshot_bytes,
                       help="take a snapshot after this many log bytes (default 64 MiB)")
    serve.add_argument("--wal-recovery", choices=("strict", "truncate"), default=d.wal_recovery,
                       help="strict: refuse to start on a corrupt log (default); truncate: drop "
                            "everything from the first damaged record (a copy is kept)")
    serve.add_argument("--system-uid", action="append", default=[], dest="system_uids",
                       help="an initial system account (repeatable)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        from server.runner import run

        settings = Settings(
            data_dir=args.data_dir, host=args.host, port=args.port, fsync=args.fsync,
            token=args.token, tmpchannel_ttl=args.tmpchannel_ttl,
            snapshot_bytes=args.snapshot_bytes, wal_recovery=args.wal_recovery,
            system_uids=tuple(args.system_uids), access_log=args.access_log,
        )
        try:
            return run(settings)
        except (CorruptLogError, LockedError, WalError) as exc:
            print(f"roster: refusing to start: {exc}", file=sys.stderr)
            return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
