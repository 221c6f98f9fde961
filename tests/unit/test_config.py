"""Configuration: one option table, precedence flags > env > file > defaults, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from server import config
from server.config import ConfigError, Settings, load, render
from tests.server_process import run_cli


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load({}, env={})
    assert s == Settings()
    assert (s.port, s.fsync, s.data_dir, s.host) == (5001, "always", Path("./data"), "127.0.0.1")


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    f = write(tmp_path, 'fsync = "none"\nport = 1111\ntoken = "from-file"\ntmpchannel_ttl = 600\n')
    env = {"ROSTER_PORT": "2222", "ROSTER_TOKEN": "from-env"}
    s = load({"token": "from-flag"}, env=env, config_file=f)
    assert (s.fsync, s.port, s.token, s.tmpchannel_ttl) == ("none", 2222, "from-flag", 600)


@pytest.mark.parametrize(("source", "message"), [
    ({"env": {"ROSTER_FSYNC": "sometimes"}}, "environment ROSTER_FSYNC: invalid fsync"),
    ({"env": {"ROSTER_PORT": "70000"}}, "invalid port: must be 0-65535"),
    ({"flags": {"tmpchannel_ttl": "5"}}, "flag --tmpchannel-ttl: invalid tmpchannel_ttl"),
    ({"file": "prot = 1\n"}, "unknown option 'prot'"),
    ({"file": "port = [\n"}, "is not valid TOML"),
    ({"file": 'port = "x"\n'}, "invalid port"),
    ({"file": "access_log = 3\n"}, "invalid access_log"),
    ({"env": {"ROSTER_RC_APP_KEY": "k"}}, "rc_app_key and rc_app_secret must be set together"),
    ({"env": {"ROSTER_WEBHOOK_URL": "ftp://x"}}, "http:// or https://"),
    # a token that HTTP (Latin-1 headers) and UTF-8 paths would see as different bytes
    ({"flags": {"token": "pässwörd"}}, "invalid token: must be printable ASCII"),
    ({"env": {"ROSTER_TOKEN": "two words"}}, "invalid token: must be printable ASCII"),
])
def test_invalid_configuration_is_refused_naming_the_source(
        tmp_path: Path, source: dict[str, object], message: str) -> None:
    f = write(tmp_path, str(source["file"])) if "file" in source else None
    with pytest.raises(ConfigError, match=message):
        load(source.get("flags", {}), env=source.get("env", {}), config_file=f)  # type: ignore[arg-type]


def test_render_masks_secrets_and_round_trips(tmp_path: Path) -> None:
    s = load({"token": "s3cret", "rc_app_key": "key", "rc_app_secret": "hush",
              "system_uids": "a,b"}, env={})
    text = render(s)
    assert "s3cret" not in text and "hush" not in text
    assert 'token = "********"' in text and 'rc_app_key = "key"' in text
    # what roster config prints (secrets aside) is a valid config file giving the same settings
    f = write(tmp_path, "\n".join(line for line in text.splitlines() if "****" not in line))
    again = load({"token": "s3cret", "rc_app_secret": "hush"}, env={}, config_file=f)
    assert again == s


def test_every_setting_has_exactly_one_option() -> None:
    from dataclasses import fields
    assert [o.name for o in config.OPTIONS] == [f.name for f in fields(Settings)]


def test_roster_config_command(tmp_path: Path) -> None:
    f = write(tmp_path, 'fsync = "interval"\n')
    r = run_cli("config", "--config", str(f), "--port", "9", env={"ROSTER_TOKEN": "tok"})
    assert r.returncode == 0, r.stderr
    assert 'fsync = "interval"' in r.stdout and "port = 9" in r.stdout
    assert "tok" not in r.stdout.replace("token", "")


def test_serve_refuses_invalid_configuration_before_starting(tmp_path: Path) -> None:
    r = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--resp-port", "0",
                "--fsync", "maybe")
    assert r.returncode == 2
    assert "invalid configuration" in r.stderr and "fsync" in r.stderr
    assert not (tmp_path / "d").exists()
