"""RongCloud-compatible status subscription routes (docs/compatibility.md, "From RongCloud").

Unlike the WuKongIM routes these take ``application/x-www-form-urlencoded`` bodies and answer
``{"code": int, ...}`` as RongCloud does, and they authenticate by **signature**, never by the
manager token (``server/app.py`` exempts ``SIGNED_PATHS``; the SDKs cannot send the token):

* ``App-Key``, ``Nonce``, ``Timestamp``, ``Signature`` headers (or ``RC-`` prefixed) when
  ``rc_app_key``/``rc_app_secret`` are configured (``server/rcsign.py``); wrong key → 401
  ``{"code":1001}``, bad/stale/replayed signature → 401 ``{"code":1004}``;
* ``rc_rate_limit`` requests per second per route → 429 ``{"code":1008}`` beyond;
* ``X-Request-ID`` (≤ 36 characters) echoed on every answer;
* any bad form input → 400 ``{"code":26001,"msg":...}`` (never a 500).

Where to look: limits are decided by ``Presence.plan_subscribe`` (pure), the writes are the
``ps_sub`` / ``ps_unsub`` ops, and a new subscription's first status event is noted by the engine.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from server import ops
from server.errors import BadRequest, Unavailable
from server.http import SIGNED_PATHS, Api, json_response
from server.nonces import NonceFile
from server.openapi import RouteDoc
from server.presence import STATUS, Span
from server.rcsign import (
    RATE_LIMITED,
    AuthError,
    RateLimiter,
    ReplayCache,
    Verifier,
    request_id,
)
from server.schema import check_uid
from server.startup import unusable

SUCCESS: Final = 200
INVALID: Final = 26001
INTERNAL: Final = 26003
TARGETS_FULL: Final = 26021
SUBSCRIBER_FULL: Final = 26022

MAX_SUB_USERS: Final = 200
EXPIRY_S: Final = (60, 2_592_000)
PAGE_SIZE: Final = (50, 200)
MAX_FORM_FIELDS: Final = 100

SET, QUERY, FOLLOWERS, CHECK_ONLINE = (
    "/user/subscribe/set.json", "/user/subscribe/query.json", "/user/subscribe/followers.json",
    "/user/checkOnline.json",
)
assert frozenset({SET, QUERY, FOLLOWERS, CHECK_ONLINE}) == SIGNED_PATHS

_INT = re.compile(r"-?\d{1,12}")

log = logging.getLogger("roster")

Form = dict[str, str]
Answer = tuple[dict[str, Any], int]


class RcError(Exception):
    """An answer in RongCloud's shape: ``{"code": code, "msg": msg}`` with ``http_status``."""

    def __init__(self, code: int, msg: str, http_status: int) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.http_status = http_status


def invalid(msg: str) -> RcError:
    return RcError(INVALID, msg, 400)


# -- form fields -------------------------------------------------------------------------------


