"""The channel API without a protocol: arguments in, validated, typed ops, committed, a value out.

HTTP routes (``server/routes/``), the ASGI fast path (``server/fastpath.py``) and the Redis-protocol
lane (``server/resp.py``) are thin adapters over this module: they decode their wire format into a
mapping of argument name → value, call a command, and encode what it returns. Validation (one set
of rules and error codes, ``server/schema.py``), the existence rules of channels, op building
(``server/ops.py``) and the commit all happen here, once.

Design notes
------------
* **A command is a table row plus a function.** ``Command.fields`` is the argument table (the
  same ``Field`` tuples produce the OpenAPI document and tell the RESP adapter which arguments are
  integers); ``Command.run`` gets the validated arguments. ``Command.__call__`` does both.
* **Writes return a ``Ticket``, not a promise kept.** A write is checked, logged and applied
  synchronously (``Roster.submit``) and the adapter awaits ``Roster.settle(ticket)`` before it
  acknowledges. Splitting the two lets the RESP lane submit every write of a pipelined chunk in
  order and wait for one group commit; HTTP simply settles at once. A write that changes nothing
  (deleting a missing channel) returns ``None``: there is nothing to wait for.
* **Reads return plain values** (dicts, lists, ints, ``None`` for "no such channel" where the
  protocols differ: HTTP answers 404, RESP a nil).
* **Time** is read once per command (``roster.now_ms()``), so every check in one command (does the
  temporary channel still exist?) and its op agree on the instant.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from server import ops
from server.errors import BadRequest, channel_not_found
from server.ops import FLAG_NAMES, Change, ListName
from server.permission import decide
from server.schema import Field, Limits, check_one, check_uids, parse
from server.service import Roster, Ticket
from server.state import PERSON, TEMP, Channel

Args = Mapping[str, Any]

# -- argument tables -----------------------------------------------------------------------------

CHANNEL: Final = (
    Field("channel_id", "channel_id", required=True),
    Field("channel_type", "channel_type", required=True,
          doc="1 person, 2 group, 8 temporary; any other 3-255 behaves like a group"),
)
FLAGS: Final = tuple(Field(name, "flag", doc="0 or 1; omitted flags keep their value")
                     for name in FLAG_NAMES)
CREATE: Final = (*CHANNEL, *FLAGS,
                 Field("subscribers", "uids", doc="with reset=1 required (may be [])"),
                 Field("reset", "flag", default=0, doc="1: replace the subscriber set"))
INFO: Final = (*CHANNEL, *FLAGS)
SUBSCRIBER_ADD: Final = (
    Field("channel_id", "channel_id", required=True),
    Field("channel_type", "channel_type", zero_default=True, doc="missing or 0 means 2 (group)"),
    Field("subscribers", "uids", doc="non-empty, or with reset=1 present (may be [])"),
    Field("reset", "flag", default=0),
    Field("temp_subscriber", "flag", default=0),
)
SUBSCRIBER_REMOVE: Final = (*CHANNEL, Field("subscribers", "uids", default=[]))
LIST_CHANGE: Final = (*CHANNEL, Field("uids", "uids", default=[]))
#: a replace must name the new list, even if empty: a typo such as "uid" never wipes a list
LIST_SET: Final = (*CHANNEL, Field("uids", "uids", required=True, doc="the new list; [] clears"))
SUBSCRIBERS_PAGE: Final = (
    *CHANNEL,
    Field("limit", "int", default=10_000, minimum=1, maximum=10_000),
    Field("cursor", "uid", doc="return uids sorted after this one (next_cursor of the last page)"),
)
TMP_SET: Final = (
    Field("channel_id", "channel_id", required=True),
    Field("uids", "uids", default=[]),
    Field("ttl", "int", minimum=60, maximum=604_800,
          doc="seconds until the channel expires; default tmpchannel_ttl (1200)"),
)
UIDS: Final = (Field("uids", "uids", required=True),)
CHECK: Final = (
    Field("from_uid", "uid", required=True),
    Field("channel_id", "channel_id", required=True),
    Field("channel_type", "channel_type", required=True),
)
CHECK_BATCH: Final = (Field("checks", "checks", required=True, doc="at most 10 000 checks"),)
REPORT: Final = (
    Field("uid", "uid", required=True),
    Field("device_flag", "int", required=True, minimum=0, maximum=2,
          doc="0 app, 1 web, 2 pc (WuKongIM's device flags)"),
    Field("online", "flag", required=True, doc="1 connected, 0 disconnected"),
)
#: optional text of a presence report, passed on to the webhook (RongCloud's sessionId, os,
#: clientIp), with its longest accepted length
REPORT_TEXT: Final = {"session_id": 128, "os": 32, "client_ip": 64}
NO_ARGS: Final[tuple[Field, ...]] = ()


# -- the command object --------------------------------------------------------------------------


Validate = Callable[[Sequence[Field], object, Limits], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    fields: tuple[Field, ...]
    #: True: ``run`` returns a ``Ticket`` (or None) to settle before acknowledging
    write: bool
    run: Callable[[Context, dict[str, Any]], Any]
    #: arguments (a mapping of name -> decoded value) -> validated arguments, or ``BadRequest``
    validate: Validate = parse

    def __call__(self, ctx: Context, args: object) -> Any:
        return self.run(ctx, self.validate(self.fields, args, ctx.limits))


#: every command by name (the RESP command table and tests walk it)
COMMANDS: dict[str, Command] = {}


def command(name: str, fields: tuple[Field, ...], *, write: bool, validate: Validate = parse,
            ) -> Callable[[Callable[[Context, dict[str, Any]], Any]], Command]:
    def register(run: Callable[[Context, dict[str, Any]], Any]) -> Command:
        cmd = COMMANDS[name] = Command(name, fields, write, run, validate)
        return cmd

    return register


class Context:
    """What every command needs: the service, the request limits, and the existence rules."""

    def __init__(self, roster: Roster, limits: Limits) -> None:
        self.roster = roster
        self.state = roster.state
        self.limits = limits

    def existing(self, cid: str, ctype: int, now: int) -> Channel | None:
        """The channel a list command may touch; ``channel_not_found`` for a missing group-like
        channel (person channels exist implicitly: None means "no record yet")."""
        ch = self.state.get(cid, ctype, now)
        if ch is None and ctype != PERSON:
            raise channel_not_found(cid, ctype)
        return ch

    def refuse_temp_create(self, cid: str, ctype: int, now: int) -> None:
        if ctype == TEMP and self.state.get(cid, ctype, now) is None:
            raise BadRequest(
                "temporary channels (type 8) are created only through /tmpchannel/subscriber_set",
                "temp_channel_unsupported",
            )

    def submit(self, batch: Sequence[ops.Op], now: int | None = None) -> Ticket:
        return self.roster.submit(batch, now)


def refuse_person(ctype: int, what: str) -> None:
    if ctype == PERSON:
        raise BadRequest(
            f"person channels (type 1) have no {what}; use the whitelist/blacklist of the "
            f"owner's uid",
            "person_channel_unsupported",
        )


def _replacement(a: dict[str, Any], name: str) -> list[str]:
    """The list a ``reset=1`` replaces with: it must be present (``[]`` empties)."""
    if a[name] is None:
        raise BadRequest(f"{name} is required with reset=1 ([] removes every subscriber)",
                         "field_missing")
    return a[name]  # type: ignore[no-any-return]


def _flags_given(a: dict[str, Any]) -> dict[str, int]:
    # Flags present are set; flags left out keep their value (WuKongIM zeroes them: a known trap).
    return {name: a[name] for name in FLAG_NAMES if a[name] is not None}


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


# -- channels --------------------------------------------------------------------------------


@command("channel_put", CREATE, write=True)
def channel_put(ctx: Context, a: dict[str, Any]) -> Ticket:
    """Create or update a channel; ``reset=1`` replaces its subscribers (``POST /channel``)."""
    cid, ctype, now = a["channel_id"], a["channel_type"], ctx.roster.now_ms()
    if ctype == PERSON and (a["subscribers"] or a["reset"]):
        refuse_person(ctype, "subscribers")
    ctx.refuse_temp_create(cid, ctype, now)
    batch = [ops.ch_put(cid, ctype, _flags_given(a))]
    if a["reset"]:
        batch.append(ops.list_change("subscribers", "set", cid, ctype,
                                     _replacement(a, "subscribers")))
    elif a["subscribers"]:
        batch.append(ops.list_change("subscribers", "add", cid, ctype, a["subscribers"]))
    return ctx.submit(batch, now)


@command("channel_set", INFO, write=True)
def channel_set(ctx: Context, a: dict[str, Any]) -> Ticket:
    """Create or update a channel's flags only."""
    cid, ctype, now = a["channel_id"], a["channel_type"], ctx.roster.now_ms()
    ctx.refuse_temp_create(cid, ctype, now)
    return ctx.submit([ops.ch_put(cid, ctype, _flags_given(a))], now)


