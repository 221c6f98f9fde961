"""Operations: ``/health``, ``/openapi.json`` and ``/docs`` (always open: they hold no data);
``/metrics`` and ``/admin/snapshot`` (manager-token rule)."""

from __future__ import annotations

from typing import Any

from quart import Response
from quart_trio import QuartTrio

from server.http import Api, json_response
from server.metrics import CONTENT_TYPE
from server.openapi import RouteDoc, build, render_html
from server.version import version

HEALTH = {"type": "object", "required": ["status", "lsn", "version"],
          "properties": {"status": {"type": "string"}, "lsn": {"type": "integer"},
                         "version": {"type": "string"}}}
SNAPSHOT = {"type": "object", "required": ["status", "lsn", "bytes", "seconds"],
            "properties": {"status": {"type": "string"}, "lsn": {"type": "integer"},
                           "bytes": {"type": "integer"}, "seconds": {"type": "number"}}}
TEXT = {"type": "string"}

DOCS = [
    RouteDoc("GET", "/health", "liveness, the durable log position and the server's version "
             "(never needs the token)",
             None, HEALTH, (), tag="health"),
    RouteDoc("GET", "/metrics", "Prometheus text exposition", None, TEXT, (403,), tag="ops",
             response_type="text/plain"),
    RouteDoc("POST", "/admin/snapshot", "write a snapshot now", None, SNAPSHOT, (403, 503),
             tag="ops"),
    RouteDoc("GET", "/openapi.json", "this document (never needs the token)", None,
             {"type": "object"}, (), tag="ops"),
    RouteDoc("GET", "/docs", "the API as an HTML page (never needs the token)", None, TEXT, (),
             tag="ops", response_type="text/html"),
]


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster
    spec: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        # Built on first use: by then every route family has registered its DOCS.
        if not spec:
            spec.update(build(app.extensions["route_docs"],
                              token_required=roster.settings.token is not None))
        return spec

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "lsn": roster.wal.durable_lsn,
                              "version": version(), **roster.role_fields()})

    @app.get("/metrics")
    async def metrics() -> Response:
        body = app.extensions["metrics"].render()
        return Response(body, status=200, content_type=CONTENT_TYPE)

    @app.post("/admin/snapshot")
    async def admin_snapshot() -> Response:
        info = await roster.snapshot()
        return json_response({"status": "ok", "lsn": info.lsn, "bytes": info.bytes,
                              "seconds": round(info.seconds, 6)})

    @app.get("/openapi.json")
    async def openapi_json() -> Response:
        return json_response(document())

    @app.get("/docs")
    async def docs() -> Response:
        return Response(render_html(document()), status=200,
                        content_type="text/html; charset=utf-8")
