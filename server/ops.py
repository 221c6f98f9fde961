"""The ops: every kind of mutation the state engine knows, as named constants and typed builders.

An op is a small tuple, ``(name, *args)``; a batch of them is one write-ahead-log record
(``Roster.commit``), applied by ``State.apply`` in the same synchronous step. Ops are what the log
holds forever, so two rules guard them:

* **Built only here.** The command layer (``server/commands.py``) and the service never assemble
  op tuples by hand; they call the builders below, whose signatures say what each op carries.
* **Checked before the log.** ``check_ops`` runs on every batch before ``wal.submit``: a builder
  bug (a ``None`` uid, a flag of 2, a channel type of 0) is refused as a ``MalformedOpError`` (a
  500: a bug, never the caller's fault) instead of being written to the log and replayed on every
  start-up. The check is a table of argument kinds per op (``SHAPES``), like h11's transition
  tables: one row per op, read by one small function.

The names are the log's vocabulary: renaming one breaks replay of existing logs.

    op            args                                             effect (blind writes)
    ch_put        channel_id, channel_type, {flag: 0|1}            create or set given flags
    ch_del        channel_id, channel_type                         remove channel and its lists
    sub_add/rm/set  channel_id, channel_type, [uid]                subscribers: add/discard/replace
    wl_add/rm/set   channel_id, channel_type, [uid]                whitelist: add/discard/replace
    bl_add/rm/set   channel_id, channel_type, [uid]                blacklist: add/discard/replace
    tmp_set       channel_id, [uid], expires_at_ms                 temporary channel (type 8)
    tmp_expire    channel_id                                       purge if expired at op time
    sys_add/rm    [uid]                                            system accounts
    ps_sub        subscriber, sub_type, expiry_ms, [target]        status subscriptions
    ps_unsub      subscriber, sub_type, [target]
    ps_expire     [[subscriber, target, sub_type], ...]            purge if expired at op time
    pr_set        uid, device_flag, online, session_id, os, ip     one device's presence
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

Op = tuple[Any, ...]

CH_PUT: Final = "ch_put"
CH_DEL: Final = "ch_del"
SUB_ADD: Final = "sub_add"
SUB_RM: Final = "sub_rm"
SUB_SET: Final = "sub_set"
WL_ADD: Final = "wl_add"
WL_RM: Final = "wl_rm"
WL_SET: Final = "wl_set"
BL_ADD: Final = "bl_add"
BL_RM: Final = "bl_rm"
BL_SET: Final = "bl_set"
TMP_SET: Final = "tmp_set"
TMP_EXPIRE: Final = "tmp_expire"
SYS_ADD: Final = "sys_add"
SYS_RM: Final = "sys_rm"
PS_SUB: Final = "ps_sub"
PS_UNSUB: Final = "ps_unsub"
PS_EXPIRE: Final = "ps_expire"
PR_SET: Final = "pr_set"

FLAG_NAMES: Final = ("ban", "disband", "send_ban", "allow_stranger", "large")

#: the three member lists of a channel, by the name the state uses for them
ListName = Literal["subscribers", "whitelist", "blacklist"]
Change = Literal["add", "rm", "set"]

LIST_OPS: Final[dict[tuple[ListName, Change], str]] = {
    ("subscribers", "add"): SUB_ADD, ("subscribers", "rm"): SUB_RM,
    ("subscribers", "set"): SUB_SET,
    ("whitelist", "add"): WL_ADD, ("whitelist", "rm"): WL_RM, ("whitelist", "set"): WL_SET,
    ("blacklist", "add"): BL_ADD, ("blacklist", "rm"): BL_RM, ("blacklist", "set"): BL_SET,
}


class MalformedOpError(ValueError):
    """An op that does not match its row in ``SHAPES``: a bug in the code that built it."""


# -- builders ----------------------------------------------------------------------------------


def ch_put(channel_id: str, channel_type: int, flags: Mapping[str, int]) -> Op:
    return (CH_PUT, channel_id, channel_type, dict(flags))


def ch_del(channel_id: str, channel_type: int) -> Op:
    return (CH_DEL, channel_id, channel_type)


def list_change(which: ListName, change: Change, channel_id: str, channel_type: int,
                uids: Sequence[str]) -> Op:
    return (LIST_OPS[which, change], channel_id, channel_type, list(uids))


def tmp_set(channel_id: str, uids: Sequence[str], expires_at_ms: int) -> Op:
    return (TMP_SET, channel_id, list(uids), expires_at_ms)


def tmp_expire(channel_id: str) -> Op:
    return (TMP_EXPIRE, channel_id)


def sys_change(add: bool, uids: Sequence[str]) -> Op:
    return (SYS_ADD if add else SYS_RM, list(uids))


def ps_sub(subscriber: str, sub_type: int, expiry_ms: int, targets: Sequence[str]) -> Op:
    return (PS_SUB, subscriber, sub_type, expiry_ms, list(targets))


def ps_unsub(subscriber: str, sub_type: int, targets: Sequence[str]) -> Op:
    return (PS_UNSUB, subscriber, sub_type, list(targets))


def ps_expire(entries: Iterable[tuple[str, str, int]]) -> Op:
    return (PS_EXPIRE, [list(e) for e in entries])


def pr_set(uid: str, device_flag: int, online: int, session_id: str = "", os: str = "",
           client_ip: str = "") -> Op:
    return (PR_SET, uid, device_flag, online, session_id, os, client_ip)


# -- the check -------------------------------------------------------------------------------


def _id(v: object) -> bool:
    return type(v) is str and 0 < len(v) <= 64


def _ctype(v: object) -> bool:
    return type(v) is int and 1 <= v <= 255


def _int(v: object) -> bool:
    return type(v) is int


def _text(v: object) -> bool:
    return type(v) is str


def _bit(v: object) -> bool:
    return v == 0 or v == 1


def _uids(v: object) -> bool:
    return type(v) is list and all(type(u) is str and u for u in v)


def _flags(v: object) -> bool:
    return type(v) is dict and all(k in FLAG_NAMES and (x == 0 or x == 1) and type(x) is int
                                   for k, x in v.items())


def _entries(v: object) -> bool:
    return type(v) is list and all(
        type(e) is list and len(e) == 3 and _id(e[0]) and _id(e[1]) and _int(e[2]) for e in v)


_LIST_ROW: Final = (_id, _ctype, _uids)

#: op name -> one predicate per argument
SHAPES: Final[dict[str, tuple[Callable[[object], bool], ...]]] = {
    CH_PUT: (_id, _ctype, _flags),
    CH_DEL: (_id, _ctype),
    **{name: _LIST_ROW for name in LIST_OPS.values()},
    TMP_SET: (_id, _uids, _int),
    TMP_EXPIRE: (_id,),
    SYS_ADD: (_uids,),
    SYS_RM: (_uids,),
    PS_SUB: (_id, _int, _int, _uids),
    PS_UNSUB: (_id, _int, _uids),
    PS_EXPIRE: (_entries,),
    PR_SET: (_id, _int, _bit, _text, _text, _text),
}


def check_op(op: Sequence[Any]) -> None:
    """Raise ``MalformedOpError`` unless ``op`` matches its row in ``SHAPES``."""
    row = SHAPES.get(op[0]) if op else None
    if row is None:
        raise MalformedOpError(f"unknown op {op[0] if op else op!r}")
    if len(op) != len(row) + 1:
        raise MalformedOpError(f"op {op[0]} takes {len(row)} arguments, got {len(op) - 1}")
    for i, (ok, value) in enumerate(zip(row, op[1:], strict=True)):
        if not ok(value):
            raise MalformedOpError(f"op {op[0]}: argument {i} is invalid: {value!r:.80}")


def check_ops(ops: Sequence[Sequence[Any]]) -> None:
    if not ops:
        raise MalformedOpError("a batch needs at least one op")
    for op in ops:
        check_op(op)