@command("channel_get", CHANNEL, write=False)
def channel_get(ctx: Context, a: dict[str, Any]) -> dict[str, Any] | None:
    """Flags, list sizes and timestamps; None if the channel does not exist."""
    cid, ctype = a["channel_id"], a["channel_type"]
    ch = ctx.state.get(cid, ctype, ctx.roster.now_ms())
    return None if ch is None else info_of(cid, ctype, ch)


@command("channel_delete", CHANNEL, write=True)
def channel_delete(ctx: Context, a: dict[str, Any]) -> Ticket | None:
    """Remove a channel and its lists; a missing channel is a no-op, not an error."""
    cid, ctype = a["channel_id"], a["channel_type"]
    if (cid, ctype) not in ctx.state.channels:
        return None
    return ctx.submit([ops.ch_del(cid, ctype)])


# -- subscribers -----------------------------------------------------------------------------


@command("subscriber_add", SUBSCRIBER_ADD, write=True)
def subscriber_add(ctx: Context, a: dict[str, Any]) -> Ticket:
    """Add subscribers (``reset=1``: replace them); creates the channel."""
    cid, ctype, now = a["channel_id"], a["channel_type"], ctx.roster.now_ms()
    if a["temp_subscriber"]:
        raise BadRequest("temp_subscriber is not supported here; use "
                         "/tmpchannel/subscriber_set", "temp_subscriber_unsupported")
    refuse_person(ctype, "subscribers")
    if a["reset"]:
        change: Change = "set"
        uids = _replacement(a, "subscribers")
    elif a["subscribers"]:
        change, uids = "add", a["subscribers"]
    else:
        raise BadRequest("subscribers cannot be empty (unless reset=1)", "uids_empty")
    ctx.refuse_temp_create(cid, ctype, now)
    batch = []
    if ctx.state.get(cid, ctype, now) is None:
        batch.append(ops.ch_put(cid, ctype, {}))
    batch.append(ops.list_change("subscribers", change, cid, ctype, uids))
    return ctx.submit(batch, now)


