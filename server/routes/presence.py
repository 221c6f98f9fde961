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
  ``Last-Event-ID`` (header, or ``?last_event_id=`` for clients that cannot set headers). See
  ``server/events.py``.
"""

from __future__ import annotations

from typing import Any, Final

from quart import Response, request
from quart_trio import QuartTrio

from server.app import Api, json_response, ok, read_json
from server.errors import BadRequest
from server.openapi import RouteDoc
from server.schema import Field, Limits, check_uids, describe, parse

REPORT = (
    Field("uid", "uid", required=True),
    Field("device_flag", "int", required=True, minimum=0, maximum=2,
          doc="0 app, 1 web, 2 pc (WuKongIM's device flags)"),
    Field("online", "flag", required=True, doc="1 connected, 0 disconnected"),
)
#: optional text of a report, passed on to the webhook (RongCloud's sessionId, os, clientIp)
TEXT_FIELDS: Final = {"session_id": 128, "os": 32, "client_ip": 64}

_REPORT_SCHEMA = describe(REPORT)
_REPORT_SCHEMA["properties"].update(
    {name: {"type": "string", "maxLength": size} for name, size in TEXT_FIELDS.items()})
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
             "Last-Event-ID", None, {"type": "string"}, (403,), tag="presence",
             response_type="text/event-stream"),
]


def report_op(data: object, limits: Limits, where: str = "") -> tuple[Any, ...]:
    """A validated report → its ``pr_set`` op (errors name ``where`` first, e.g. events[3])."""
    try:
        b = parse(REPORT, data, limits)
    except BadRequest as exc:
        raise BadRequest(f"{where}{exc.msg}", exc.code) from None
    assert isinstance(data, dict)
    texts = []
    for name, size in TEXT_FIELDS.items():
        value = data.get(name)
        if value is None:
            value = ""
        elif not isinstance(value, str):
            raise BadRequest(f"{where}{name} must be a string", "field_type")
        elif len(value) > size:
            raise BadRequest(f"{where}{name} is longer than {size} characters",
                             "value_out_of_range")
        texts.append(value)
    return ("pr_set", b["uid"], b["device_flag"], b["online"], *texts)


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster
    presence = roster.state.presence

    @app.post("/user/presence")
    async def presence_report() -> Response:
        await roster.commit([report_op(await read_json(), api.limits)])
        return ok()

    @app.post("/user/presence_batch")
    async def presence_batch() -> Response:
        data = await read_json()
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object", "invalid_body")
        events = data.get("events")
        if not isinstance(events, list):
            raise BadRequest("events is required: an array of reports",
                             "field_missing" if events is None else "field_type")
        if not events:
            raise BadRequest("events cannot be empty", "events_empty")
        if len(events) > api.limits.max_uids:
            raise BadRequest(f"events has {len(events)} entries; at most {api.limits.max_uids} "
                             f"per request", "too_many_events")
        ops = [report_op(e, api.limits, f"events[{i}].") for i, e in enumerate(events)]
        await roster.commit(ops)
        return ok()

    @app.post("/user/onlinestatus")
    async def online_status() -> Response:
        uids = check_uids(await read_json(), "uids", api.limits.max_uids)
        return json_response([{"uid": uid, "device_flag": flag, "online": 1}
                              for uid in uids for flag in presence.device_flags(uid)])

    @app.get("/events")
    async def events() -> Response:
        last = request.headers.get("Last-Event-ID", request.args.get("last_event_id"))
        stream = roster.events.stream(last, roster.wal.acked_lsn)
        response = Response(stream, status=200, content_type="text/event-stream; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        response.timeout = None  # quart's RESPONSE_TIMEOUT would end the stream after 60 s
        return response
