"""``/channel*`` routes (SPEC §2): channels, their flags, subscribers, whitelist and blacklist.

Person channels (type 1) exist implicitly: their lists are the owner's friends-only / blocked lists
and any write creates the record. Every other type must exist (``/channel``, ``/channel/info`` or
``/channel/subscriber_add`` create it) before list operations; otherwise 404. Temporary channels
(type 8) are created only by ``/tmpchannel/subscriber_set``.

Where to look: ``/channel/whitelist_set`` and ``/channel/blacklist_set`` are ``replace`` in
``_register_list`` (the two lists share one implementation); the rest are ``@app`` routes below.
"""

from __future__ import annotations

from typing import Any

from quart import Response
from quart_trio import QuartTrio

from server.app import Api, json_response, ok
from server.errors import BadRequest, channel_not_found
from server.openapi import UID_ARRAY, RouteDoc
from server.schema import Field
from server.state import FLAG_NAMES, PERSON, TEMP, Channel

CHANNEL = (
    Field("channel_id", "channel_id", required=True),
    Field("channel_type", "channel_type", required=True,
          doc="1 person, 2 group, 8 temporary; any other 3-255 behaves like a group"),
)
FLAGS = tuple(Field(name, "flag", doc="0 or 1; omitted flags keep their value") for name in
              FLAG_NAMES)
CREATE = (*CHANNEL, *FLAGS,
          Field("subscribers", "uids", default=[]),
          Field("reset", "flag", default=0, doc="1: replace the subscriber set"))
INFO = (*CHANNEL, *FLAGS)
SUBSCRIBER_ADD = (
    Field("channel_id", "channel_id", required=True),
    Field("channel_type", "channel_type", zero_default=True, doc="missing or 0 means 2 (group)"),
    Field("subscribers", "uids", default=[]),
    Field("reset", "flag", default=0),
    Field("temp_subscriber", "flag", default=0),
)
SUBSCRIBER_REMOVE = (*CHANNEL, Field("subscribers", "uids", default=[]))
LIST_CHANGE = (*CHANNEL, Field("uids", "uids", default=[]))
SUBSCRIBERS_QUERY = (
    *CHANNEL,
    Field("limit", "int", default=10_000, minimum=1, maximum=10_000),
    Field("cursor", "uid", doc="return uids sorted after this one (next_cursor of the last page)"),
)

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
SUBSCRIBERS_PAGE = {
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
             SUBSCRIBERS_QUERY, SUBSCRIBERS_PAGE, READ_ERRORS),
]
for _name, _what in (("whitelist", "allowed senders; non-empty = whitelist mode"),
                     ("blacklist", "blocked senders; beats the whitelist")):
    DOCS += [
        RouteDoc("POST", f"/channel/{_name}_add", f"add to the {_name} ({_what})", LIST_CHANGE,
                 errors=WRITE_ERRORS),
        RouteDoc("POST", f"/channel/{_name}_set", f"replace the whole {_name} in one step",
                 LIST_CHANGE, errors=WRITE_ERRORS),
        RouteDoc("POST", f"/channel/{_name}_remove", f"remove from the {_name}", LIST_CHANGE,
                 errors=WRITE_ERRORS),
        RouteDoc("POST", f"/channel/{_name}_remove_all", f"clear the {_name}", CHANNEL,
                 errors=WRITE_ERRORS),
        RouteDoc("GET", f"/channel/{_name}", f"the {_name}, sorted", CHANNEL, UID_ARRAY,
                 READ_ERRORS),
    ]


def _flags_given(body: dict[str, Any]) -> dict[str, int]:
    # Flags present are set; flags left out keep their value (WuKongIM zeroes them: a known trap).
    return {name: body[name] for name in FLAG_NAMES if body[name] is not None}