async def read_form() -> Form:
    """The request's form fields (first value wins). Any malformed body is 26001."""
    try:
        if request.mimetype == "multipart/form-data":
            return {k: v for k, v in (await request.form).items()}
        raw = await request.get_data(cache=False, as_text=False)
    except HTTPException as exc:
        if exc.code == 413:
            raise RcError(INVALID, "request body is too large", 413) from None
        raise invalid("request body cannot be read") from None
    assert isinstance(raw, bytes)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise invalid("request body is not a valid application/x-www-form-urlencoded form "
                      f"(UTF-8, at most {MAX_FORM_FIELDS} fields)") from None
    form: Form = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def uid_field(form: Form, name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise invalid(f"{name} is required")
    return _uid(value, name)


def _uid(value: str, name: str) -> str:
    try:
        return check_uid(value, name)
    except BadRequest as exc:
        raise invalid(exc.msg) from None


def int_field(form: Form, name: str, lo: int, hi: int, default: int | None = None) -> int:
    raw = form.get(name, "").strip()
    if not raw:
        if default is None:
            raise invalid(f"{name} is required")
        return default
    if not _INT.fullmatch(raw):
        raise invalid(f"{name} must be an integer, got {raw[:32]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise invalid(f"{name} must be {lo}-{hi}, got {value}")
    return value


def sub_type_field(form: Form) -> int:
    value = int_field(form, "subType", -(10**12), 10**12, default=STATUS)
    if value != STATUS:
        raise invalid(f"subType must be {STATUS} (online status), got {value}")
    return value


def sub_user_ids(form: Form) -> list[str]:
    raw = form.get("subUserIds", "")
    items = [u.strip() for u in raw.split(",")]
    # Checked before de-duplication too, so a huge list is refused before per-item work.
    if len(items) > 10 * MAX_SUB_USERS:
        raise invalid(f"subUserIds has more than {MAX_SUB_USERS} users")
    uids = list(dict.fromkeys(_uid(u, "subUserIds") for u in items if u))
    if not uids:
        raise invalid("subUserIds is required (comma-separated user ids)")
    if len(uids) > MAX_SUB_USERS:
        raise invalid(f"subUserIds has {len(uids)} users; at most {MAX_SUB_USERS} at once")
    return uids


def page_of(items: list[tuple[str, Span]], form: Form) -> tuple[list[tuple[str, Span]],
                                                                 bool, str]:
    """One page of ``items`` (sorted by uid) after ``pageToken``: (page, hasNext, next token)."""
    size = int_field(form, "pageSize", *PAGE_SIZE, default=PAGE_SIZE[1])
    token = form.get("pageToken", "").strip()
    start = 0
    if token:
        token = _uid(token, "pageToken")
        start = bisect.bisect_right([uid for uid, _ in items], token)
    page = items[start : start + size]
    has_next = start + size < len(items)
    return page, has_next, page[-1][0] if has_next and page else ""


# -- routes ------------------------------------------------------------------------------------


def register(app: QuartTrio, api: Api) -> None:
    roster = api.roster
    settings = roster.settings
    presence = roster.state.presence
    limiter = RateLimiter(settings.rc_rate_limit)
    verifier: Verifier | None = None
    nonces: NonceFile | None = None
    if settings.rc_app_key and settings.rc_app_secret:
        # A nonce is remembered 300 s past its timestamp; accepted requests are rate limited,
        # so the cache never needs more than every route's limit for the whole window. The
        # file keeps the window's nonces across a restart (server/nonces.py).
        try:
            nonces, kept = NonceFile.open(settings.data_dir, roster.now_ms(),
                                          fsync_each=settings.fsync == "always")
        except OSError as exc:  # a start-up refusal of one line, like any unusable data dir
            raise unusable(str(settings.data_dir), exc,
                           "cannot write the RongCloud nonce file") from None
        cache = ReplayCache(max(10_000, len(SIGNED_PATHS) * settings.rc_rate_limit * 601),
                            nonces)
        cache.load(kept)
        verifier = Verifier(settings.rc_app_key, settings.rc_app_secret, cache)

        @app.after_serving
        async def close_nonces() -> None:
            assert nonces is not None
            nonces.close()
    elif settings.token or not settings.is_loopback():
        # They never take the manager token, so without a key they are open to anyone.
        log.warning("the RongCloud routes (/user/subscribe/*.json, /user/checkOnline.json) "
                    "accept unsigned requests: set --rc-app-key and --rc-app-secret")

    def signed(path: str, handler: Callable[[Form], Awaitable[Answer]]) -> None:
        async def view() -> Response:
            try:
                nonce = None
                if verifier is not None:
                    nonce = verifier.check(request.headers, roster.now_ms())
                if not limiter.allow(path, trio.current_time()):
                    raise RcError(RATE_LIMITED, f"more than {settings.rc_rate_limit} requests "
                                  f"per second on {path}", 429)
                if verifier is not None and nonce is not None:
                    now = roster.now_ms()
                    verifier.accept(request.headers, nonce, now)
                    if nonces is not None:
                        cache = verifier.cache
                        await nonces.settle(lambda: cache.live(now))
                body, status = await handler(await read_form())
            except AuthError as exc:
                body, status = {"code": exc.code, "msg": exc.msg}, 401
            except RcError as exc:
                body, status = {"code": exc.code, "msg": exc.msg}, exc.http_status
            except Unavailable as exc:
                body, status = {"code": INTERNAL, "msg": exc.msg}, 503
            response = json_response(body, status)
            rid = request_id(request.headers)
            if rid is not None:
                response.headers["X-Request-ID"] = rid
            return response

        app.add_url_rule(path, "rc" + path.replace("/", "_").replace(".", "_"), view,
                         methods=["POST"])

    async def subscribe_set(form: Form) -> Answer:
        user = uid_field(form, "userId")
        targets = sub_user_ids(form)
        op_type = int_field(form, "opType", 0, 1)
        sub_type = sub_type_field(form)
        if op_type == 1:
            held = [t for t in targets if presence.holds(user, t, sub_type)]
            if held:
                await roster.commit([ops.ps_unsub(user, sub_type, held)])
            return {"code": SUCCESS}, 200
        expiry = int_field(form, "expiry", *EXPIRY_S)
        now = roster.now_ms()
        plan = presence.plan_subscribe(user, targets, sub_type, now, settings.sub_max_per_user,
                                       settings.sub_max_followers)
        if plan.over_limit:
            return {"code": SUBSCRIBER_FULL,
                    "msg": f"{user} would hold more than {settings.sub_max_per_user} "
                           f"subscriptions"}, 403
        if plan.accepted:
            # Same instant as the plan: what was live for the limits is live for the op.
            await roster.commit([ops.ps_sub(user, sub_type, expiry * 1000, plan.accepted)],
                                now_ms=now)
        if plan.refused:
            return {"code": TARGETS_FULL, "subUserIds": plan.refused}, 200
        return {"code": SUCCESS}, 200

    def online(uid: str) -> str:
        return "1" if presence.is_online(uid) else "0"

    async def subscribe_query(form: Form) -> Answer:
        user = uid_field(form, "userId")
        sub_type = sub_type_field(form)
        items = presence.subscriptions_of(user, sub_type, roster.now_ms())
        page, has_next, token = page_of(items, form)
        return {"code": SUCCESS, "hasNext": has_next, "pageToken": token, "subscriptions": [
            {"subUserIds": [uid], "subType": sub_type, "subTime": sat,
             "expiry": (exp - sat) // 1000, "expireAt": exp, "online": online(uid)}
            for uid, (sat, exp) in page]}, 200

    async def subscribe_followers(form: Form) -> Answer:
        user = uid_field(form, "userId")
        sub_type = sub_type_field(form)
        items = presence.followers_of(user, sub_type, roster.now_ms())
        page, has_next, token = page_of(items, form)
        return {"code": SUCCESS, "hasNext": has_next, "pageToken": token, "followers": [
            {"userId": uid, "subType": sub_type, "subTime": sat,
             "expiry": (exp - sat) // 1000, "expireAt": exp, "online": online(uid)}
            for uid, (sat, exp) in page]}, 200

    async def check_online(form: Form) -> Answer:
        return {"code": SUCCESS, "status": online(uid_field(form, "userId"))}, 200

    signed(SET, subscribe_set)
    signed(QUERY, subscribe_query)
    signed(FOLLOWERS, subscribe_followers)
    signed(CHECK_ONLINE, check_online)


# -- documentation -----------------------------------------------------------------------------

_FORM = "application/x-www-form-urlencoded"
_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[^@#&\s]+$"}
_SUB_TYPE = {"type": "integer", "enum": [STATUS], "description": "1: online status (default)"}
_PAGING = {"pageToken": {"type": "string", "description": "pageToken of the previous page"},
           "pageSize": {"type": "integer", "minimum": PAGE_SIZE[0], "maximum": PAGE_SIZE[1],
                        "description": "default 200"}}
_CODE = {"type": "integer"}
#: every refusal: 26001 (400), 1001/1004 (401), 26022 (403), 26001 (413), 1008 (429), 26003 (503)
RC_ERROR = {"type": "object", "required": ["code"],
            "properties": {"code": _CODE, "msg": {"type": "string"}}}
_ONLINE = {"type": "string", "enum": ["0", "1"]}
_ITEM_TIMES = {"subType": {"type": "integer"}, "subTime": {"type": "integer"},
               "expiry": {"type": "integer"}, "expireAt": {"type": "integer"}, "online": _ONLINE}


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def _paged(key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["code", "hasNext", "pageToken", key],
            "properties": {"code": _CODE, "hasNext": {"type": "boolean"},
                           "pageToken": {"type": "string"},
                           key: {"type": "array", "items": item}}}


def _doc(path: str, summary: str, body: dict[str, Any], response: dict[str, Any],
         errors: tuple[int, ...] = (400, 401, 413, 429)) -> RouteDoc:
    return RouteDoc("POST", path, summary, None, response, errors, body_schema=body,
                    tag="rongcloud", content_type=_FORM, error_schema=RC_ERROR)


DOCS = [
    _doc(SET, "subscribe to (opType 0) or cancel (opType 1) users' online status; 26021 lists "
         "targets at their follower limit (the others are subscribed)",
         _form({"userId": _ID, "subUserIds": {"type": "string",
                                              "description": "1-200 comma-separated user ids"},
                "opType": {"type": "integer", "enum": [0, 1]},
                "expiry": {"type": "integer", "minimum": EXPIRY_S[0], "maximum": EXPIRY_S[1],
                           "description": "seconds; required for opType 0"},
                "subType": _SUB_TYPE}, ["userId", "subUserIds", "opType"]),
         {"type": "object", "required": ["code"],
          "properties": {"code": _CODE, "subUserIds": {"type": "array", "items": _ID}}},
         (400, 401, 403, 413, 429, 503)),
    _doc(QUERY, "live subscriptions of userId, paged", _form(
        {"userId": _ID, "subType": _SUB_TYPE, **_PAGING}, ["userId"]),
        _paged("subscriptions", {"type": "object", "properties": {
            "subUserIds": {"type": "array", "items": _ID}, **_ITEM_TIMES}})),
    _doc(FOLLOWERS, "live subscribers of userId, paged (Roster extension)", _form(
        {"userId": _ID, "subType": _SUB_TYPE, **_PAGING}, ["userId"]),
        _paged("followers", {"type": "object", "properties": {"userId": _ID, **_ITEM_TIMES}})),
    _doc(CHECK_ONLINE, "is userId online on any device", _form({"userId": _ID}, ["userId"]),
         {"type": "object", "required": ["code", "status"],
          "properties": {"code": _CODE, "status": _ONLINE}}),
]
