"""``/tmpchannel/subscriber_set``: replace a temporary channel's subscribers.

Unlike WuKongIM v2, where temporary channels are memory-only tags, Roster logs them: they survive a
restart and expire ``tmpchannel_ttl`` seconds (or the request's ``ttl``) after the last set. The
rules are ``commands.tmp_subscriber_set``.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server import commands
from server.http import Api, read_json
from server.openapi import RouteDoc

DOCS = [RouteDoc("POST", "/tmpchannel/subscriber_set",
                 "replace the subscribers of temporary channel (channel_id, 8)", commands.TMP_SET,
                 tag="tmpchannel")]


def register(app: QuartTrio, api: Api) -> None:
    @app.post("/tmpchannel/subscriber_set")
    async def tmp_subscriber_set() -> Response:
        return await api.settle(commands.tmp_subscriber_set(api.ctx, await read_json()))
