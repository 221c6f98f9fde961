"""Settings of one Roster process: one table of options, read from four places.

Every option is a row of ``OPTIONS``. The same row gives its command-line flag (``--data-dir``),
its environment variable (``ROSTER_DATA_DIR``), its key in the TOML file (``data_dir = "..."``),
its default and its check, so the four sources cannot drift apart. Precedence:

    flags  >  ROSTER_* environment  >  --config file  >  defaults

Invalid values from any source are refused before anything starts, with a message that names the
source and the option (``ConfigError``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

FsyncPolicy = Literal["always", "interval", "none"]
RecoveryMode = Literal["strict", "truncate"]
LogFormat = Literal["auto", "json", "text"]

ENV_PREFIX = "ROSTER_"


class ConfigError(Exception):
    """A configuration value is invalid; the message names where it came from."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 5001
    #: the Redis-protocol lane (server/resp.py); None = off
    resp_port: int | None = 5002
    #: None = the same address as ``host``
    resp_host: str | None = None
    resp_max_clients: int = 10_000
    #: seconds without a command before a RESP connection is closed; 0 = never
    resp_idle_timeout: float = 300.0
    #: seconds a RESP client may take to send the rest of a command it has started; 0 = no limit
    resp_command_timeout: float = 30.0
    #: seconds from accept until an HTTP request's headers are complete (slow clients get 408)
    http_header_timeout: float = 10.0
    #: seconds a request body may take to arrive once its headers are in (then 408)
    http_body_timeout: float = 30.0
    #: seconds an idle keep-alive HTTP connection is kept open
    http_idle_timeout: float = 75.0
    #: HTTP connections at once; 0 = derived from the descriptor limit (docs/operations.md)
    http_max_connections: int = 0
    fsync: FsyncPolicy = "always"
    #: manager token; None = the JSON API is open (fine on loopback, warned about elsewhere)
    token: str | None = None
    #: seconds a temporary channel lives after its last subscriber_set (WuKongIM's tag expiry)
    tmpchannel_ttl: int = 1200
    max_body_bytes: int = 4 * 1024 * 1024
    max_uids_per_request: int = 10_000
    max_checks_per_request: int = 10_000
    #: take a snapshot once this many log bytes were written since the last one
    snapshot_bytes: int = 64 * 1024 * 1024
    segment_bytes: int = 64 * 1024 * 1024
    wal_recovery: RecoveryMode = "strict"
    system_uids: tuple[str, ...] = ()
    #: how often expired temporary channels and status subscriptions are purged (each purge is
    #: a logged op)
    purge_interval_s: float = 10.0
    access_log: bool = False
    log_level: str = "INFO"
    log_format: LogFormat = "auto"
    # -- presence (the RongCloud-compatible routes and the event stream) --
    rc_app_key: str | None = None
    rc_app_secret: str | None = None
    rc_rate_limit: int = 100
    sub_max_per_user: int = 1000
    sub_max_followers: int = 5000
    webhook_url: str | None = None
    events_retained: int = 100_000
    # -- cluster mode (server/cluster/): the log is a NATS JetStream stream; () = one process --
    cluster: tuple[str, ...] = ()
    #: this node's name in the lease; None = host:port
    node_id: str | None = None
    cluster_name: str = "roster"
    cluster_replicas: int = 3
    #: this node's HTTP URL as the other nodes and redirected clients should use it
    advertise_url: str | None = None
    lease_ms: int = 3000

    def is_loopback(self) -> bool:
        return _is_loopback(self.host) and (self.resp_port is None
                                            or _is_loopback(self.resp_host or self.host))


def _is_loopback(host: str) -> bool:
    return host in ("::1", "localhost") or host.startswith("127.")


# -- parsing single values ---------------------------------------------------------------------

#: what the number parsers take as text (ASCII digits; Python's int()/float() also take "1_000",
#: other scripts' digits, "nan" and "inf", and their error messages are Python's, not ours)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def _int_range(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str) or (
                isinstance(value, str) and not _INTEGER.fullmatch(value.strip())):
            raise ValueError(f"expected an integer, got {value!r}")
        number = int(value)
        if number < lo or (hi is not None and number > hi):
            raise ValueError(f"must be {lo}-{hi}, got {number}" if hi is not None
                             else f"must be at least {lo}, got {number}")
        return number

    return parse


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {value!r}")
        return str(value)

    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _token(value: Any) -> str:
    # Printable ASCII only: HTTP header values and RESP arguments then carry the same bytes on
    # every route (a non-ASCII token matched as UTF-8 on one path and as Latin-1 on another).
    text = _text(value)
    if not all(0x21 <= ord(c) <= 0x7E for c in text):
        raise ValueError("must be printable ASCII without spaces (it is sent as an HTTP header)")
    return text


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                     "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError(f"expected true/false, got {value!r}")


