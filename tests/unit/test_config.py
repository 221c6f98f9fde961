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
    ({"flags": {"tmpchannel_ttl": "0"}}, "flag --tmpchannel-ttl: invalid tmpchannel_ttl: "
                                         "must be 1-604800, got 0"),
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


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("port", "notaport", "expected an integer, got 'notaport'"),
    ("port", "5_001", "expected an integer, got '5_001'"),
    ("port", "\u0665", "expected an integer, got '\u0665'"),  # Arabic-Indic digit five
    ("port", "", "expected an integer, got ''"),
    ("resp_idle_timeout", "soon", "expected a number of seconds, got 'soon'"),
    ("resp_idle_timeout", "nan", "expected a number of seconds, got 'nan'"),
    ("http_header_timeout", "x", "expected a positive number, got 'x'"),
    ("http_header_timeout", "inf", "expected a positive number, got 'inf'"),
    ("http_header_timeout", "1_0", "expected a positive number, got '1_0'"),
    ("purge_interval_s", True, "expected a positive number, got True"),
])
def test_number_errors_are_ours_not_pythons(name: str, value: object, expected: str) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(ConfigError) as info:
        load({name: value}, env={})
    assert str(info.value) == f"flag {flag}: invalid {name}: {expected}"


@pytest.mark.parametrize(("name", "text", "value"), [
    ("port", " 42 ", 42), ("port", "+42", 42), ("resp_idle_timeout", "0", 0.0),
    ("resp_idle_timeout", "2.5", 2.5), ("http_body_timeout", ".5", 0.5),
    ("http_idle_timeout", "1e3", 1000.0), ("tmpchannel_ttl", "1", 1),
])
def test_numbers_accepted(name: str, text: str, value: float) -> None:
    assert getattr(load({name: text}, env={}), name) == value


def test_file_numbers_keep_their_toml_types(tmp_path: Path) -> None:
    f = write(tmp_path, "tmpchannel_ttl = 2\nhttp_header_timeout = 3\nresp_idle_timeout = 0.5\n")
    s = load({}, env={}, config_file=f)
    assert (s.tmpchannel_ttl, s.http_header_timeout, s.resp_idle_timeout) == (2, 3.0, 0.5)


def test_access_log_help_does_not_ask_for_a_value() -> None:
    import argparse
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    text = parser.format_help()
    assert "(true/false)" not in text and "ACCESS_LOG" not in text.replace("ROSTER_ACCESS_LOG", "")
    assert parser.parse_args(["--access-log"]).access_log is True


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


def test_serve_bad_port_is_one_line(tmp_path: Path) -> None:
    r = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--port", "notaport")
    assert r.returncode == 2, r
    assert r.stderr == ("roster: invalid configuration: flag --port: invalid port: expected an "
                        "integer, got 'notaport'\n")
    assert not (tmp_path / "d").exists()


def test_cluster_options_parse_and_refuse() -> None:
    s = config.load({"cluster": "nats://a:4222, nats://b:4222", "lease_ms": "1500",
                     "cluster_name": "eu-1", "cluster_replicas": "1"})
    assert s.cluster == ("nats://a:4222", "nats://b:4222")
    assert (s.lease_ms, s.cluster_name, s.cluster_replicas) == (1500, "eu-1", 1)
    assert config.load({}).cluster == ()
    assert config.load({"node_id": "10.0.0.1:5001"}).node_id == "10.0.0.1:5001"
    for name, bad in (("cluster", "http://a:4222"), ("cluster_name", "a.b"),
                      ("cluster_replicas", "6"), ("lease_ms", "50"),
                      ("advertise_url", "a:5001"), ("node_id", "a b")):
        with pytest.raises(config.ConfigError, match=name):
            config.load({name: bad})
