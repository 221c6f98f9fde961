"""``/user/systemuids*``: system accounts outrank every list (``commands.system_*``)."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server import commands
from server.http import Api, json_response, read_json
from server.openapi import UID_ARRAY, RouteDoc

DOCS = [
    RouteDoc("POST", "/user/systemuids_add", "add system accounts (outrank every list)",
             commands.UIDS, tag="system accounts"),
    RouteDoc("POST", "/user/systemuids_remove", "remove system accounts", commands.UIDS,
             tag="system accounts"),
    RouteDoc("GET", "/user/systemuids", "system accounts, sorted", None, UID_ARRAY, (403,),
             tag="system accounts"),
]


def register(app: QuartTrio, api: Api) -> None:
    ctx = api.ctx

    @app.post("/user/systemuids_add")
    async def systemuids_add() -> Response:
        return await api.settle(commands.COMMANDS["system_add"](ctx, await read_json()))

    @app.post("/user/systemuids_remove")
    async def systemuids_remove() -> Response:
        return await api.settle(commands.COMMANDS["system_remove"](ctx, await read_json()))

    @app.get("/user/systemuids")
    async def systemuids_get() -> Response:
        return json_response(commands.system_list.run(ctx, {}))
