"""``/user/systemuids*`` (SPEC §4): system accounts outrank every list."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server.app import Api, json_response, ok
from server.errors import BadRequest
from server.schema import Field

UIDS = (Field("uids", "uids", required=True),)


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
