"""``/health`` (always open), ``/metrics`` and ``/admin/snapshot`` (manager-token rule)."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server.app import Api, json_response
from server.metrics import CONTENT_TYPE


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "lsn": roster.wal.durable_lsn})

    @app.get("/metrics")
    async def metrics() -> Response:
        body = app.extensions["metrics"].render()
        return Response(body, status=200, content_type=CONTENT_TYPE)

    @app.post("/admin/snapshot")
    async def admin_snapshot() -> Response:
        info = await roster.snapshot()
        return json_response({"status": "ok", "lsn": info.lsn, "bytes": info.bytes,
                              "seconds": round(info.seconds, 6)})
