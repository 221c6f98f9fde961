"""``/permission/check`` and ``/permission/check_batch``: the read hot path.

Served over HTTP by ``server/fastpath.py`` before quart sees the request; the quart routes here
give the same answers through the same functions (``answer_check``/``answer_batch``) for quart's
own test client, route table (405 on other methods) and the OpenAPI document. The decision itself
is ``server.permission.decide``.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server.commands import CHECK, CHECK_BATCH
from server.fastpath import answer_batch, answer_check
from server.http import Api, read_json
from server.openapi import RouteDoc
from server.permission import REASON_NAMES

RESULT = {
    "type": "object", "required": ["allowed", "reason", "reason_name"],
    "properties": {"allowed": {"type": "boolean"},
                   "reason": {"type": "integer", "enum": sorted(REASON_NAMES)},
                   "reason_name": {"type": "string", "enum": sorted(REASON_NAMES.values())}},
}
DOCS = [
    RouteDoc("POST", "/permission/check",
             "may from_uid send to this channel? (the rules: server/permission.py)", CHECK,
             RESULT, (400, 403, 413, 415), tag="permission"),
    RouteDoc("POST", "/permission/check_batch", "many checks in one call, answers in order",
             CHECK_BATCH, {"type": "object", "required": ["results"],
                           "properties": {"results": {"type": "array", "items": RESULT}}},
             (400, 403, 413, 415), tag="permission"),
]


def register(app: QuartTrio, api: Api) -> None:
    def json_bytes(body: bytes) -> Response:
        return Response(body, status=200, content_type="application/json")

    @app.post("/permission/check")
    async def permission_check() -> Response:
        return json_bytes(answer_check(api.ctx, await read_json()))

    @app.post("/permission/check_batch")
    async def permission_check_batch() -> Response:
        return json_bytes(answer_batch(api.ctx, await read_json()))
