"""What every HTTP adapter shares: the JSON envelopes, body decoding, the token rule, ``Api``.

The quart routes (``server/routes/``) and the ASGI fast path (``server/fastpath.py``) both import
from here, and ``server/app.py`` only assembles them, so no route module imports the app.

Envelopes: success is ``{"status":"ok"}`` unless the route returns data; an error is
``{"status": <http status>, "msg": <sentence>, "code": <stable_snake_case>}``
(``server/errors.py`` holds every code); a 500 is always a bug and says so.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Final

import orjson
from quart import Response, request

from server.commands import Context
from server.config import Settings
from server.errors import ApiError, BadRequest, Forbidden, UnsupportedMediaType
from server.schema import Field, Limits, parse, parse_query
from server.service import Roster, Ticket

JSON: Final = "application/json"
OK_BODY: Final = b'{"status":"ok"}'
INTERNAL_ERROR_BODY: Final = (b'{"status":500,"msg":"internal error (this is a bug)",'
                              b'"code":"internal_error"}')

#: Paths that never need the manager token: liveness, and the API's own description (it
#: describes, it holds no data, and a browser opening /docs cannot send a header).
OPEN_PATHS: Final = frozenset({"/health", "/docs", "/openapi.json"})
#: Paths that also take the token as ``?token=``: a browser's ``EventSource`` cannot send headers.
#: The access log redacts it (``server/logs.py``).
QUERY_TOKEN_PATHS: Final = frozenset({"/events"})
#: The RongCloud-compatible routes: signature auth, not the token (server/routes/rongcloud.py).
SIGNED_PATHS: Final = frozenset({"/user/subscribe/set.json", "/user/subscribe/query.json",
                                 "/user/subscribe/followers.json", "/user/checkOnline.json"})


def token_ok(given: bytes, token: bytes | None) -> bool:
    """The manager-token rule; constant-time, so the comparison leaks nothing of the token."""
    return token is None or hmac.compare_digest(given, token)


def manager_token(settings: Settings) -> bytes | None:
    """The token every route compares with: printable ASCII (``server/config.py`` refuses
    anything else at start), so its bytes are the same in any encoding."""
    return settings.token.encode("ascii") if settings.token else None


def header_token(headers: Any) -> bytes:
    """The ``token`` header of an ASGI scope, as the bytes that were sent."""
    return next((value for name, value in headers if name == b"token"), b"")


def given_token(path: str, headers: Any, args: Any) -> bytes:
    """The token a quart request presents: the ``token`` header, or ``?token=`` where allowed.

    Both are compared as the bytes that were sent: quart decodes header values as Latin-1, so
    encoding them back gives those bytes (as :func:`header_token` reads them on the fast path);
    the query is percent-decoded as UTF-8, so anything not ASCII stays non-ASCII and cannot match.
    """
    given = headers.get("token")
    if given is not None:
        return str(given).encode("latin-1")
    if path in QUERY_TOKEN_PATHS:
        return str(args.get("token", "")).encode("utf-8", "replace")
    return b""


def forbidden() -> Forbidden:
    return Forbidden("no management permission")


def error_body(err: ApiError) -> bytes:
    return json.dumps(err.body(), ensure_ascii=False, separators=(",", ":")).encode()


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, content_type=JSON)


def ok() -> Response:
    return Response(OK_BODY, status=200, content_type=JSON)


def error_response(err: ApiError) -> Response:
    return Response(error_body(err), status=err.status, content_type=JSON)


def decode_json(raw: bytes, mimetype: str | None) -> Any:
    """Decode a request body as JSON.

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


async def read_json() -> Any:
    """The current quart request's body decoded as JSON (rules in ``decode_json``)."""
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)  # as_text=False; quart's stub does not narrow it
    return decode_json(raw, request.mimetype or None)


class Api:
    """What the quart routes share: the service, the command context, body/query parsing."""

    def __init__(self, roster: Roster) -> None:
        self.roster = roster
        s = roster.settings
        self.limits = Limits(max_uids=s.max_uids_per_request, max_checks=s.max_checks_per_request)
        self.ctx = Context(roster, self.limits)

    async def body(self, fields: tuple[Field, ...]) -> dict[str, Any]:
        return parse(fields, await read_json(), self.limits)

    def query(self, fields: tuple[Field, ...]) -> dict[str, Any]:
        return parse_query(fields, request.args, self.limits)

    async def settle(self, ticket: Ticket | None) -> Response:
        """Acknowledge a write once its record is durable, with its LSN in ``X-LSN`` (a write
        that changed nothing carries the newest applied one: reading at it sees the same)."""
        if ticket is not None:
            lsn = await self.roster.settle(ticket)
        else:
            lsn = self.roster.applied_lsn
        response = ok()
        response.headers["X-LSN"] = str(lsn)
        return response