@command("subscriber_remove", SUBSCRIBER_REMOVE, write=True)
def subscriber_remove(ctx: Context, a: dict[str, Any]) -> Ticket:
    cid, ctype, now = a["channel_id"], a["channel_type"], ctx.roster.now_ms()
    refuse_person(ctype, "subscribers")
    if not a["subscribers"]:
        raise BadRequest("subscribers cannot be empty", "uids_empty")
    ctx.existing(cid, ctype, now)
    return ctx.submit([ops.list_change("subscribers", "rm", cid, ctype, a["subscribers"])], now)


@command("subscriber_remove_all", CHANNEL, write=True)
def subscriber_remove_all(ctx: Context, a: dict[str, Any]) -> Ticket:
    cid, ctype, now = a["channel_id"], a["channel_type"], ctx.roster.now_ms()
    refuse_person(ctype, "subscribers")
    ctx.existing(cid, ctype, now)
    return ctx.submit([ops.list_change("subscribers", "set", cid, ctype, [])], now)


@command("subscribers", SUBSCRIBERS_PAGE, write=False)
def subscribers(ctx: Context, a: dict[str, Any]) -> tuple[list[str], str | None]:
    """One page of subscribers sorted by uid, and the cursor of the next page (None: last)."""
    cid, ctype = a["channel_id"], a["channel_type"]
    refuse_person(ctype, "subscribers")
    ch = ctx.existing(cid, ctype, ctx.roster.now_ms())
    assert ch is not None  # not a person channel
    uids = sorted(ch.subscribers)
    if a["cursor"] is not None:
        uids = uids[bisect_right(uids, a["cursor"]):]
    page = uids[: a["limit"]]
    return page, page[-1] if len(uids) > len(page) else None


