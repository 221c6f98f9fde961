"""``roster``'s own command line: the version it reports and where that comes from."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from server import client, config
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


@pytest.mark.parametrize(("host", "port", "url", "expected"), [
    ("127.0.0.1", 5001, None, "http://127.0.0.1:5001"),
    ("0.0.0.0", 7000, None, "http://127.0.0.1:7000"),
    ("::", 7000, None, "http://[::1]:7000"),
    ("::1", 7000, None, "http://[::1]:7000"),
    ("db.internal", 80, None, "http://db.internal:80"),
    ("127.0.0.1", 5001, "127.0.0.1:6000", "http://127.0.0.1:6000"),
    ("127.0.0.1", 5001, "[::1]:6000", "http://[::1]:6000"),
    ("127.0.0.1", 5001, "https://roster.example/", "https://roster.example"),
    ("127.0.0.1", 5001, "http://0.0.0.0:6000/base/", "http://127.0.0.1:6000/base"),
])
def test_client_base_url(host: str, port: int, url: str | None, expected: str) -> None:
    settings = config.Settings(host=host, port=port)
    assert client.base_url(settings, url) == expected


@pytest.mark.parametrize("url", ["ftp://h:1", "h:notaport", "http://", "http://h:99999"])
def test_client_base_url_refuses(url: str) -> None:
    with pytest.raises(client.UsageError):
        client.base_url(config.Settings(), url)


@pytest.mark.parametrize(("command", "usage"), [
    ((sys.executable, "-m", "server", "bench", "--help"), "usage: roster bench "),
    ((sys.executable, "-m", "server", "bench", "decide", "--help"), "usage: roster bench decide "),
    ((sys.executable, "-m", "bench", "--help"), "usage: python -m bench "),
    ((sys.executable, "-m", "bench", "decide", "--help"), "usage: python -m bench decide "),
])
def test_bench_help_names_the_command_that_was_run(command: tuple[str, ...], usage: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                          cwd=PYPROJECT.parent)
    assert done.returncode == 0 and done.stdout.startswith(usage), done
