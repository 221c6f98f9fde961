"""Entry point of the one-file ``roster`` executable that ``pyinstaller roster.spec`` builds.

It is ``roster`` (:func:`server.cli.main`) with one addition. In a frozen build ``sys.executable``
is the executable itself, not a Python interpreter, yet the benchmarks start their child
processes as ``[sys.executable, "-m", "server", "serve", ...]``, ``[..., "-m", "bench.floor", ...]``
and ``[..., "-c", code, ...]``. So that ``roster bench http`` (and the others) work from the
binary too, a frozen ``roster`` given ``-m`` runs one of its own modules the way ``python -m``
would, and ``-c`` runs the code it is given; nothing else is treated as an interpreter option.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable, Sequence

from server.cli import main

#: the packages whose modules ``roster -m`` runs: the binary carries these and nothing else of ours
RUNNABLE_PACKAGES = ("server", "bench", "wal")


def runnable(module: str) -> bool:
    return module.split(".", 1)[0] in RUNNABLE_PACKAGES


def interpreter_mode(argv: Sequence[str]) -> int | None:
    """Run ``-m MODULE ARGS`` / ``-c CODE ARGS`` like ``python`` would; None for anything else."""
    if len(argv) < 2 or argv[0] not in ("-m", "-c"):
        return None
    option, target, rest = argv[0], argv[1], list(argv[2:])
    if option == "-m":
        if not runnable(target):
            print(f"roster: -m runs only roster's own modules ({', '.join(RUNNABLE_PACKAGES)}), "
                  f"not {target!r}", file=sys.stderr)
            return 2
        sys.argv = [target, *rest]
        return _exit_code(lambda: runpy.run_module(target, run_name="__main__", alter_sys=True))
    sys.argv = ["-c", *rest]
    return _exit_code(lambda: exec(compile(target, "<string>", "exec"), {"__name__": "__main__"}))


def _exit_code(body: Callable[[], object]) -> int:
    """0 when ``body`` returns, the ``SystemExit`` code when it exits (as the interpreter would)."""
    try:
        body()
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    return 0


def run() -> int:
    if getattr(sys, "frozen", False):
        code = interpreter_mode(sys.argv[1:])
        if code is not None:
            return code
    return main()


if __name__ == "__main__":
    sys.exit(run())
