"""The client side of ``roster``: commands that talk to a running server (``roster snapshot``).

They read the same configuration as ``roster serve`` (server/config.py: flags > ``ROSTER_*``
environment > ``--config`` file > defaults), so a server started with ``--config roster.toml``
or ``ROSTER_PORT``/``ROSTER_TOKEN`` is found, and let in, by the same file or variables. The
address a server listens on is not always one to connect to: ``0.0.0.0`` and ``::`` (every
address) are reached on this machine's loopback.

``--url`` overrides the address; ``host:port`` without a scheme means ``http://host:port``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from server import config

if TYPE_CHECKING:
    import httpx

#: exit codes of the client commands
OK, FAILED, USAGE = 0, 1, 2
#: listening on every address: connect through the loopback of the same family
_WILDCARD = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


class UsageError(Exception):
    """A flag or configured value the command cannot use (exit 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the server is and the token, from the same sources as ``roster serve``."""
    unset = argparse.SUPPRESS  # unset flags fall through to the environment and the file
    parser.add_argument("--config", type=Path, default=None,
                        help="the server's TOML file: its host, port and token are used")
    parser.add_argument("--host", default=unset,
                        help="the server's address [env ROSTER_HOST; default 127.0.0.1; "
                             "0.0.0.0 and :: are reached on this machine's loopback]")
    parser.add_argument("--port", default=unset,
                        help="the server's HTTP port [env ROSTER_PORT; default 5001]")
    parser.add_argument("--token", default=unset,
                        help="the manager token [env ROSTER_TOKEN]")
    parser.add_argument("--url", default=None,
                        help="the server's base URL instead of --host/--port; host:port without "
                             "a scheme means http://")
    parser.add_argument("--timeout", type=_seconds, default=600.0,
                        help="seconds to wait for the answer (a large state takes a while to "
                             "snapshot) [default 600]")


def _seconds(text: str) -> float:
    value = float(text) if text.replace(".", "", 1).isdigit() and text.isascii() else 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def settings_for(args: argparse.Namespace) -> config.Settings:
    flags = {name: getattr(args, name) for name in ("host", "port", "token")
             if hasattr(args, name)}
    return config.load(flags, config_file=args.config)


def base_url(settings: config.Settings, url: str | None = None) -> str:
    """The URL to reach the server at: ``url`` if given, else its configured host and port."""
    if url is None:
        host = _WILDCARD.get(settings.host, settings.host).strip("[]")
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{settings.port}"
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port  # reads it: ValueError for a port that is not a number
    except ValueError as exc:
        raise UsageError(f"--url {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r}: expected http://host:port, https://host:port or "
                         "host:port")
    host = _WILDCARD.get(parts.hostname, parts.hostname)
    host = f"[{host}]" if ":" in host else host
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _error_text(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text
    else:
        has_msg = isinstance(body, dict) and isinstance(body.get("msg"), str)
        text = str(body["msg"]) if has_msg else json.dumps(body)
    return " ".join(text[:200].split())


def snapshot(args: argparse.Namespace) -> int:
    """``roster snapshot``: ask the server to write a snapshot now; print its answer."""
    try:
        settings = settings_for(args)
        url = base_url(settings, args.url)
    except (config.ConfigError, UsageError) as exc:
        print(f"roster: invalid configuration: {exc}", file=sys.stderr)
        return USAGE
    headers = {"token": settings.token} if settings.token else {}
    # imported here: `roster serve` imports this module for its flags and must not pay for
    # httpx (about a fifth of its start-up imports) on every start
    import httpx

    try:
        with httpx.Client(timeout=args.timeout, verify=True) as client:
            response = client.post(f"{url}/admin/snapshot", headers=headers)
    except httpx.TimeoutException:
        print(f"roster: snapshot: no answer from {url} within {args.timeout:g} s (see --timeout)",
              file=sys.stderr)
        return FAILED
    except httpx.HTTPError as exc:
        print(f"roster: cannot reach the server at {url}: {exc} (is it running there? set "
              "--url, or --host/--port, ROSTER_HOST/ROSTER_PORT or --config)", file=sys.stderr)
        return FAILED
    if response.status_code == 403:
        said = "a token was sent" if settings.token else "no token was sent"
        print(f"roster: snapshot refused by {url}: 403 {_error_text(response)} ({said}; set "
              "--token, ROSTER_TOKEN or token in the --config file)", file=sys.stderr)
        return FAILED
    if response.status_code != 200:
        print(f"roster: snapshot failed at {url}: {response.status_code} "
              f"{_error_text(response)}", file=sys.stderr)
        return FAILED
    print(json.dumps(response.json()))
    return OK
