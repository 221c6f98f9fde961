from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server_process import ServerProcess

TOKEN = "test-manager-token"


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real `roster serve` for the route tests (each test uses its own channel ids)."""
    data = tmp_path_factory.mktemp("shared") / "data"
    with ServerProcess(data, "--token", TOKEN, "--fsync", "always") as proc:
        yield proc


@pytest.fixture
def client(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    with shared_server.client(TOKEN) as c:
        yield c


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh real server of its own (for restart, auth and start-up tests)."""
    with ServerProcess(tmp_path / "data", "--token", TOKEN) as proc:
        yield proc
