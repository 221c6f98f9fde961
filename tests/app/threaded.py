"""The in-process app behind a synchronous ``httpx.Client``: table-driven HTTP tests written
against ``httpx`` (the end-to-end helpers) run without a socket or a subprocess.

A thread runs trio with :func:`tests.app.conftest.in_process` open; every request crosses into it
through ``trio.from_thread.run`` and goes through quart's test client, so the request passes the
same routing, auth, parsing and validation as over a real connection (hypercorn's edge excepted,
which the real-HTTP tests cover).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from quart_trio.testing import TrioClient

from tests.app.conftest import in_process

#: bound on start-up and shut-down of the app thread (a hang fails the test, never blocks it)
_THREAD_TIMEOUT_S = 30.0


class InProcessTransport(httpx.BaseTransport):
    """Sends each request to quart's test client inside the trio thread of ``token``."""

    def __init__(self, client: TrioClient, token: trio.lowlevel.TrioToken) -> None:
        self._client = client
        self._token = token

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        status, headers, body = trio.from_thread.run(self._send, request, trio_token=self._token)
        return httpx.Response(status, headers=headers, content=body, request=request)

    async def _send(self, request: httpx.Request) -> tuple[int, list[tuple[str, str]], bytes]:
        target = request.url.raw_path.decode("ascii")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        response = await self._client.open(target, method=request.method, headers=headers,
                                           data=request.read())
        return response.status_code, list(response.headers.items()), await response.get_data()


@contextmanager
def in_process_client(data_dir: Path, token: str | None = None,
                      **options: Any) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` (sending ``token``) on an in-process Roster over ``data_dir``."""
    ready = threading.Event()
    handoff: dict[str, Any] = {}

    async def serve() -> None:
        stop = trio.Event()
        async with in_process(data_dir, token=token, **options) as app:
            handoff.update(client=app.client, token=trio.lowlevel.current_trio_token(), stop=stop)
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:  # surfaced to the test thread below
            handoff["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="in-process-app", daemon=True)
    thread.start()
    if not ready.wait(_THREAD_TIMEOUT_S) or "error" in handoff:
        raise RuntimeError("the in-process app did not start") from handoff.get("error")
    headers = {"token": token} if token else {}
    transport = InProcessTransport(handoff["client"], handoff["token"])
    try:
        with httpx.Client(transport=transport, base_url="http://roster.test",
                          headers=headers) as client:
            yield client
    finally:
        trio.from_thread.run_sync(handoff["stop"].set, trio_token=handoff["token"])
        thread.join(_THREAD_TIMEOUT_S)
        if thread.is_alive() or "error" in handoff:
            raise RuntimeError("the in-process app did not stop") from handoff.get("error")
