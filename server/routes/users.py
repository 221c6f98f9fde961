"""``/user/systemuids*`` (SPEC §4): system accounts outrank every list."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server.app import Api, json_response, ok
from server.errors import BadRequest
from server.openapi import UID_ARRAY, RouteDoc
from server.schema import Field

UIDS = (Field("uids", "uids", required=True),)

DOCS = [
    RouteDoc("POST", "/user/systemuids_add", "add system accounts (outrank every list)", UIDS,
             tag="system accounts"),
    RouteDoc("POST", "/user/systemuids_remove", "remove system accounts", UIDS,
             tag="system accounts"),
    RouteDoc("GET", "/user/systemuids", "system accounts, sorted", None, UID_ARRAY, (403,),
             tag="system accounts"),
]


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster

    async def change(op: str) -> Response:
        uids = (await api.body(UIDS))["uids"]
        if not uids:
            raise BadRequest("uids cannot be empty", "uids_empty")
        await roster.commit([(op, uids)])
        return ok()

    @app.post("/user/systemuids_add")
    async def systemuids_add() -> Response:
        return await change("sys_add")

    @app.post("/user/systemuids_remove")
    async def systemuids_remove() -> Response:
        return await change("sys_rm")

    @app.get("/user/systemuids")
    async def systemuids_get() -> Response:
        return json_response(sorted(roster.state.system_uids))