# -- whitelist and blacklist (the two lists behave the same) -------------------------------------


def _list_commands(which: ListName, prefix: str) -> None:
    def change(how: Change, need_uids: bool) -> Callable[[Context, dict[str, Any]], Ticket]:
        def run(ctx: Context, a: dict[str, Any]) -> Ticket:
            cid, ctype, uids, now = (a["channel_id"], a["channel_type"], a["uids"],
                                     ctx.roster.now_ms())
            if need_uids and not uids:
                raise BadRequest("uids cannot be empty", "uids_empty")
            ctx.existing(cid, ctype, now)
            return ctx.submit([ops.list_change(which, how, cid, ctype, uids)], now)

        return run

    def clear(ctx: Context, a: dict[str, Any]) -> Ticket:
        cid, ctype, now = a["channel_id"], a["channel_type"], ctx.roster.now_ms()
        ctx.existing(cid, ctype, now)
        return ctx.submit([ops.list_change(which, "set", cid, ctype, [])], now)

    def members(ctx: Context, a: dict[str, Any]) -> list[str]:
        ch = ctx.existing(a["channel_id"], a["channel_type"], ctx.roster.now_ms())
        return sorted(getattr(ch, which)) if ch is not None else []

    command(f"{prefix}_add", LIST_CHANGE, write=True)(change("add", need_uids=True))
    command(f"{prefix}_remove", LIST_CHANGE, write=True)(change("rm", need_uids=True))
    # One atomic step (WuKongIM clears, then adds); empty uids clears and ends whitelist mode.
    command(f"{prefix}_set", LIST_SET, write=True)(change("set", need_uids=False))
    command(f"{prefix}_remove_all", CHANNEL, write=True)(clear)
    command(prefix, CHANNEL, write=False)(members)


_list_commands("whitelist", "whitelist")
_list_commands("blacklist", "blacklist")


# -- temporary channels and system accounts ---------------------------------------------------


@command("tmp_subscriber_set", TMP_SET, write=True)
def tmp_subscriber_set(ctx: Context, a: dict[str, Any]) -> Ticket:
    """Replace the subscribers of temporary channel ``(channel_id, 8)``, creating it; it expires
    ``ttl`` seconds (default ``tmpchannel_ttl``) after this call."""
    if not a["uids"]:
        raise BadRequest("uids cannot be empty", "uids_empty")
    roster = ctx.roster
    ttl = a["ttl"] if a["ttl"] is not None else roster.settings.tmpchannel_ttl
    now = roster.now_ms()
    return ctx.submit([ops.tmp_set(a["channel_id"], a["uids"], now + ttl * 1000)], now)


def _system_change(add: bool) -> Callable[[Context, dict[str, Any]], Ticket]:
    def run(ctx: Context, a: dict[str, Any]) -> Ticket:
        if not a["uids"]:
            raise BadRequest("uids cannot be empty", "uids_empty")
        return ctx.submit([ops.sys_change(add, a["uids"])])

    return run


