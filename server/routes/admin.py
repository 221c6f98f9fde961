"""``/health`` (always open) and ``/admin/snapshot`` (manager-token rule)."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server.app import Api, json_response


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "lsn": roster.wal.durable_lsn})

    @app.post("/admin/snapshot")
    async def admin_snapshot() -> Response:
        info = await roster.snapshot()
        return json_response({"status": "ok", "lsn": info.lsn, "bytes": info.bytes,
                              "seconds": round(info.seconds, 6)})
