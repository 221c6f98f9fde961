"""Shared helpers of the end-to-end suite: they speak HTTP through an ``httpx.Client``, to a real
``roster serve`` (``running``, ``serving``) or to the in-process app (``tests/app/threaded.py``).

Nothing here imports ``server``: the suite checks the HTTP contract from outside, so the
reason names and error shapes are written down again here on purpose.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN
from tests.server_process import ServerProcess, started

JSON_CT = "application/json"
#: What ``curl -d`` sends when no ``-H 'Content-Type: …'`` is given (as in WuKongIM's
#: short examples of /channel/whitelist_set).
CURL_FORM_CT = "application/x-www-form-urlencoded"
MAX_ID = 64
MAX_UIDS = 10_000
MAX_BODY = 4 * 1024 * 1024

#: WuKongIM's reason codes (docs/compatibility.md).
REASONS = {
    1: "Success",
    3: "SubscriberNotExist",
    4: "InBlacklist",
    5: "ChannelNotExist",
    13: "NotInWhitelist",
    19: "Ban",
    24: "Disband",
    25: "SendBan",
}
FLAGS = ("ban", "disband", "send_ban", "allow_stranger", "large")
INFO_KEYS = {"channel_id", "channel_type", *FLAGS, "subscriber_count", "whitelist_count",
             "blacklist_count", "created_at", "updated_at"}


def new_id(prefix: str = "x") -> str:
    """A fresh id, valid as a channel id and as a uid, unique across the session."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _no_server_errors(response: httpx.Response) -> None:
    # A 500 is a bug: nothing in this suite may ever see a 5xx.
    if response.status_code >= 500:
        response.read()
        req = response.request
        raise AssertionError(
            f"{req.method} {req.url} answered {response.status_code}: {response.text[:500]}"
        )


def guard(client: httpx.Client) -> httpx.Client:
    """Make every response of ``client`` fail the test if it is a 5xx."""
    client.event_hooks["response"] = [*client.event_hooks["response"], _no_server_errors]
    return client


def client_for(url: str, token: str | None = None, *, keep_alive: bool = True,
               timeout: float = 30.0) -> httpx.Client:
    """A guarded client for a server at ``url``.

    ``verify=False``: these are plain-HTTP loopback servers, and httpx otherwise builds a TLS
    context for every client (~50 ms each). ``keep_alive=False`` sends ``Connection: close`` so
    every request gets a connection of its own.
    """
    headers = {"token": token} if token else {}
    if not keep_alive:
        headers["connection"] = "close"
    return guard(httpx.Client(base_url=url, headers=headers, timeout=timeout, verify=False))


@contextmanager
def running(data_dir: Path, *args: str, token: str | None = TOKEN) -> Iterator[ServerProcess]:
    """A fresh server of its own on ``data_dir``; stopped with SIGTERM unless already gone."""
    extra = ("--token", token) if token else ()
    with started(ServerProcess(data_dir, *extra, *args), clean_exit=False) as proc:
        yield proc