def _uids(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(u, str) for u in items):
        raise ValueError(f"expected a list of uids, got {value!r}")
    return tuple(u.strip() for u in items if u.strip())


def _port_or_off(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.lower() == "off") or value is False:
        return None
    return _int_range(0, 65535)(value)


def _number(value: Any, expected: str) -> float:
    """A finite number from TOML (int or float) or text; ``expected`` words the error."""
    typed = isinstance(value, int | float) and not isinstance(value, bool)
    text = isinstance(value, str) and _DECIMAL.fullmatch(value.strip()) is not None
    number = float(value) if typed or text else math.nan
    if not math.isfinite(number):
        raise ValueError(f"expected {expected}, got {value!r}")
    return number


def _seconds(value: Any) -> float:
    number = _number(value, "a number of seconds")
    if not 0 <= number <= 86_400 * 365:
        raise ValueError(f"must be 0 (never) or a positive number of seconds, got {value!r}")
    return number


def _float_pos(value: Any) -> float:
    number = _number(value, "a positive number")
    if number <= 0:
        raise ValueError(f"must be positive, got {number}")
    return number


def _nats_urls(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else _text(value).split(",")
    urls = tuple(_text(v).strip() for v in items if _text(v).strip())
    for url in urls:
        if not url.startswith(("nats://", "tls://")):
            raise ValueError(f"expected nats://host:port URLs, got {url!r}")
    return urls


def _name(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        raise ValueError(f"expected 1-64 letters, digits, '_' or '-', got {text!r}")
    return text


def _node_id(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9_.:\[\]-]{1,128}", text):
        raise ValueError(f"expected 1-128 letters, digits or any of _ . : [ ] -, got {text!r}")
    return text


def _url(value: Any) -> str:
    text = _text(value)
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[Any], Any]
    help: str
    secret: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("data_dir", lambda v: Path(_text(v)), "where the log and snapshots live"),
    Option("host", _text, "listen address"),
    Option("port", _int_range(0, 65535), "listen port (0 picks a free one)"),
    Option("resp_port", _port_or_off,
           "Redis-protocol (RESP) port: 0 picks a free one, off disables", metavar="PORT|off"),
    Option("resp_host", _text, "RESP listen address (default: the same as --host)"),
    Option("resp_max_clients", _int_range(1), "RESP connections at once; more are refused"),
    Option("resp_idle_timeout", _seconds,
           "seconds without a command before a RESP connection is closed (0: never)"),
    Option("resp_command_timeout", _seconds,
           "seconds a RESP client may take to finish sending a started command (0: no limit)"),
    Option("http_header_timeout", _float_pos,
           "seconds from accept until the request headers are complete (408 beyond)"),
    Option("http_body_timeout", _float_pos,
           "seconds a request body may take once its headers are in (408 beyond)"),
    Option("http_idle_timeout", _float_pos,
           "seconds an idle keep-alive HTTP connection stays open"),
    Option("http_max_connections", _int_range(0),
           "HTTP connections at once (0: derived from the descriptor limit)"),
    Option("fsync", _choice("always", "interval", "none"),
           "always: ack after fdatasync; interval: fsync every second; none: kernel decides"),
    Option("token", _token, "manager token required in the 'token' header", secret=True),
    Option("tmpchannel_ttl", _int_range(1, 604_800),
           "seconds a temporary channel lives after its last subscriber_set (a request's own "
           "ttl field stays at least 60)"),
    Option("max_body_bytes", _int_range(1024), "largest request body accepted (413 beyond)"),
    Option("max_uids_per_request", _int_range(1), "largest uid list accepted in one request"),
    Option("max_checks_per_request", _int_range(1), "largest /permission/check_batch"),
    Option("snapshot_bytes", _int_range(1), "take a snapshot after this many log bytes"),
    Option("segment_bytes", _int_range(4096), "start a new log segment after this many bytes"),
    Option("wal_recovery", _choice("strict", "truncate"),
           "strict: refuse to start on a corrupt log; truncate: drop from the first damaged "
           "record on (a copy is kept)"),
    Option("system_uids", _uids, "initial system accounts (comma-separated)", metavar="UIDS"),
    Option("purge_interval_s", _float_pos,
           "seconds between purges of expired temp channels and subscriptions"),
    Option("access_log", _bool, "log every request (a flag without a value; "
           "ROSTER_ACCESS_LOG and the file take true or false)"),
    Option("log_level", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "log level"),
    Option("log_format", _choice("auto", "json", "text"),
           "auto: JSON lines unless stderr is a terminal"),
    Option("rc_app_key", _text, "RongCloud App-Key for the signed /user/*.json routes"),
    Option("rc_app_secret", _text, "RongCloud App-Secret (signature key)", secret=True),
    Option("rc_rate_limit", _int_range(1), "requests per second per RongCloud route"),
    Option("sub_max_per_user", _int_range(1), "live subscriptions one user may hold"),
    Option("sub_max_followers", _int_range(1), "live subscribers one user may have"),
    Option("webhook_url", _url, "RongCloud-format presence webhook receiver"),
    Option("events_retained", _int_range(1), "presence events kept for Last-Event-ID resume"),
    Option("cluster", _nats_urls, "NATS servers (comma-separated nats:// URLs): run as one node "
           "of a cluster whose log is a JetStream stream", metavar="URLS"),
    Option("node_id", _node_id, "this node's name in the cluster (default: host:port)"),
    Option("cluster_name", _name, "names the stream ROSTER_<NAME>, its subject, lease and store"),
    Option("cluster_replicas", _int_range(1, 5), "JetStream replicas of the stream (1 against "
           "one NATS server)"),
    Option("advertise_url", _url, "this node's HTTP URL for redirected clients "
           "(default: http://host:port)"),
    Option("lease_ms", _int_range(200, 600_000), "leader lease: a dead leader is replaced after "
           "about this long"),
)
_BY_NAME = {o.name: o for o in OPTIONS}
_DEFAULTS = Settings()
assert {f.name for f in fields(Settings)} == set(_BY_NAME), "every setting needs an Option row"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option; defaults stay unset so precedence can tell what was given."""
    parser.add_argument("--config", type=Path, help="TOML file (keys are the flag names with _)")
    for opt in OPTIONS:
        default = getattr(_DEFAULTS, opt.name)
        shown = "(not set)" if default is None else default
        if opt.name == "access_log":
            parser.add_argument(opt.flag, action="store_const", const=True,
                                default=argparse.SUPPRESS, help=opt.help)
            continue
        parser.add_argument(opt.flag, default=argparse.SUPPRESS, metavar=opt.metavar,
                            help=f"{opt.help} [env {opt.env}; default {shown}]")


def _apply(values: dict[str, Any], source: str, raw: Mapping[str, Any]) -> None:
    for name, value in raw.items():
        opt = _BY_NAME.get(name)
        if opt is None:
            raise ConfigError(f"{source}: unknown option {name!r}")
        try:
            values[name] = opt.parse(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: invalid {name}: {exc}") from None


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_file: Path | None = None) -> Settings:
    """Settings from defaults < file < environment < flags."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
        _apply(values, f"config file {config_file}", data)
    env = os.environ if env is None else env
    from_env = {o.name: env[o.env] for o in OPTIONS if o.env in env}
    for opt_name, value in from_env.items():
        _apply(values, f"environment {_BY_NAME[opt_name].env}", {opt_name: value})
    for name, value in (flags or {}).items():
        _apply(values, f"flag {_BY_NAME[name].flag}", {name: value})
    settings = Settings(**values)
    if (settings.rc_app_key is None) != (settings.rc_app_secret is None):
        raise ConfigError("rc_app_key and rc_app_secret must be set together")
    return settings


def from_args(args: argparse.Namespace) -> Settings:
    flags = {o.name: getattr(args, o.name) for o in OPTIONS if hasattr(args, o.name)}
    return load(flags, config_file=getattr(args, "config", None))


def render(settings: Settings) -> str:
    """The effective configuration as TOML, secrets masked (``roster config``)."""
    lines = []
    for opt in OPTIONS:
        value = getattr(settings, opt.name)
        if value is None and opt.name == "resp_port":
            value = "off"
        elif value is None:
            lines.append(f"# {opt.name} = (not set)")
            continue
        if opt.secret:
            value = "********"
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = str(value)
        elif isinstance(value, tuple):
            text = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{opt.name} = {text}")
    return "\n".join(lines) + "\n"
