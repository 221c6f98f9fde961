"""Fixtures of the Redis-protocol suite: real ``roster serve`` processes, real clients.

``shared_server`` (manager token, ``--fsync always``) serves both ports; the RESP address is
``shared_server.resp`` and ``api`` is an HTTP client of the same process. ``r`` (RESP2) and
``r3`` (RESP3) are redis-py clients that authenticated with the token; tests use fresh ids
(``new_id``) because the server is shared by the session.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, new_id, running
from tests.server_process import ServerProcess

REDIS_CLI = shutil.which("redis-cli")


def resp_address(proc: ServerProcess) -> tuple[str, int]:
    assert proc.resp is not None, "the server was started without its RESP port"
    return proc.resp


def connect(proc: ServerProcess, *, protocol: int = 2, token: str | None = TOKEN,
            decode: bool = True, timeout: float = 30.0) -> redis.Redis:
    """A redis-py client; a reply slower than ``timeout`` seconds raises ``redis.TimeoutError``."""
    host, port = resp_address(proc)
    return redis.Redis(host=host, port=port, password=token, protocol=protocol,
                       decode_responses=decode, socket_timeout=timeout)


def raw_socket(proc: ServerProcess, timeout: float = 10.0) -> socket.socket:
    """A plain TCP connection to the RESP port (for inline commands and broken input)."""
    return socket.create_connection(resp_address(proc), timeout=timeout)


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running(tmp_path_factory.mktemp("resp") / "data", "--fsync", "always") as proc:
        yield proc


@pytest.fixture(scope="session")
def api(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    """The HTTP side of the same server, with the manager token; any 5xx fails the test."""
    with client_for(shared_server.url, TOKEN) as c:
        yield c


@pytest.fixture
def r(shared_server: ServerProcess) -> Iterator[redis.Redis]:
    with connect(shared_server) as client:
        yield client


@pytest.fixture
def r3(shared_server: ServerProcess) -> Iterator[redis.Redis]:
    with connect(shared_server, protocol=3) as client:
        yield client


@pytest.fixture
def gid() -> str:
    return new_id("g")
