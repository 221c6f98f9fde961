"""``/channel*`` routes: channels, their flags, subscribers, whitelist and blacklist.

Thin adapters over ``server/commands.py``, which holds the rules (person channels exist
implicitly; every other type must be created by ``/channel``, ``/channel/info`` or
``/channel/subscriber_add`` before list operations, else 404; temporary channels only through
``/tmpchannel/subscriber_set``). Here a JSON body or query string goes in and JSON comes out.

Where to look: ``WRITES`` maps each POST path to its command — ``/channel/whitelist_set`` is
``commands.COMMANDS["whitelist_set"]`` (one atomic replace); the GET routes are below it.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server import commands
from server.commands import (
    CHANNEL,
    COMMANDS,
    CREATE,
    INFO,
    LIST_CHANGE,
    LIST_SET,
    SUBSCRIBER_ADD,
    SUBSCRIBER_REMOVE,
    SUBSCRIBERS_PAGE,
    Command,
)
from server.errors import channel_not_found
from server.http import Api, json_response, read_json
from server.openapi import UID_ARRAY, RouteDoc
from server.ops import FLAG_NAMES

#: POST path -> the command it runs; the answer is {"status":"ok"} once the change is durable
WRITES: dict[str, Command] = {
    "/channel": commands.channel_put,
    "/channel/info": commands.channel_set,
    "/channel/delete": commands.channel_delete,
    "/channel/subscriber_add": commands.subscriber_add,
    "/channel/subscriber_remove": commands.subscriber_remove,
    "/channel/subscriber_remove_all": commands.subscriber_remove_all,
    **{f"/channel/{which}_{suffix}": COMMANDS[f"{which}_{suffix}"]
       for which in ("whitelist", "blacklist")
       for suffix in ("add", "set", "remove", "remove_all")},
}

INFO_SCHEMA = {
    "type": "object",
    "required": ["channel_id", "channel_type", *FLAG_NAMES, "subscriber_count", "whitelist_count",
                 "blacklist_count", "created_at", "updated_at"],
    "properties": {
        "channel_id": {"type": "string"},
        **{name: {"type": "integer"} for name in ("channel_type", *FLAG_NAMES,
                                                 "subscriber_count", "whitelist_count",
                                                 "blacklist_count", "created_at", "updated_at")},
    },
}
SUBSCRIBERS_SCHEMA = {
    "type": "object", "required": ["uids", "next_cursor"],
    "properties": {"uids": UID_ARRAY, "next_cursor": {"type": "string", "nullable": True}},
}
WRITE_ERRORS = (400, 403, 404, 413, 415, 503)
READ_ERRORS = (400, 403, 404)

DOCS = [
    RouteDoc("POST", "/channel", "create or update a channel; omitted flags keep their value",
             CREATE),
    RouteDoc("POST", "/channel/info", "create or update a channel's flags", INFO),
    RouteDoc("GET", "/channel/info", "a channel's flags, list sizes and timestamps", CHANNEL,
             INFO_SCHEMA, READ_ERRORS),
    RouteDoc("POST", "/channel/delete", "delete a channel and its lists (missing: no-op)",
             CHANNEL),
    RouteDoc("POST", "/channel/subscriber_add", "add subscribers (reset=1 replaces); creates "
             "the channel", SUBSCRIBER_ADD),
    RouteDoc("POST", "/channel/subscriber_remove", "remove subscribers", SUBSCRIBER_REMOVE,
             errors=WRITE_ERRORS),
    RouteDoc("POST", "/channel/subscriber_remove_all", "remove every subscriber", CHANNEL,
             errors=WRITE_ERRORS),
    RouteDoc("GET", "/channel/subscribers", "subscribers, sorted, paged by cursor",
             SUBSCRIBERS_PAGE, SUBSCRIBERS_SCHEMA, READ_ERRORS),
]
for _name, _what in (("whitelist", "allowed senders; non-empty = whitelist mode"),
                     ("blacklist", "blocked senders; beats the whitelist")):
    DOCS += [
        RouteDoc("POST", f"/channel/{_name}_add", f"add to the {_name} ({_what})", LIST_CHANGE,
                 errors=WRITE_ERRORS),
        RouteDoc("POST", f"/channel/{_name}_set", f"replace the whole {_name} in one step",
                 LIST_SET, errors=WRITE_ERRORS),
        RouteDoc("POST", f"/channel/{_name}_remove", f"remove from the {_name}", LIST_CHANGE,
                 errors=WRITE_ERRORS),
        RouteDoc("POST", f"/channel/{_name}_remove_all", f"clear the {_name}", CHANNEL,
                 errors=WRITE_ERRORS),
        RouteDoc("GET", f"/channel/{_name}", f"the {_name}, sorted", CHANNEL, UID_ARRAY,
                 READ_ERRORS),
    ]


def register(app: QuartTrio, api: Api) -> None:
    ctx = api.ctx

    def write_route(path: str, cmd: Command) -> None:
        async def view() -> Response:
            return await api.settle(cmd(ctx, await read_json()))

        app.add_url_rule(path, cmd.name, view, methods=["POST"])

    for path, cmd in WRITES.items():
        write_route(path, cmd)

    @app.get("/channel/info")
    async def channel_info_get() -> Response:
        q = api.query(CHANNEL)
        info = commands.channel_get.run(ctx, q)
        if info is None:
            raise channel_not_found(q["channel_id"], q["channel_type"])
        return json_response(info)

    @app.get("/channel/subscribers")
    async def subscribers_get() -> Response:
        page, next_cursor = commands.subscribers.run(ctx, api.query(SUBSCRIBERS_PAGE))
        return json_response({"uids": page, "next_cursor": next_cursor})

    def list_route(which: str) -> None:
        cmd = COMMANDS[which]

        async def view() -> Response:
            return json_response(cmd.run(ctx, api.query(CHANNEL)))

        app.add_url_rule(f"/channel/{which}", f"{which}_get", view, methods=["GET"])

    list_route("whitelist")
    list_route("blacklist")
