"""``/permission/check`` and ``/permission/check_batch`` (SPEC §5): the read hot path.

The decision itself is ``server.permission.decide``; this module only validates and answers.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from server.app import Api, json_response, read_json
from server.openapi import RouteDoc
from server.permission import REASON_NAMES, SUCCESS, decide
from server.schema import Field, check_one, parse

CHECK = (
    Field("from_uid", "uid", required=True),
    Field("channel_id", "channel_id", required=True),
    Field("channel_type", "channel_type", required=True),
)
CHECK_BATCH = (Field("checks", "checks", required=True, doc="at most 10 000 checks"),)

RESULT = {
    "type": "object", "required": ["allowed", "reason", "reason_name"],
    "properties": {"allowed": {"type": "boolean"},
                   "reason": {"type": "integer", "enum": sorted(REASON_NAMES)},
                   "reason_name": {"type": "string", "enum": sorted(REASON_NAMES.values())}},
}
DOCS = [
    RouteDoc("POST", "/permission/check", "may from_uid send to this channel? (SPEC §5)", CHECK,
             RESULT, (400, 403, 413, 415), tag="permission"),
    RouteDoc("POST", "/permission/check_batch", "many checks in one call, answers in order",
             CHECK_BATCH, {"type": "object", "required": ["results"],
                           "properties": {"results": {"type": "array", "items": RESULT}}},
             (400, 403, 413, 415), tag="permission"),
]

# Answers are a handful of fixed dicts: build them once.
_ANSWERS = {code: {"allowed": code == SUCCESS, "reason": code, "reason_name": name}
            for code, name in REASON_NAMES.items()}


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster
    state = roster.state

    @app.post("/permission/check")
    async def permission_check() -> Response:
        from_uid, channel_id, channel_type = check_one(await read_json())
        return json_response(_ANSWERS[decide(state, from_uid, channel_id, channel_type,
                                             roster.now_ms())])

    @app.post("/permission/check_batch")
    async def permission_check_batch() -> Response:
        checks = parse(CHECK_BATCH, await read_json(), api.limits)["checks"]
        now = roster.now_ms()
        return json_response(
            {"results": [_ANSWERS[decide(state, u, c, t, now)] for u, c, t in checks]}
        )
