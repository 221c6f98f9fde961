"""``/tmpchannel/subscriber_set`` (SPEC §3, seed 000): replace a temporary channel's subscribers.

Unlike WuKongIM v2, where temporary channels are memory-only tags, Roster logs them: they survive a
restart and expire ``tmpchannel_ttl`` seconds (or the request's ``ttl``) after the last set.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server.app import Api, ok
from server.errors import BadRequest
from server.openapi import RouteDoc
from server.schema import Field

SUBSCRIBER_SET = (
    Field("channel_id", "channel_id", required=True),
    Field("uids", "uids", default=[]),
    Field("ttl", "int", minimum=60, maximum=604_800,
          doc="seconds until the channel expires; default tmpchannel_ttl (1200)"),
)

DOCS = [RouteDoc("POST", "/tmpchannel/subscriber_set",
                 "replace the subscribers of temporary channel (channel_id, 8)", SUBSCRIBER_SET,
                 tag="tmpchannel")]


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster

    @app.post("/tmpchannel/subscriber_set")
    async def tmp_subscriber_set() -> Response:
        b = await api.body(SUBSCRIBER_SET)
        if not b["uids"]:
            raise BadRequest("uids cannot be empty", "uids_empty")
        ttl = b["ttl"] if b["ttl"] is not None else roster.settings.tmpchannel_ttl
        expires_at = roster.now_ms() + ttl * 1000
        await roster.commit([("tmp_set", b["channel_id"], b["uids"], expires_at)])
        return ok()
