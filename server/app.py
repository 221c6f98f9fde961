"""The quart-trio application, assembled: error handlers, the token rule, the route families and
the ASGI layers around them (metrics outermost, then the ``X-Min-LSN`` wait, then the permission
fast path). It defines no route; routes import what they share from ``server/http.py``, never
from here.

Routes live in ``server/routes/`` by family, each a thin adapter over ``server/commands.py``:

* ``channels.py``    — ``/channel*``: create/info/delete, subscribers, whitelist, blacklist
* ``tmpchannel.py``  — ``/tmpchannel/subscriber_set``
* ``users.py``       — ``/user/systemuids*``
* ``permission.py``  — ``/permission/check`` and ``/permission/check_batch``
* ``presence.py``    — presence reports, ``/user/onlinestatus``, ``/events``
* ``rongcloud.py``   — the signed RongCloud subscription routes
* ``admin.py``       — ``/health``, ``/metrics``, ``/admin/snapshot``, ``/openapi.json``, ``/docs``
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from server.errors import ApiError, NotLeader
from server.fastpath import FastPath
from server.http import (
    INTERNAL_ERROR_BODY,
    JSON,
    OPEN_PATHS,
    SIGNED_PATHS,
    Api,
    error_response,
    forbidden,
    given_token,
    json_response,
    manager_token,
    token_ok,
)
from server.metrics import Metrics
from server.minlsn import min_lsn
from server.openapi import RouteDoc
from server.service import Roster

log = logging.getLogger("roster")

_HTTP_CODES = {
    400: "invalid_request",
    404: "route_not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "not_json",
}


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
    token = manager_token(roster.settings)

    if token is not None:

        @app.before_request
        async def require_token() -> Response | None:
            if request.path in OPEN_PATHS or request.path in SIGNED_PATHS:
                return None
            if not token_ok(given_token(request.path, request.headers, request.args), token):
                return error_response(forbidden())
            return None

    @app.errorhandler(ApiError)
    async def api_error(err: ApiError) -> Response:
        response = error_response(err)
        if isinstance(err, NotLeader):  # cluster mode: the same request, sent to the leader
            query = request.query_string.decode("latin-1")
            response.headers["Location"] = err.leader_url + request.path + (
                f"?{query}" if query else "")
        return response

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
        # An answer given before the body has arrived (403, 404, 405, 413) closes the connection
        # without reading the rest of that body: server/edge.py adds "Connection: close".
        return response

    @app.errorhandler(Exception)
    async def unexpected(err: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return Response(INTERNAL_ERROR_BODY, status=500, content_type=JSON)

    api = Api(roster)
    # The Redis-protocol lane runs its commands in the same context (server/resp.py).
    app.extensions["command_context"] = api.ctx
    for family in route_families():
        family.register(app, api)
    # Every family documents its routes next to them (server/openapi.py builds /openapi.json).
    app.extensions["route_docs"] = route_docs()
    metrics = app.extensions["metrics"] = Metrics(roster)
    metrics.routes = frozenset(rule.rule for rule in app.url_map.iter_rules())
    # The permission checks are answered before quart (server/fastpath.py); metrics see all.
    fast = FastPath(api.ctx)
    app.asgi_app = metrics.wrap(min_lsn(roster, fast.wrap(app.asgi_app)))  # type: ignore[method-assign, arg-type, assignment]
    return app
