"""Fixtures of the end-to-end suite.

``shared_server`` is one real server (manager token, ``--fsync always``) for the whole session;
``api`` is one guarded client for the whole session instead of a new ``httpx.Client`` per test (a
connection and a client set-up per test would be most of the suite's runtime).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, new_id, running
from tests.server_process import ServerProcess


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real `roster serve` for the route tests (each test uses its own channel ids)."""
    with running(tmp_path_factory.mktemp("shared") / "data", "--fsync", "always") as proc:
        yield proc


@pytest.fixture(scope="session")
def session_api(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    with client_for(shared_server.url, TOKEN) as c:
        yield c


@pytest.fixture
def api(session_api: httpx.Client) -> httpx.Client:
    """The manager-token client of the shared server; any 5xx answer fails the test."""
    return session_api


@pytest.fixture
def client(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    """A client of its own on the shared server (for tests that read its counters)."""
    with shared_server.client(TOKEN) as c:
        yield c


@pytest.fixture
def ids() -> Callable[[str], str]:
    """``ids("g")`` → a fresh id no other test uses (the shared server is never reset)."""
    return new_id


@pytest.fixture
def uid() -> str:
    return new_id("u")


@pytest.fixture
def gid() -> str:
    """A fresh, not yet existing group id."""
    return new_id("g")
