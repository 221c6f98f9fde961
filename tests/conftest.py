from __future__ import annotations

import os
import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.server_process import ServerProcess

TOKEN = "test-manager-token"

# Compiled-module caches, even where PYTHONDONTWRITEBYTECODE is set (as on the machine the
# suite's figures come from): without them each xdist worker re-runs pytest's assertion rewrite
# over ~440 modules (~4 s of CPU) and each of the ~175 server processes the suite starts
# compiles server/ and wal/ again (~0.1 s each). The caches go to a directory of their own
# under the temp dir, never into the source tree, which is what that variable usually
# protects. Set before any worker or server process starts, so they all inherit it.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None or sys.dont_write_bytecode:
    _prefix = os.path.join(tempfile.gettempdir(), f"roster-tests-pycache-{os.getuid()}")
    os.environ.setdefault("PYTHONPYCACHEPREFIX", _prefix)
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]
    sys.dont_write_bytecode = False

# CI replays the same examples on every run (a red run can be re-run as it was); locally every
# run explores new ones. A failing example prints its reproduction either way.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev")
settings.load_profile("ci" if os.environ.get("CI") else "dev")

#: the environment variable that fixes :func:`run_seed` (a failure message prints the seed used)
SEED_ENV = "ROSTER_TEST_SEED"
_CI_SEED = 14


def run_seed() -> int:
    """A randomised test's seed: ``$ROSTER_TEST_SEED`` if set, fixed in CI, random otherwise."""
    if value := os.environ.get(SEED_ENV):
        return int(value)
    return _CI_SEED if os.environ.get("CI") else random.randrange(1 << 30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh real server of its own (for restart, auth and start-up tests)."""
    with ServerProcess(tmp_path / "data", "--token", TOKEN) as proc:
        yield proc


# -- running the suite in parallel (pytest-xdist: `-n auto --dist worksteal` in pyproject.toml) --
#
# Most of the suite's time is real processes: ~175 `roster serve` starts (~0.4 s of CPU each, the
# imports), nats-server clusters, deadlines that must pass. Each worker starts with a contiguous
# share of the tests in collection order and takes work from the others' tails once its own
# share is done, so the long files go first: what is left to share at the end is short tests.
# (A module-scoped server or cluster may be started on a second worker that took some of its
# module's tests; that costs a start, never a result.)

#: suites by how long their files run, longest first
_LONG_FIRST = ("cluster", "fuzz", "bench", "crash", "resp", "model", "e2e", "wal", "app", "unit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        parts = Path(str(item.path)).relative_to(Path(__file__).parent).parts
        return _LONG_FIRST.index(parts[0]) if parts[0] in _LONG_FIRST else len(_LONG_FIRST)
    items.sort(key=rank)  # stable: the order within a suite stays as written


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Two workers per core: a worker spends much of its time waiting on a child process (a
    start, a deadline, a failover), and measured on 2 cores 4 workers beat 2."""
    usable = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)  # the cores this process may use, where the OS says
    return 2 * usable
