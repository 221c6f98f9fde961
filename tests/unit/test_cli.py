"""``roster``'s own command line: the version it reports and where that comes from."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from server import version as version_module
from server.version import FALLBACK, version
from tests.server_process import run_cli

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def project_version() -> str:
    with PYPROJECT.open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@pytest.fixture
def fresh_version() -> Iterator[None]:
    version.cache_clear()
    yield
    version.cache_clear()


def test_fallback_is_pyprojects_version() -> None:
    assert project_version() == FALLBACK


def test_version_is_the_installed_packages(fresh_version: None) -> None:
    assert version() == metadata.version("roster") == project_version()


@pytest.mark.parametrize("failure", [metadata.PackageNotFoundError("roster"), OSError("gone")])
def test_without_package_metadata_the_fallback_is_used(
        monkeypatch: pytest.MonkeyPatch, fresh_version: None, failure: Exception) -> None:
    def missing(name: str) -> str:
        raise failure

    monkeypatch.setattr(version_module.metadata, "version", missing)
    assert version() == FALLBACK


def test_roster_version_flag() -> None:
    done = run_cli("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"roster {project_version()}\n", "")
