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


def test_wal_tools_find_the_data_dir_as_serve_does(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROSTER_DATA_DIR", raising=False)  # run_cli passes os.environ on
    data = tmp_path / "data"
    (data / "wal").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # not a data dir: the tools say so (exit 2)
    toml = tmp_path / "roster.toml"
    toml.write_text(f'data_dir = "{data}"\nport = 7001\n')
    cases = [
        (("--config", str(toml)), {}, 0),
        ((), {"ROSTER_DATA_DIR": str(data)}, 0),
        (("--config", str(toml)), {"ROSTER_DATA_DIR": str(elsewhere)}, 2),  # env > file
        (("--data-dir", str(data)), {"ROSTER_DATA_DIR": str(elsewhere)}, 0),  # flag > env
    ]
    for args, env, code in cases:
        done = run_cli("wal", "verify", *args, env=env)
        assert done.returncode == code, (args, env, done)
        if code == 0:
            assert done.stdout.startswith("ok: "), done
        else:
            assert f"{elsewhere} is not a Roster data directory" in done.stderr, done


def test_wal_tools_refuse_a_bad_config_in_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "roster.toml"
    toml.write_text("port = 'x'\n")
    done = run_cli("wal", "inspect", "--config", str(toml))
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.startswith("roster wal: invalid configuration: config file ") \
        and len(done.stderr.splitlines()) == 1, done