def stop_within(proc: ServerProcess, seconds: float, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` and wait at most ``seconds`` for the exit; the exit code, or the test fails."""
    try:
        return proc.stop(sig, timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {seconds} s after signal {sig}:\n{proc.text()[-3000:]}")


@contextmanager
def serving(data_dir: Path, *args: str, token: str | None = TOKEN
            ) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """A fresh server of its own on ``data_dir`` and a guarded client for it."""
    with running(data_dir, *args, token=token) as proc, client_for(proc.url, token) as c:
        yield proc, c
        # the client is closed before the server stops: an idle keep-alive connection would
        # hold up its graceful shutdown (see test_process.py)


# -- requests ---------------------------------------------------------------------------------

def post_raw(c: httpx.Client, path: str, content: bytes | str,
             content_type: str | None = JSON_CT) -> httpx.Response:
    headers = {"content-type": content_type} if content_type is not None else {}
    if isinstance(content, str):
        content = content.encode()
    return c.post(path, content=content, headers=headers)


def assert_ok(r: httpx.Response) -> None:
    assert r.status_code == 200, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    assert r.json() == {"status": "ok"}


def ok(c: httpx.Client, path: str, body: Any) -> None:
    """POST ``body`` as JSON and require ``{"status":"ok"}``."""
    assert_ok(c.post(path, json=body))


def assert_error(r: httpx.Response, status: int, code: str | None = None, *,
                 names: str | None = None, msg: str | None = None) -> dict[str, Any]:
    """The error envelope ``{status, msg, code}`` with the given status (and code / field name /
    message)."""
    assert r.status_code == status, (
        f"{r.request.method} {r.request.url}: expected {status} {code}, got {r.status_code} "
        f"{r.text[:300]}"
    )
    assert r.headers["content-type"].startswith(JSON_CT), r.headers["content-type"]
    body = r.json()
    assert isinstance(body, dict), body
    assert body["status"] == status, body
    assert isinstance(body["msg"], str) and body["msg"].strip(), body
    if code is not None:
        assert body.get("code") == code, body
    if names is not None:
        assert names in body["msg"], f"{names!r} not named in {body['msg']!r}"
    if msg is not None:
        assert body["msg"] == msg, body
    return body


# -- reading state back -----------------------------------------------------------------------

def q(cid: str, ctype: int, **extra: Any) -> dict[str, Any]:
    return {"channel_id": cid, "channel_type": ctype, **extra}


def info(c: httpx.Client, cid: str, ctype: int) -> dict[str, Any] | None:
    """GET /channel/info, or None on 404."""
    r = c.get("/channel/info", params=q(cid, ctype))
    if r.status_code == 404:
        assert_error(r, 404, "channel_not_found")
        return None
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    assert set(data) == INFO_KEYS, data
    return data


def subscribers(c: httpx.Client, cid: str, ctype: int) -> list[str]:
    r = c.get("/channel/subscribers", params=q(cid, ctype))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None, body
    uids: list[str] = body["uids"]
    return uids


def get_list(c: httpx.Client, name: str, cid: str, ctype: int) -> list[str]:
    r = c.get(f"/channel/{name}", params=q(cid, ctype))
    assert r.status_code == 200, r.text
    uids: list[str] = r.json()
    assert uids == sorted(uids)
    return uids


def system_uids(c: httpx.Client) -> list[str]:
    r = c.get("/user/systemuids")
    assert r.status_code == 200, r.text
    uids: list[str] = r.json()
    assert uids == sorted(uids)
    return uids


def snapshot(c: httpx.Client, cid: str, ctype: int) -> dict[str, Any] | None:
    """Everything readable about one channel (None if it does not exist)."""
    data = info(c, cid, ctype)
    if data is None:
        return None
    out: dict[str, Any] = {"info": data}
    if ctype != 1:
        out["subscribers"] = subscribers(c, cid, ctype)
    out["whitelist"] = get_list(c, "whitelist", cid, ctype)
    out["blacklist"] = get_list(c, "blacklist", cid, ctype)
    return out


def check(c: httpx.Client, from_uid: str, cid: str, ctype: int) -> int:
    """POST /permission/check; checks the answer's shape and returns the reason code."""
    r = c.post("/permission/check", json={"from_uid": from_uid, "channel_id": cid,
                                           "channel_type": ctype})
    assert r.status_code == 200, r.text
    return reason_of(r.json())


def reason_of(answer: dict[str, Any]) -> int:
    assert set(answer) == {"allowed", "reason", "reason_name"}, answer
    reason = answer["reason"]
    assert type(reason) is int and reason in REASONS, answer
    assert answer["reason_name"] == REASONS[reason], answer
    assert answer["allowed"] is (reason == 1), answer
    return reason


# -- raw HTTP/1.1 on one socket ---------------------------------------------------------------

class RawConnection:
    """One keep-alive TCP connection spoken to by hand, so a test controls when each byte is
    sent (httpx sends a request's headers and body back to back)."""

    def __init__(self, url: str, timeout: float) -> None:
        u = httpx.URL(url)
        self.host = f"{u.host}:{u.port}"
        self.sock = socket.create_connection((u.host, u.port or 80), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_readable(self, timeout: float) -> bool:
        """True once the peer has sent something (or closed), False after ``timeout`` s."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)

    def request_head(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response (raises TimeoutError if none comes, EOFError on a closed socket)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed before a response")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not self._fill():
                raise EOFError("connection closed inside a response body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), headers, body

    def closed_by_peer(self) -> bool:
        try:
            return not self.buf and not self._fill()
        except (ConnectionResetError, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