def info_of(channel_id: str, channel_type: int, ch: Channel) -> dict[str, Any]:
    return {
        "channel_id": channel_id,
        "channel_type": channel_type,
        **ch.flags(),
        "subscriber_count": len(ch.subscribers),
        "whitelist_count": len(ch.whitelist),
        "blacklist_count": len(ch.blacklist),
        "created_at": ch.created_at,
        "updated_at": ch.updated_at,
    }


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster
    state = roster.state

    def existing(cid: str, ctype: int) -> Channel | None:
        """The channel a list write may touch; raises 404 for a missing group-like channel."""
        ch = state.get(cid, ctype, roster.now_ms())
        if ch is None and ctype != PERSON:
            raise channel_not_found(cid, ctype)
        return ch

    def refuse_temp_create(cid: str, ctype: int) -> None:
        if ctype == TEMP and state.get(cid, ctype, roster.now_ms()) is None:
            raise BadRequest(
                "temporary channels (type 8) are created only through /tmpchannel/subscriber_set",
                "temp_channel_unsupported",
            )

    def refuse_person(ctype: int, what: str) -> None:
        if ctype == PERSON:
            raise BadRequest(
                f"person channels (type 1) have no {what}; use the whitelist/blacklist of the "
                f"owner's uid",
                "person_channel_unsupported",
            )

    @app.post("/channel")
    async def channel_create() -> Response:
        b = await api.body(CREATE)
        cid, ctype = b["channel_id"], b["channel_type"]
        if ctype == PERSON and (b["subscribers"] or b["reset"]):
            refuse_person(ctype, "subscribers")
        refuse_temp_create(cid, ctype)
        ops: list[tuple[Any, ...]] = [("ch_put", cid, ctype, _flags_given(b))]
        if b["reset"]:
            ops.append(("sub_set", cid, ctype, b["subscribers"]))
        elif b["subscribers"]:
            ops.append(("sub_add", cid, ctype, b["subscribers"]))
        await roster.commit(ops)
        return ok()

    @app.post("/channel/info")
    async def channel_info_update() -> Response:
        b = await api.body(INFO)
        cid, ctype = b["channel_id"], b["channel_type"]
        refuse_temp_create(cid, ctype)
        await roster.commit([("ch_put", cid, ctype, _flags_given(b))])
        return ok()

    @app.get("/channel/info")
    async def channel_info_get() -> Response:
        q = api.query(CHANNEL)
        cid, ctype = q["channel_id"], q["channel_type"]
        ch = state.get(cid, ctype, roster.now_ms())
        if ch is None:
            raise channel_not_found(cid, ctype)
        return json_response(info_of(cid, ctype, ch))

    @app.post("/channel/delete")
    async def channel_delete() -> Response:
        b = await api.body(CHANNEL)
        cid, ctype = b["channel_id"], b["channel_type"]
        if (cid, ctype) in state.channels:  # deleting a missing channel is a no-op, not an error
            await roster.commit([("ch_del", cid, ctype)])
        return ok()

    @app.post("/channel/subscriber_add")
    async def subscriber_add() -> Response:
        b = await api.body(SUBSCRIBER_ADD)
        cid, ctype = b["channel_id"], b["channel_type"]
        if b["temp_subscriber"]:
            raise BadRequest("temp_subscriber is not supported here; use "
                             "/tmpchannel/subscriber_set", "temp_subscriber_unsupported")
        refuse_person(ctype, "subscribers")
        if not b["subscribers"] and not b["reset"]:
            raise BadRequest("subscribers cannot be empty (unless reset=1)", "uids_empty")
        refuse_temp_create(cid, ctype)
        ops: list[tuple[Any, ...]] = []
        if state.get(cid, ctype, roster.now_ms()) is None:
            ops.append(("ch_put", cid, ctype, {}))
        ops.append(("sub_set" if b["reset"] else "sub_add", cid, ctype, b["subscribers"]))
        await roster.commit(ops)
        return ok()

    @app.post("/channel/subscriber_remove")
    async def subscriber_remove() -> Response:
        b = await api.body(SUBSCRIBER_REMOVE)
        cid, ctype = b["channel_id"], b["channel_type"]
        refuse_person(ctype, "subscribers")
        if not b["subscribers"]:
            raise BadRequest("subscribers cannot be empty", "uids_empty")
        existing(cid, ctype)
        await roster.commit([("sub_rm", cid, ctype, b["subscribers"])])
        return ok()

    @app.post("/channel/subscriber_remove_all")
    async def subscriber_remove_all() -> Response:
        b = await api.body(CHANNEL)
        cid, ctype = b["channel_id"], b["channel_type"]
        refuse_person(ctype, "subscribers")
        existing(cid, ctype)
        await roster.commit([("sub_set", cid, ctype, [])])
        return ok()

    @app.get("/channel/subscribers")
    async def subscribers_get() -> Response:
        q = api.query(SUBSCRIBERS_QUERY)
        cid, ctype = q["channel_id"], q["channel_type"]
        refuse_person(ctype, "subscribers")
        ch = existing(cid, ctype)
        assert ch is not None
        uids = sorted(ch.subscribers)
        if q["cursor"] is not None:
            from bisect import bisect_right

            uids = uids[bisect_right(uids, q["cursor"]):]
        page = uids[: q["limit"]]
        more = len(uids) > len(page)
        return json_response({"uids": page, "next_cursor": page[-1] if more else None})

    for attr, prefix, name in (("whitelist", "wl", "whitelist"),
                               ("blacklist", "bl", "blacklist")):
        _register_list(app, api, attr, prefix, name, existing)


def _register_list(app: QuartTrio, api: Api, attr: str, prefix: str, name: str,
                   existing: Any) -> None:
    """The six whitelist (or blacklist) routes; the two lists behave the same (SPEC §2)."""
    roster = api.roster

    async def change(op: str, need_uids: bool) -> Response:
        b = await api.body(LIST_CHANGE)
        cid, ctype, uids = b["channel_id"], b["channel_type"], b["uids"]
        if need_uids and not uids:
            raise BadRequest("uids cannot be empty", "uids_empty")
        existing(cid, ctype)
        await roster.commit([(f"{prefix}_{op}", cid, ctype, uids)])
        return ok()

    async def add() -> Response:
        return await change("add", need_uids=True)

    async def remove() -> Response:
        return await change("rm", need_uids=True)

    async def replace() -> Response:
        # One atomic step (WuKongIM clears, then adds); empty uids clears and ends whitelist mode.
        return await change("set", need_uids=False)

    async def remove_all() -> Response:
        b = await api.body(CHANNEL)
        cid, ctype = b["channel_id"], b["channel_type"]
        existing(cid, ctype)
        await roster.commit([(f"{prefix}_set", cid, ctype, [])])
        return ok()

    async def get() -> Response:
        q = api.query(CHANNEL)
        ch = existing(q["channel_id"], q["channel_type"])
        return json_response(sorted(getattr(ch, attr)) if ch is not None else [])

    for suffix, view in (("add", add), ("set", replace), ("remove", remove),
                         ("remove_all", remove_all)):
        app.add_url_rule(f"/channel/{name}_{suffix}", f"{name}_{suffix}", view, methods=["POST"])
    app.add_url_rule(f"/channel/{name}", f"{name}_get", get, methods=["GET"])
