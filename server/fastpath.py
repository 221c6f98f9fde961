"""The read hot path served at the ASGI level: ``POST /permission/check`` and ``/check_batch``.

Why this exists: a request through quart-trio costs about twice the CPU of a bare ASGI app on the
same hypercorn (request/response objects, context variables, before/after hooks; DESIGN §8 and
``bench/RESULTS.md``). The permission check is the one route callers hammer, so it is answered
here, before quart, by the same pieces quart's routes use — ``read``/``decode_json`` rules,
``schema.check_one``/``parse``, ``permission.decide`` and the ``ApiError`` envelope — so
behaviour is identical (the e2e and fuzz suites run against this path). Everything else falls
through to quart.

The answers are a handful of fixed byte strings (one per reason code), so a 10 000-check batch
is answered by joining pre-encoded results.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from server.errors import ApiError, BadRequest, Forbidden, PayloadTooLarge, UnsupportedMediaType
from server.permission import REASON_NAMES, SUCCESS, decide
from server.schema import Field, Limits, check_one, parse
from server.service import Roster

log = logging.getLogger("roster")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

_ANSWER = {
    code: json.dumps({"allowed": code == SUCCESS, "reason": code, "reason_name": name},
                     separators=(",", ":")).encode()
    for code, name in REASON_NAMES.items()
}
_JSON_HEADERS = [(b"content-type", b"application/json")]

CHECK = (
    Field("from_uid", "uid", required=True),
    Field("channel_id", "channel_id", required=True),
    Field("channel_type", "channel_type", required=True),
)
CHECK_BATCH = (Field("checks", "checks", required=True, doc="at most 10 000 checks"),)


def answer_check(roster: Roster, data: Any) -> bytes:
    """The body of a /permission/check answer (or raise ``BadRequest``)."""
    from_uid, channel_id, channel_type = check_one(data)
    return _ANSWER[decide(roster.state, from_uid, channel_id, channel_type, roster.now_ms())]


def answer_batch(roster: Roster, limits: Limits, data: Any) -> bytes:
    """The body of a /permission/check_batch answer (or raise ``BadRequest``)."""
    checks = parse(CHECK_BATCH, data, limits)["checks"]
    state, now, answer = roster.state, roster.now_ms(), _ANSWER
    return b'{"results":[' + b",".join(
        [answer[decide(state, u, c, t, now)] for u, c, t in checks]) + b"]}"


def decode_json(raw: bytes, mimetype: str | None) -> Any:
    """Decode a request body as JSON, with the error rules of SPEC §1.

    Callers of WuKongIM often send JSON without a JSON content type (``curl -d`` says
    ``x-www-form-urlencoded``) and WuKongIM parses the body regardless; so does Roster. A body that
    is not JSON is 415 when its declared type is not JSON either, else 400.
    """
    if not raw.strip():
        raise BadRequest("request body is empty; expected a JSON object", "invalid_json")
    try:
        # orjson: twice as fast as json on a 10 000-check batch, and strict where json is lax
        # (NaN, lone surrogates, nesting deeper than 1024 are all errors, not values).
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if mimetype and mimetype != "application/json" and not mimetype.endswith("+json") \
                and mimetype != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType(
                f"request body must be JSON (Content-Type: application/json), got {mimetype}"
            ) from None
        raise BadRequest(f"request body is not valid JSON: {exc}", "invalid_json") from None


class FastPath:
    def __init__(self, roster: Roster, limits: Limits) -> None:
        self.roster = roster
        self.limits = limits
        settings = roster.settings
        self.token = settings.token.encode() if settings.token else None
        self.max_body = settings.max_body_bytes
        self.routes: dict[str, Callable[[Any], bytes]] = {
            "/permission/check": lambda data: answer_check(roster, data),
            "/permission/check_batch": lambda data: answer_batch(roster, limits, data),
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
        close = False
        forbidden = self.token is not None and not hmac.compare_digest(
            next((v for k, v in scope["headers"] if k == b"token"), b""), self.token)
        try:
            try:
                # Read the body even when the token is wrong: an unread body would stall the
                # keep-alive connection.
                raw, mimetype = await self._read(scope, receive)
            except PayloadTooLarge:
                # The rest of the body is unread: close rather than misread it as a request.
                close = True
                if not forbidden:
                    raise
            if forbidden:
                raise Forbidden("no management permission")
            status, body = 200, handler(decode_json(raw, mimetype))
        except ApiError as err:
            status, body = err.status, json.dumps(err.body(), ensure_ascii=False).encode()
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            status, body = 500, (b'{"status":500,"msg":"internal error (this is a bug)",'
                                 b'"code":"internal_error"}')
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
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
