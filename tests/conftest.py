from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.server_process import ServerProcess

TOKEN = "test-manager-token"

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
