"""Clients for the presence side of a real ``roster serve``: a RongCloud-signing form client, an
SSE reader and a webhook receiver. Like ``helpers.py`` this imports nothing from ``server``:
the signature rule, the event format and the webhook format are written down again here.
"""

from __future__ import annotations

import hashlib
import json
import queue
import random
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

KEY = "e2e-app-key"
SECRET = "e2e-app-secret"

SET = "/user/subscribe/set.json"
QUERY = "/user/subscribe/query.json"
FOLLOWERS = "/user/subscribe/followers.json"
CHECK_ONLINE = "/user/checkOnline.json"


def sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class RcClient:
    """Signs like RongCloud's server SDKs.

    ``sdk=True`` is the official SDKs' way: ``RC-`` prefixed headers, a ``str(random.random())``
    nonce and a millisecond timestamp; ``sdk=False`` is the documentation's plain headers with a
    timestamp in seconds.
    """

    def __init__(self, http: httpx.Client, key: str = KEY, secret: str = SECRET, *,
                 sdk: bool = False) -> None:
        self.http = http
        self.key = key
        self.secret = secret
        self.sdk = sdk

    def headers(self, *, nonce: str | None = None, timestamp: str | None = None,
                signature: str | None = None, key: str | None = None) -> dict[str, str]:
        if nonce is None:
            nonce = str(random.random()) if self.sdk else uuid.uuid4().hex[:18]
        if timestamp is None:
            timestamp = str(time.time_ns() // 1_000_000 if self.sdk else int(time.time()))
        if signature is None:
            signature = sha1_hex(self.secret + nonce + timestamp)
        prefix = "RC-" if self.sdk else ""
        return {f"{prefix}App-Key": self.key if key is None else key, f"{prefix}Nonce": nonce,
                f"{prefix}Timestamp": timestamp, f"{prefix}Signature": signature}

    def post(self, path: str, form: dict[str, Any] | None = None, *,
             headers: dict[str, str] | None = None, **sign: Any) -> httpx.Response:
        signed = self.headers(**sign) if headers is None else headers
        return self.http.post(path, data={k: str(v) for k, v in (form or {}).items()},
                              headers=signed)

    def ok(self, path: str, **form: Any) -> dict[str, Any]:
        r = self.post(path, form)
        assert r.status_code == 200, (path, r.status_code, r.text)
        body: dict[str, Any] = r.json()
        assert body["code"] == 200, body
        return body

    def subscribe(self, user: str, *targets: str, expiry: int = 3600) -> httpx.Response:
        return self.post(SET, {"userId": user, "subUserIds": ",".join(targets), "opType": 0,
                               "expiry": expiry})

    def subscriptions(self, user: str) -> list[str]:
        body = self.ok(QUERY, userId=user)
        return [uid for item in body["subscriptions"] for uid in item["subUserIds"]]

    def followers(self, user: str) -> list[str]:
        return [item["userId"] for item in self.ok(FOLLOWERS, userId=user)["followers"]]

    def online(self, user: str) -> str:
        status: str = self.ok(CHECK_ONLINE, userId=user)["status"]
        return status


def report(api: httpx.Client, uid: str, online: int, device_flag: int = 0,
           **extra: Any) -> None:
    r = api.post("/user/presence",
                 json={"uid": uid, "device_flag": device_flag, "online": online, **extra})
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text


# -- Server-Sent Events ------------------------------------------------------------------------


class SseReader:
    """``GET /events`` read by a thread; complete events arrive in :meth:`next`."""

    def __init__(self, url: str, token: str | None, last_event_id: str | None = None) -> None:
        headers = {"token": token} if token else {}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=None),
                                    verify=False)
        self._stream = self._client.stream("GET", "/events", headers=headers)
        self.response = self._stream.__enter__()  # returns once the headers are in
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.comments: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event: dict[str, Any] = {}
        data: list[str] = []
        try:
            for line in self.response.iter_lines():
                if not line:
                    if data:
                        event["data"] = json.loads("\n".join(data))
                        self.events.put({"event": "message", **event})
                    event, data = {}, []
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        data.append(value)
                    elif name in ("event", "id", "retry"):
                        event[name] = value
        except (httpx.HTTPError, OSError, ValueError, RuntimeError):
            pass  # closed by close(), or the server ended the connection
        finally:
            self.events.put(None)

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        item = self.events.get(timeout=timeout)
        assert item is not None, "the stream ended"
        return item

    def nothing_more(self, wait: float = 0.3) -> bool:
        try:
            item = self.events.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected event {item}")

    def close(self) -> None:
        # Closing the response from this thread does not wake the reader blocked in recv();
        # shutting the socket down does.
        stream = self.response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone
        self._thread.join(10)
        self.response.close()
        self._stream.__exit__(None, None, None)
        self._client.close()
        self._thread.join(10)

    def __enter__(self) -> SseReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- webhook receivers -------------------------------------------------------------------------


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that answers from a script (then 200) and keeps every call."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        #: (query parameters, decoded body, the status answered)
        self.calls: list[tuple[dict[str, str], Any, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                with receiver.lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.calls.append((query, json.loads(body), status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rc/presence"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def delivered(self) -> list[Any]:
        """Items of the calls that were answered 2xx (the calls after the scripted failures)."""
        with self.lock:
            return [item for _, items, status in self.calls if status < 300 for item in items]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


class DeadReceiver:
    """A port that accepts connections (the kernel's backlog) but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def __enter__(self) -> DeadReceiver:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.sock.close()
