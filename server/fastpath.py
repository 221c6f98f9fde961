"""The read hot path served at the ASGI level: ``POST /permission/check`` and ``/check_batch``.

Why this exists: a request through quart-trio costs about twice the CPU of a bare ASGI app on the
same hypercorn (request/response objects, context variables, before/after hooks; see
``bench/RESULTS.md``). The permission check is the one route callers hammer, so it is answered
here, before quart, by the same pieces quart's routes use — the body rules and envelopes of
``server/http.py`` and the ``check``/``check_batch`` commands of ``server/commands.py`` — so
behaviour is identical (the e2e and fuzz suites run against this path). Everything else falls
through to quart.

The answers are a handful of fixed byte strings (one per reason code), so a 10 000-check batch
is answered by joining pre-encoded results.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from server import commands
from server.commands import Context
from server.errors import ApiError, PayloadTooLarge
from server.http import (
    INTERNAL_ERROR_BODY,
    decode_json,
    error_body,
    forbidden,
    header_token,
    manager_token,
    token_ok,
)
from server.permission import REASON_NAMES, SUCCESS

log = logging.getLogger("roster")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

_ANSWER = {
    code: json.dumps({"allowed": code == SUCCESS, "reason": code, "reason_name": name},
                     separators=(",", ":")).encode()
    for code, name in REASON_NAMES.items()
}
_JSON_HEADERS = [(b"content-type", b"application/json")]


def answer_check(ctx: Context, data: Any) -> bytes:
    """The body of a /permission/check answer (or raise ``BadRequest``)."""
    return _ANSWER[commands.check(ctx, data)]


def answer_batch(ctx: Context, data: Any) -> bytes:
    """The body of a /permission/check_batch answer (or raise ``BadRequest``)."""
    answer = _ANSWER
    return b'{"results":[' + b",".join(
        [answer[code] for code in commands.check_batch(ctx, data)]) + b"]}"


class FastPath:
    def __init__(self, ctx: Context) -> None:
        settings = ctx.roster.settings
        self.token = manager_token(settings)
        self.max_body = settings.max_body_bytes
        self.routes: dict[str, Callable[[Any], bytes]] = {
            "/permission/check": lambda data: answer_check(ctx, data),
            "/permission/check_batch": lambda data: answer_batch(ctx, data),
        }

    def wrap(self, app: ASGIApp) -> ASGIApp:
        routes = self.routes

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] == "POST":
                handler = routes.get(scope["path"])
                if handler is not None:
                    await self._serve(handler, scope, receive, send)
                    return
            await app(scope, receive, send)

        return asgi

    async def _serve(self, handler: Callable[[Any], bytes], scope: dict[str, Any],
                     receive: Any, send: Any) -> None:
        try:
            # Refused before the body is read: server/edge.py closes a connection whose request
            # was answered before its body arrived, so the rest is never read.
            if not token_ok(header_token(scope["headers"]), self.token):
                raise forbidden()
            raw, mimetype = await self._read(scope, receive)
            status, body = 200, handler(decode_json(raw, mimetype))
        except ApiError as err:
            status, body = err.status, error_body(err)
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            status, body = 500, INTERNAL_ERROR_BODY
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _read(self, scope: dict[str, Any], receive: Any) -> tuple[bytes, str | None]:
        mimetype = None
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise self._too_large()
            if key == b"content-type":
                mimetype = value.split(b";", 1)[0].strip().lower().decode("latin-1")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), mimetype

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is larger than {self.max_body} bytes")
