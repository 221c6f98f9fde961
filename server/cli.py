"""``roster`` command line.

    roster serve [options]        run the server (recovers the log first)
    roster config [options]       print the effective configuration, secrets masked
    roster snapshot [options]     ask a running server to write a snapshot now (finds it and
                                  its token through --config, ROSTER_HOST/PORT/TOKEN or flags)
    roster wal inspect|verify|repair ...   examine or repair a data dir (server stopped)
    roster bench <what> ...       benchmarks (see bench/README.md)
    roster --version              print "roster <version>"

``python -m server ...`` is the same command.

Exit codes of ``roster serve`` (server/startup.py):

    0  clean stop (SIGTERM / SIGINT)
    1  the log failed while serving (write or fsync error: fail-stop)
    2  usage error or invalid configuration
    3  cannot listen: port in use, host not an address of this machine, no permission
    4  data dir unusable: not a directory, a parent is a file, not writable, disk full
    5  data dir locked by another server
    6  the log is corrupt (``roster wal verify`` shows where, ``roster wal repair`` repairs)
    130  SIGINT during recovery, before serving (once serving, SIGINT/SIGTERM stop cleanly: 0)

A refusal (2-6) prints exactly one line to stderr: ``roster: refusing to start: <reason>``.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from server import client, config
from server.version import version
from wal import cli as wal_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"roster {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    config.add_arguments(sub.add_parser("serve", help="run the server"))
    config.add_arguments(sub.add_parser("config", help="print the effective configuration"))
    client.add_arguments(sub.add_parser(
        "snapshot", help="ask a running server to write a snapshot now",
        description="Finds the server as `roster serve` was configured: flags > ROSTER_* "
                    "environment > --config file. Exit 0 done; 1 unreachable, refused or failed; "
                    "2 invalid configuration."))
    # Sub-tools with parsers of their own get the rest of the command line untouched.
    for name, text in (("wal", "inspect, verify or repair a data dir"), ("bench", "benchmarks")):
        tool = sub.add_parser(name, help=text, add_help=False)
        tool.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _serve(args: argparse.Namespace) -> int:
    # The server's imports (quart, hypercorn, trio) make many long-lived objects and no garbage;
    # the cyclic collector's passes over them were ~15% of a start's CPU. It is on again before
    # anything runs (recovery turns it off for itself: server/restore.py).
    gc.disable()
    try:
        from server import logs, startup
        from server.runner import run
    finally:
        gc.enable()

    settings = config.from_args(args)
    logs.setup(settings.log_level, settings.log_format)
    try:
        return run(settings)
    except KeyboardInterrupt:  # SIGINT before the signal handler is up (during recovery)
        print("roster: interrupted before serving", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    except Exception as exc:
        code = startup.exit_code(exc)
        if code is None:
            raise
        # One line, on stderr, for a person or a supervisor's journal; not logged as well, so
        # that the refusal is the only line a start that never served leaves behind.
        print(f"roster: refusing to start: {startup.reason(exc, str(settings.data_dir))}",
              file=sys.stderr, flush=True)
        return int(code)


def _wal_data_dir(data_dir: str | None, config_file: Path | None) -> Path:
    """The data dir ``roster serve`` would use with these flags (the ``roster wal`` tools')."""
    flags = {} if data_dir is None else {"data_dir": data_dir}
    try:
        return config.load(flags, config_file=config_file).data_dir
    except config.ConfigError as exc:
        raise wal_cli.InvalidConfiguration(str(exc)) from None


def _bench(rest: list[str]) -> int:
    # Imported here, not at the top: `roster serve` never loads the benchmarks.
    try:
        from bench import cli as bench_cli
    except ImportError as exc:
        print(f"roster bench: the benchmarks are not installed ({exc})", file=sys.stderr)
        return 2
    return bench_cli.main(rest, prog="roster bench")


def _delegate(command: str, rest: list[str]) -> int:
    """``roster wal`` is ``wal/cli.py``; ``roster bench`` is ``bench/cli.py``."""
    if command == "wal":
        parser = argparse.ArgumentParser(prog="roster")
        wal_cli.add_parser(parser.add_subparsers(dest="command", required=True))
        return wal_cli.run(parser.parse_args([command, *rest]), _wal_data_dir)
    return _bench(rest)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # ``roster wal --help`` and friends: argparse's REMAINDER does not take leading options, so
    # the sub-tools get whatever the top-level parser did not recognise.
    args, unknown = parser.parse_known_args(argv)
    if args.command in ("wal", "bench"):
        return _delegate(args.command, [*unknown, *args.rest])
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "config":
            sys.stdout.write(config.render(config.from_args(args)))
            return 0
    except config.ConfigError as exc:
        print(f"roster: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "snapshot":
        return client.snapshot(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
