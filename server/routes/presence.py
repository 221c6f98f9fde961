"""How Roster learns presence, and how it tells; JSON API, manager-token rule.

* ``POST /user/presence`` — one connection report from the gateway:
  ``{"uid", "device_flag": 0 app | 1 web | 2 pc, "online": 0|1, "session_id"?, "os"?,
  "client_ip"?}``. Logged like every mutation (the ``pr_set`` op), so after a restart the state is
  the last reported one.
* ``POST /user/presence_batch`` — ``{"events": [report, ...]}`` as one atomic record.
* ``POST /user/onlinestatus`` — WuKongIM's: a JSON array of uids →
  ``[{"uid", "device_flag", "online": 1}, ...]`` for the online devices only.
* ``GET /events`` — Server-Sent Events: one ``event: presence`` per aggregated status flip (and
  a new subscription's first status), ``id`` = log sequence number, resumable with
  ``Last-Event-ID`` (header, or ``?last_event_id=`` for clients that cannot set headers). The
  manager token may come as ``?token=`` here for the same reason (``server/http.py``; the access
  log redacts it). See ``server/events.py``.
"""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from server import commands
from server.events import check_event_id
from server.http import Api, json_response, read_json
from server.openapi import RouteDoc
from server.schema import describe

_REPORT_SCHEMA = describe(commands.REPORT)
_REPORT_SCHEMA["properties"].update(
    {name: {"type": "string", "maxLength": size} for name, size in commands.REPORT_TEXT.items()})
_BATCH_SCHEMA = {"type": "object", "required": ["events"],
                 "properties": {"events": {"type": "array", "items": _REPORT_SCHEMA,
                                           "minItems": 1}}}
_ONLINE_STATUS = {"type": "array", "items": {
    "type": "object", "required": ["uid", "device_flag", "online"],
    "properties": {"uid": {"type": "string"}, "device_flag": {"type": "integer"},
                   "online": {"type": "integer", "enum": [1]}}}}

DOCS = [
    RouteDoc("POST", "/user/presence", "report a device connecting (online 1) or disconnecting",
             None, body_schema=_REPORT_SCHEMA, tag="presence"),
    RouteDoc("POST", "/user/presence_batch", "several reports as one atomic record", None,
             body_schema=_BATCH_SCHEMA, tag="presence"),
    RouteDoc("POST", "/user/onlinestatus", "online devices of the given uids (WuKongIM)", None,
             _ONLINE_STATUS, body_schema={"type": "array", "items": {"type": "string"}},
             tag="presence"),
    RouteDoc("GET", "/events", "Server-Sent Events: presence flips, resumable with "
             "Last-Event-ID", None, {"type": "string"}, (400, 403), tag="presence",
             response_type="text/event-stream"),
]


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster
    ctx = api.ctx

    @app.post("/user/presence")
    async def presence_report() -> Response:
        return await api.settle(commands.presence_report(ctx, await read_json()))

    @app.post("/user/presence_batch")
    async def presence_batch() -> Response:
        return await api.settle(commands.presence_batch(ctx, await read_json()))

    @app.post("/user/onlinestatus")
    async def online_status() -> Response:
        online = commands.online_devices(ctx, await read_json())
        return json_response([{"uid": uid, "device_flag": flag, "online": 1}
                              for uid, flags in online for flag in flags])

    @app.get("/events")
    async def events() -> Response:
        last = request.headers.get("Last-Event-ID")
        if last is not None:
            check_event_id(last, "the Last-Event-ID header")
        else:
            last = request.args.get("last_event_id")
            if last is not None:
                check_event_id(last, "last_event_id")
        stream = roster.events.stream(last, roster.wal.acked_lsn)
        response = Response(stream, status=200, content_type="text/event-stream; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        response.timeout = None  # quart's RESPONSE_TIMEOUT would end the stream after 60 s
        return response
