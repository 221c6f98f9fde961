"""``roster wal inspect | verify | repair``: the write-ahead log tools (logic in ``wal/tools.py``).

``roster wal ...`` runs this (server/cli.py). The data directory comes from the same configuration
as ``roster serve``'s (``--data-dir`` > ``ROSTER_DATA_DIR`` > ``data_dir`` in the ``--config`` file
> ``./data``), so the tools look at the directory the server uses, set up however it was. That
configuration is the server's, so the caller passes the function that resolves it
(:data:`DataDirOf`); this package stays free of ``server`` imports.

Exit codes: 0 clean / repaired; 1 a start would be refused (corruption), or repair refused (needs
``--drop-after-corruption``, or a server holds the data directory); 2 bad usage or not a data
directory; 3 damage that a start repairs by itself (a torn tail, an unusable snapshot).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wal import LockedError, tools


class InvalidConfiguration(Exception):
    """The configuration the data directory is taken from is invalid; the message says why."""


#: ``(--data-dir or None, --config or None) -> the data directory``; raises
#: :class:`InvalidConfiguration`
DataDirOf = Callable[[str | None, Path | None], Path]

_DATA_DIR_HELP = ("the server's data directory [env ROSTER_DATA_DIR; the --config file's "
                  "data_dir; default ./data]")


def _add_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="wal_command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--data-dir", default=argparse.SUPPRESS, help=_DATA_DIR_HELP)
        sub.add_argument("--config", type=Path, default=None,
                         help="the server's TOML file (its data_dir is used)")
        sub.add_argument("--json", action="store_true", help="print the result as JSON")

    common(commands.add_parser(
        "inspect", help="list segments (LSN range, records, bytes) and snapshots, and any damage",
        description="Read-only: shows what a start would find, without changing anything."))
    common(commands.add_parser(
        "verify", help="check every record and snapshot; exit 0 if clean",
        description="Read-only. Exit 0 clean; 1 a start would be refused (corruption); 3 damage "
                    "a start repairs by itself (torn tail, unusable snapshot); 2 not a data dir."))
    repair = commands.add_parser(
        "repair", help="repair a damaged log (keeps a backup; refuses while a server runs)",
        description="Truncates a torn tail and sets unusable snapshots aside, as a start would. "
                    "Corruption (damage followed by intact records, an LSN gap) is repaired only "
                    "with --drop-after-corruption, which keeps the prefix before the first damaged "
                    "record and moves the rest to wal/broken/. Every file it changes is copied to "
                    "a backup directory first.")
    common(repair)
    repair.add_argument("--drop-after-corruption", action="store_true",
                        help="drop everything after the first damaged record (records after it "
                             "are lost; a copy is kept)")
    repair.add_argument("--backup-dir", type=Path, default=None,
                        help="where to copy the files before changing them (default "
                             "DATA_DIR/repair-backup-<UTC time>)")


def add_parser(subparsers: Any) -> None:
    """Add ``wal`` with its sub-commands to ``roster``'s sub-parsers (argparse's
    ``add_subparsers()`` result)."""
    wal = subparsers.add_parser("wal", help="inspect, verify or repair the write-ahead log",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    # roster's main() reads args.log_level before dispatching; the tools log nothing.
    wal.set_defaults(log_level="WARNING")
    _add_commands(wal)


def _emit(text: str, stream: Any = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def run(args: argparse.Namespace, data_dir_of: DataDirOf) -> int:
    """Run the ``wal`` sub-command in ``args``; return the process exit code."""
    try:
        data_dir = data_dir_of(getattr(args, "data_dir", None), getattr(args, "config", None))
    except InvalidConfiguration as exc:
        _emit(f"roster wal: invalid configuration: {exc}", sys.stderr)
        return tools.EXIT_NOT_A_DATA_DIR  # 2, as for any other usage error
    try:
        if args.wal_command in ("inspect", "verify"):
            ins = tools.inspect(data_dir)
            if args.json:
                _emit(tools.to_json(ins))
            elif args.wal_command == "inspect":
                _emit(tools.format_inspection(ins))
            else:
                _emit(tools.format_verify(ins))
            return ins.exit_code
        if args.wal_command == "repair":
            result = tools.repair(data_dir, drop_after_corruption=args.drop_after_corruption,
                                  backup_dir=args.backup_dir)
            _emit(tools.to_json(result) if args.json else tools.format_repair(result))
            return result.exit_code
    except tools.NotADataDir as exc:
        _emit(f"roster wal: {exc}", sys.stderr)
        return tools.EXIT_NOT_A_DATA_DIR
    except LockedError as exc:
        _emit(f"roster wal repair: refusing: {exc}", sys.stderr)
        return tools.EXIT_REFUSED
    _emit(f"roster wal: unknown command {args.wal_command!r}", sys.stderr)
    return 2


def main(argv: Sequence[str] | None, data_dir_of: DataDirOf) -> int:
    """``roster wal COMMAND ...`` with ``argv`` the words after ``wal``."""
    parser = argparse.ArgumentParser(prog="roster wal", description=__doc__.split("\n\n")[0]
                                     if __doc__ else None)
    _add_commands(parser)
    return run(parser.parse_args(argv), data_dir_of)
