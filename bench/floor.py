"""The framework floor: a bare ASGI app on hypercorn-trio doing the same lookup as Roster.

    python -m bench.floor --data-dir DIR [--port 0]

Loads the state from a Roster data dir (``wal.recover``, the same snapshot the Roster servers of
the run load), then serves ``POST /permission/check`` and ``POST /permission/check_batch`` with the
same JSON in and out as Roster, but with none of Quart: no request/response objects, no routing
table, no validation beyond the JSON decode, no after-request hooks. Same hypercorn config as
``roster serve`` (``server.runner.hypercorn_config``) and served the same way (our own
``trio.run``, ``hypercorn.trio.serve`` with a shutdown trigger), so Roster / floor is the cost of
everything Roster adds on top of hypercorn for one check.

Prints ``floor: listening on http://127.0.0.1:PORT`` once it accepts connections; SIGTERM/SIGINT
stop it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import hypercorn.trio
import trio

from server.config import Settings
from server.permission import REASON_NAMES, SUCCESS, decide
from server.restore import load_state
from server.runner import hypercorn_config
from server.state import State

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_HEADERS = [(b"content-type", b"application/json")]
_ANSWERS = {code: {"allowed": code == SUCCESS, "reason": code, "reason_name": name}
            for code, name in REASON_NAMES.items()}
_ANSWER_BYTES = {code: json.dumps(a, separators=(",", ":")).encode()
                 for code, a in _ANSWERS.items()}


def make_app(state: State) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def respond(send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        path = scope["path"]
        try:
            data = json.loads(b"".join(chunks))
            now = time.time_ns() // 1_000_000
            if path == "/permission/check":
                code = decide(state, data["from_uid"], data["channel_id"], data["channel_type"],
                              now)
                await respond(send, 200, _ANSWER_BYTES[code])
            elif path == "/permission/check_batch":
                results = [_ANSWERS[decide(state, c["from_uid"], c["channel_id"],
                                           c["channel_type"], now)] for c in data["checks"]]
                await respond(send, 200, json.dumps({"results": results},
                                                    separators=(",", ":")).encode())
            else:
                await respond(send, 404, b'{"status":404}')
        except (ValueError, KeyError, TypeError):
            await respond(send, 400, b'{"status":400}')

    return app


async def serve(state: State, port: int) -> None:
    config = hypercorn_config(Settings(port=port))
    stop = trio.Event()

    async def on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stop.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_signal)
        app = cast(Any, make_app(state))  # our plain dict scopes vs hypercorn's TypedDicts
        addrs = await nursery.start(partial(hypercorn.trio.serve, app, config,
                                            shutdown_trigger=stop.wait))
        print(f"floor: listening on {' '.join(addrs)}", flush=True)
        await stop.wait()
        nursery.cancel_scope.cancel()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    # loaded, collector state and all, as roster serve loads it: the ratio compares like with like
    state, _ = load_state(args.data_dir)
    trio.run(serve, state, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