command("system_add", UIDS, write=True)(_system_change(add=True))
command("system_remove", UIDS, write=True)(_system_change(add=False))


@command("system_list", NO_ARGS, write=False)
def system_list(ctx: Context, a: dict[str, Any]) -> list[str]:
    return sorted(ctx.state.system_uids)


# -- the permission decision -------------------------------------------------------------------


def _one_check(fields: Sequence[Field], data: object, limits: Limits) -> dict[str, Any]:
    # ``check_one`` is also what validates each item of a batch: one rule set for both.
    from_uid, channel_id, channel_type = check_one(data)
    return {"from_uid": from_uid, "channel_id": channel_id, "channel_type": channel_type}


@command("check", CHECK, write=False, validate=_one_check)
def check(ctx: Context, a: dict[str, Any]) -> int:
    """The reason code of one send attempt (1 = allowed): ``server.permission.decide``."""
    return decide(ctx.state, a["from_uid"], a["channel_id"], a["channel_type"],
                  ctx.roster.now_ms())


@command("check_batch", CHECK_BATCH, write=False)
def check_batch(ctx: Context, a: dict[str, Any]) -> list[int]:
    return decide_all(ctx, a["checks"])


def decide_all(ctx: Context, checks: Sequence[tuple[str, str, int]]) -> list[int]:
    """Reason codes for already validated ``(from_uid, channel_id, channel_type)`` triples, all
    at one instant (``schema.check_many`` / ``schema.check_flat`` validate them)."""
    state, now = ctx.state, ctx.roster.now_ms()
    return [decide(state, u, c, t, now) for u, c, t in checks]


# -- presence ----------------------------------------------------------------------------------


def report_op(data: object, limits: Limits, where: str = "") -> ops.Op:
    """A validated presence report → its ``pr_set`` op (errors name ``where`` first, e.g.
    ``events[3].``)."""
    try:
        b = parse(REPORT, data, limits)
    except BadRequest as exc:
        raise BadRequest(f"{where}{exc.msg}", exc.code) from None
    assert isinstance(data, Mapping)  # parse refused anything else
    texts = []
    for name, size in REPORT_TEXT.items():
        value = data.get(name)
        if value is None:
            value = ""
        elif not isinstance(value, str):
            raise BadRequest(f"{where}{name} must be a string", "field_type")
        elif len(value) > size:
            raise BadRequest(f"{where}{name} is longer than {size} characters",
                             "value_out_of_range")
        texts.append(value)
    return ops.pr_set(b["uid"], b["device_flag"], b["online"], *texts)


def presence_report(ctx: Context, data: object) -> Ticket:
    """One connect/disconnect report from a gateway (``POST /user/presence``,
    ``PRESENCE.SET``)."""
    return ctx.submit([report_op(data, ctx.limits)])


def presence_batch(ctx: Context, data: object) -> Ticket:
    """Several reports as one atomic record (``POST /user/presence_batch``)."""
    if not isinstance(data, Mapping):
        raise BadRequest("request body must be a JSON object", "invalid_body")
    events = data.get("events")
    if not isinstance(events, list):
        raise BadRequest("events is required: an array of reports",
                         "field_missing" if events is None else "field_type")
    if not events:
        raise BadRequest("events cannot be empty", "events_empty")
    limit = ctx.limits.max_uids
    if len(events) > limit:
        raise BadRequest(f"events has {len(events)} entries; at most {limit} per request",
                         "too_many_events")
    return ctx.submit([report_op(e, ctx.limits, f"events[{i}].") for i, e in enumerate(events)])


def online_devices(ctx: Context, uids: object, name: str = "uids") -> list[tuple[str,
                                                                                tuple[int, ...]]]:
    """Each (de-duplicated) uid with its online device flags, sorted (empty: offline)."""
    presence = ctx.state.presence
    return [(uid, presence.device_flags(uid))
            for uid in check_uids(uids, name, ctx.limits.max_uids)]
