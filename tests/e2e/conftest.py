"""Fixtures of the end-to-end suite (the servers themselves come from ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.e2e.helpers import guard, new_id


@pytest.fixture
def api(client: httpx.Client) -> httpx.Client:
    """The manager-token client of the shared server; any 5xx answer fails the test."""
    return guard(client)


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
