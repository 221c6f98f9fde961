"""The quart-trio application: error envelope, manager-token auth, and the route families.

Routes live in ``server/routes/`` by family:

* ``channels.py``    — ``/channel*``: create/info/delete, subscribers, whitelist, blacklist
* ``tmpchannel.py``  — ``/tmpchannel/subscriber_set``
* ``users.py``       — ``/user/systemuids*``
* ``permission.py``  — ``/permission/check`` and ``/permission/check_batch``
* ``admin.py``       — ``/health``, ``/admin/snapshot``
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from server.errors import ApiError
from server.fastpath import FastPath, decode_json
from server.metrics import Metrics
from server.openapi import RouteDoc
from server.schema import Field, Limits, parse, parse_query
from server.service import Roster

log = logging.getLogger("roster")

_JSON = "application/json"
OK_BODY = b'{"status":"ok"}'

#: Paths that never need the manager token.
OPEN_PATHS = frozenset({"/health"})
#: The RongCloud-compatible routes: signature auth, not the token (server/routes/rongcloud.py).
SIGNED_PATHS = frozenset({"/user/subscribe/set.json", "/user/subscribe/query.json",
                          "/user/subscribe/followers.json", "/user/checkOnline.json"})

_HTTP_CODES = {
    400: "invalid_request",
    404: "route_not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "not_json",
}


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, content_type=_JSON)


def ok() -> Response:
    return Response(OK_BODY, status=200, content_type=_JSON)


def error_response(err: ApiError) -> Response:
    return json_response(err.body(), err.status)


class Api:
    """What the routes share: the service, the limits, and body/query parsing."""

    def __init__(self, roster: Roster) -> None:
        self.roster = roster
        s = roster.settings
        self.limits = Limits(max_uids=s.max_uids_per_request, max_checks=s.max_checks_per_request)

    async def body(self, fields: tuple[Field, ...]) -> dict[str, Any]:
        return parse(fields, await read_json(), self.limits)

    def query(self, fields: tuple[Field, ...]) -> dict[str, Any]:
        return parse_query(fields, request.args, self.limits)


async def read_json() -> Any:
    """The request body decoded as JSON (rules in ``fastpath.decode_json``)."""
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)  # as_text=False; quart's stub does not narrow it
    return decode_json(raw, request.mimetype or None)


def route_families() -> tuple[Any, ...]:
    """The route modules; each has ``register(app, api)`` and ``DOCS`` (its RouteDoc list)."""
    from server.routes import admin, channels, permission, presence, rongcloud, tmpchannel, users

    return (channels, tmpchannel, users, permission, presence, rongcloud, admin)


def route_docs() -> list[RouteDoc]:
    return [doc for family in route_families() for doc in family.DOCS]


def create_app(roster: Roster) -> QuartTrio:
    app = QuartTrio("roster")
    app.config["MAX_CONTENT_LENGTH"] = roster.settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    token = roster.settings.token.encode() if roster.settings.token else None

    if token is not None:

        @app.before_request
        async def require_token() -> Response | None:
            if request.path in OPEN_PATHS or request.path in SIGNED_PATHS:
                return None
            given = request.headers.get("token", "").encode()
            # Constant-time: the comparison must not leak how much of the token matched.
            if not hmac.compare_digest(given, token):
                return json_response(
                    {"status": 403, "msg": "no management permission", "code": "no_permission"},
                    403,
                )
            return None

    @app.after_request
    async def finish_body(response: Response) -> Response:
        # An answer given before the body was read (403 token, 404 route, 405 method) must still
        # let the client's body arrive, or the keep-alive connection stalls on its unread bytes.
        if response.status_code >= 400 and request.method not in ("GET", "HEAD"):
            try:
                await request.body
            except HTTPException:  # larger than max_body_bytes: give up on this connection
                response.headers["Connection"] = "close"
        return response

    @app.errorhandler(ApiError)
    async def api_error(err: ApiError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    async def http_error(err: HTTPException) -> Response:
        status = err.code or 500
        msg = {
            404: f"no route {request.path}",
            405: f"method {request.method} is not allowed on {request.path}",
            413: f"request body is larger than {roster.settings.max_body_bytes} bytes",
        }.get(status, err.description or err.name)
        response = json_response(
            {"status": status, "msg": msg, "code": _HTTP_CODES.get(status, "http_error")}, status
        )
        if status == 413:
            # The unread rest of the body is still on the connection: close it rather than
            # parse that body as the next request (or wait for one that never comes).
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    async def unexpected(err: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response(
            {"status": 500, "msg": "internal error (this is a bug)", "code": "internal_error"}, 500
        )

    api = Api(roster)
    for family in route_families():
        family.register(app, api)
    # Every family documents its routes next to them (server/openapi.py builds /openapi.json).
    app.extensions["route_docs"] = route_docs()
    metrics = app.extensions["metrics"] = Metrics(roster)
    metrics.routes = frozenset(rule.rule for rule in app.url_map.iter_rules())
    # The permission checks are answered before quart (server/fastpath.py); metrics see all.
    fast = FastPath(roster, api.limits)
    app.asgi_app = metrics.wrap(fast.wrap(app.asgi_app))  # type: ignore[method-assign, arg-type, assignment]
    return app
