"""Request schemas: one declarative table per route, and the validator that reads it.

Each route declares its body (or query) as a tuple of ``Field``s. ``parse`` checks a decoded JSON
object against it and returns plain values, or raises ``BadRequest`` naming the field and a stable
code. The same tables describe the API (``describe`` → JSON Schema fragments), so documentation and
behaviour come from one source.

Why not pydantic/quart-schema: the error *codes* and the order of the checks are part of the
WuKongIM-compatible contract (``channel_id_empty`` before ``channel_id_special_char`` before
``channel_id_too_long``; a 65-char id is a 400 with its own code), and this is the request path of
every call, so it stays a few dict lookups and type checks.
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from server.errors import BadRequest

log = logging.getLogger("roster")

MAX_ID_LEN: Final = 64
# WuKongIM's separators plus anything that would make an id ambiguous in logs or URLs.
# Lone surrogates (JSON allows "\ud800") are not text: they cannot be encoded to UTF-8 for the log.
_BAD_ID_CHARS: Final = re.compile(r"[@#&\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _bad_id(value: str) -> bool:
    """True if ``value`` holds a separator, whitespace, a control character, a lone surrogate or
    (outside ASCII) an invisible format character (Unicode category Cf: zero-width space, BOM,
    bidirectional marks, ...), which would make two ids that look the same differ."""
    if _BAD_ID_CHARS.search(value):
        return True
    return not value.isascii() and any(unicodedata.category(c) == "Cf" for c in value)


Kind = Literal["channel_id", "channel_type", "flag", "uid", "uids", "int", "checks"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    required: bool = False
    #: value used when the field is absent (or, for ``channel_type`` with ``zero_default``, 0)
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    #: channel_type only: WuKongIM treats a missing or 0 type as 2 (group) on this route
    zero_default: bool = False
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Limits:
    max_uids: int = 10_000
    max_checks: int = 10_000


def _type_name(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


# Ids already seen valid, raw text -> trimmed interned form. Channel ids and uids follow the same
# rules (only their error codes differ), so one cache serves both; it makes the id checks of a
# 10 000-entry check_batch dict lookups instead of regex scans. Bounded: cleared when full.
_VALID_IDS: dict[str, str] = {}
_VALID_IDS_MAX: Final = 100_000


def _remember(raw: str, clean: str) -> str:
    if len(_VALID_IDS) >= _VALID_IDS_MAX:
        _VALID_IDS.clear()
    _VALID_IDS[raw] = clean
    return clean


def check_channel_id(value: object, name: str = "channel_id") -> str:
    if type(value) is str and (hit := _VALID_IDS.get(value)) is not None:
        return hit
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, got {_type_name(value)}", "field_type")
    raw, value = value, value.strip()
    if not value:
        raise BadRequest(f"{name} cannot be empty", "channel_id_empty")
    if _bad_id(value):
        # The sentence is WuKongIM's (its /tmpchannel/subscriber_set documentation): @ # &,
        # whitespace and control characters.
        what = "channel ID" if name == "channel_id" else name
        raise BadRequest(
            f"{what} cannot contain special characters",
            "channel_id_special_char",
        )
    if len(value) > MAX_ID_LEN:
        raise BadRequest(
            f"{name} cannot be longer than {MAX_ID_LEN} characters (got {len(value)})",
            "channel_id_too_long",
        )
    return _remember(raw, sys.intern(value))


def check_uid(value: object, name: str) -> str:
    if type(value) is str and (hit := _VALID_IDS.get(value)) is not None:
        return hit
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, got {_type_name(value)}", "uid_invalid")
    uid = value.strip()
    if not uid or len(uid) > MAX_ID_LEN or _bad_id(uid):
        raise BadRequest(
            f"{name} is not a valid uid: 1-{MAX_ID_LEN} characters, no @ # & whitespace or "
            f"control characters",
            "uid_invalid",
        )
    return _remember(value, sys.intern(uid))


def check_uids(value: object, name: str, max_uids: int) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(f"{name} must be an array of strings, got {_type_name(value)}",
                         "field_type")
    if len(value) > max_uids:
        # Counted before de-duplication so a huge body is refused before any per-item work.
        raise BadRequest(f"{name} has {len(value)} entries; at most {max_uids} per request",
                         "too_many_uids")
    cache = _VALID_IDS
    uids = [cache.get(v) if type(v) is str else None for v in value]
    for i, uid in enumerate(uids):
        if uid is None:  # not seen before (or not a string): the full check, naming the index
            uids[i] = check_uid(value[i], f"{name}[{i}]")
    return list(dict.fromkeys(uids))  # type: ignore[arg-type]


#: an id that needs no further check: 1-64 printable ASCII characters other than @ # &
_PLAIN_ID: Final = re.compile(rb"[\x21\x22\x24\x25\x27-\x3f\x41-\x7e]{1,%d}" % MAX_ID_LEN)

# The same cache for ids that arrive as raw bytes (the Redis-protocol lane): raw bytes -> the
# validated, interned str. One lookup replaces a decode, a regex scan and an intern per argument.
VALID_ID_BYTES: dict[bytes, str] = {}


def id_from_bytes(raw: bytes, name: str, channel: bool) -> str:
    """``check_channel_id`` (``channel``) or ``check_uid`` of a raw argument, cached when valid.

    Undecodable bytes become lone surrogates, which the id rules refuse like any control
    character, so the error is the id's own (``uid_invalid``, ``channel_id_special_char``).
    """
    hit = VALID_ID_BYTES.get(raw)
    if hit is not None:
        return hit
    if _PLAIN_ID.fullmatch(raw):
        # Printable ASCII without @ # & or spaces is valid as it stands (nothing to trim); a
        # random check over a million ids misses the cache most of the time, so this matters:
        # measured 2.97 -> 0.9 us per CHECKM triple over 1M random ids.
        clean = sys.intern(raw.decode("ascii"))
    else:
        text = raw.decode("utf-8", "surrogateescape")
        clean = check_channel_id(text, name) if channel else check_uid(text, name)
    if len(VALID_ID_BYTES) >= _VALID_IDS_MAX:
        VALID_ID_BYTES.clear()
    VALID_ID_BYTES[raw] = clean
    return clean


def int_from_text(raw: str | bytes, name: str) -> int:
    """An integer argument sent as text (query strings, RESP arguments); strict decimal."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if not _INT_TEXT.fullmatch(text):
        raise BadRequest(f"{name} must be an integer in ASCII digits (a '-' may lead; no '+', "
                         f"spaces, underscores or leading zeros), got {text[:32]!r}", "field_type")
    return int(text)


# Strict on purpose: int() would also take "+2", " 2 ", "2_0" and other scripts' digits ("٢"),
# so a typo would become a different channel type instead of an error. A minus sign stays legal:
# "-1" is a well-formed number that each field's own range check refuses with its own code
# (a channel type of -1 is ``channel_type_invalid``, as for a JSON body).
_INT_TEXT: Final = re.compile(r"0|-?[1-9][0-9]{0,17}", re.ASCII)


def check_flat(args: Sequence[bytes], max_checks: int, name: str = "checks") -> list[
        tuple[str, str, int]]:
    """``(from_uid, channel_id, channel_type)`` triples from a flat argument list (RESP
    ``CHECKM``), validated by the same rules as ``check_one``; errors name the triple."""
    if len(args) % 3:
        raise BadRequest(f"{name} must be (from_uid, channel_id, channel_type) triples",
                         "invalid_request")
    if len(args) // 3 > max_checks:
        raise BadRequest(f"{name} has {len(args) // 3} entries; at most {max_checks} per "
                         f"request", "too_many_checks")
    cache = VALID_ID_BYTES
    out: list[tuple[str, str, int]] = []
    append = out.append
    for i in range(0, len(args), 3):
        u, c, t = cache.get(args[i]), cache.get(args[i + 1]), CHANNEL_TYPES_BYTES.get(args[i + 2])
        if u is None or c is None or t is None:
            where = f"{name}[{i // 3}]."
            u = id_from_bytes(args[i], where + "from_uid", channel=False)
            c = id_from_bytes(args[i + 1], where + "channel_id", channel=True)
            t = check_channel_type(int_from_text(args[i + 2], where + "channel_type"),
                                   where + "channel_type")
        append((u, c, t))
    return out


#: channel_type arguments sent as text: b"1".."255" -> int (anything else takes the full check)
CHANNEL_TYPES_BYTES: Final = {str(i).encode(): i for i in range(1, 256)}


def check_channel_type(value: object, name: str = "channel_type") -> int:
    if type(value) is not int:
        raise BadRequest(f"{name} must be an integer 1-255, got {_type_name(value)}", "field_type")
    if not 1 <= value <= 255:
        raise BadRequest("channel type cannot be 0 (must be 1-255)" if value == 0 else
                         f"{name} must be 1-255, got {value}", "channel_type_invalid")
    return value


def _check_int(f: Field, value: object) -> int:
    if type(value) is not int:
        raise BadRequest(f"{f.name} must be an integer, got {_type_name(value)}", "field_type")
    if (f.minimum is not None and value < f.minimum) or (
        f.maximum is not None and value > f.maximum
    ):
        raise BadRequest(f"{f.name} must be between {f.minimum} and {f.maximum}, got {value}",
                         "value_out_of_range")
    return value


def _check_flag(f: Field, value: object) -> int:
    if type(value) is not int or value not in (0, 1):
        raise BadRequest(f"{f.name} must be 0 or 1, got {value!r:.40}", "flag_invalid")
    return value


def check_one(data: object, prefix: str = "") -> tuple[str, str, int]:
    """One permission check ``{from_uid, channel_id, channel_type}`` → validated tuple."""
    if not isinstance(data, dict):
        raise BadRequest(f"{prefix or 'body'} must be a JSON object", "invalid_body")
    try:
        from_uid, channel_id, channel_type = (
            data["from_uid"], data["channel_id"], data["channel_type"]
        )
    except KeyError as exc:
        raise BadRequest(f"{prefix}{exc.args[0]} is required", "field_missing") from None
    return (
        check_uid(from_uid, prefix + "from_uid"),
        check_channel_id(channel_id, prefix + "channel_id"),
        check_channel_type(channel_type, prefix + "channel_type"),
    )


def check_many(items: list[Any], name: str) -> list[tuple[str, str, int]]:
    """``check_one`` for each item of a check_batch, with a fast path for ids seen before.

    A batch of 10 000 checks is mostly repeated, already-validated ids: two dict lookups and a
    type test per item. Anything else (new id, wrong type, missing key, not an object) takes the
    full ``check_one``, which names the item's index in its error and fills the cache.
    """
    cache = _VALID_IDS
    out: list[tuple[str, str, int]] = []
    append = out.append
    for i, item in enumerate(items):
        try:
            checked = (cache[item["from_uid"]], cache[item["channel_id"]], item["channel_type"])
        except (KeyError, TypeError, IndexError):
            append(check_one(item, f"{name}[{i}]."))
            continue
        t = checked[2]
        if type(t) is int and 1 <= t <= 255:
            append(checked)
        else:
            append(check_one(item, f"{name}[{i}]."))
    return out


#: id(route field table) -> (the table, its names); holding the table keeps its id from being
#: reused by another object, so a lookup never answers for the wrong table
_KNOWN: dict[int, tuple[Sequence[Field], frozenset[str]]] = {}
#: field names already warned about; bounded so that a client inventing names cannot grow it
_WARNED: set[str] = set()
_WARNED_MAX: Final = 1000


def _known(fields: Sequence[Field]) -> frozenset[str]:
    # An id() lookup, not hashing the table: this runs on every parsed request.
    entry = _KNOWN.get(id(fields))
    if entry is None or entry[0] is not fields:
        entry = _KNOWN[id(fields)] = (fields, frozenset(f.name for f in fields))
    return entry[1]


def _warn_unknown(fields: Sequence[Field], data: Mapping[Any, Any]) -> None:
    """Unknown top-level fields are accepted (WuKongIM callers send extra ones) but logged once
    per name, so a typo such as ``uid`` for ``uids`` is visible in the log."""
    for key in data:
        if key in _known(fields) or key in _WARNED or len(_WARNED) >= _WARNED_MAX:
            continue
        _WARNED.add(key)
        log.warning("ignoring unknown request field %r (expected one of: %s); logged once per "
                    "name", str(key)[:64], ", ".join(sorted(_known(fields))))


def parse(fields: Sequence[Field], data: object, limits: Limits) -> dict[str, Any]:
    """Validate ``data`` (a decoded JSON body or a query mapping) against ``fields``."""
    if not isinstance(data, Mapping):
        raise BadRequest(f"request body must be a JSON object, got {_type_name(data)}",
                         "invalid_body")
    if len(data) > len(fields) or not _known(fields).issuperset(data):
        _warn_unknown(fields, data)
    out: dict[str, Any] = {}
    for f in fields:
        value = data.get(f.name)
        if value is None:
            if f.kind == "channel_type" and f.zero_default:
                out[f.name] = 2
                continue
            if f.required:
                raise BadRequest(f"{f.name} is required", "field_missing")
            out[f.name] = f.default
            continue
        kind = f.kind
        if kind == "channel_id":
            out[f.name] = check_channel_id(value, f.name)
        elif kind == "channel_type":
            out[f.name] = 2 if (value == 0 and f.zero_default and type(value) is int) \
                else check_channel_type(value, f.name)
        elif kind == "flag":
            out[f.name] = _check_flag(f, value)
        elif kind == "uid":
            out[f.name] = check_uid(value, f.name)
        elif kind == "uids":
            out[f.name] = check_uids(value, f.name, limits.max_uids)
        elif kind == "int":
            out[f.name] = _check_int(f, value)
        elif kind == "checks":
            if not isinstance(value, list):
                raise BadRequest(f"{f.name} must be an array of objects", "field_type")
            if len(value) > limits.max_checks:
                raise BadRequest(
                    f"{f.name} has {len(value)} entries; at most {limits.max_checks} per request",
                    "too_many_checks",
                )
            out[f.name] = check_many(value, f.name)
        else:  # pragma: no cover - the Kind literal is exhaustive
            raise AssertionError(kind)
    return out


def parse_query(fields: Sequence[Field], args: Mapping[str, str], limits: Limits) -> dict[str, Any]:
    """Query strings carry text: turn integer-kinded fields into ints first, then ``parse``."""
    data: dict[str, Any] = {}
    for f in fields:
        raw = args.get(f.name)
        if raw is None or raw == "":
            continue
        if f.kind in ("channel_type", "flag", "int"):
            data[f.name] = int_from_text(raw, f.name)
        else:
            data[f.name] = raw
    return parse(fields, data, limits)


# -- documentation ----------------------------------------------------------------------------

_ID_SCHEMA: Final = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN,
                     "pattern": r"^[^@#&\s]+$"}


def describe(fields: Sequence[Field]) -> dict[str, Any]:
    """A JSON Schema object for ``fields`` (the OpenAPI document is built from these)."""
    props: dict[str, Any] = {}
    for f in fields:
        if f.kind in ("channel_id", "uid"):
            schema: dict[str, Any] = dict(_ID_SCHEMA)
        elif f.kind == "channel_type":
            schema = {"type": "integer", "minimum": 0 if f.zero_default else 1, "maximum": 255}
        elif f.kind == "flag":
            schema = {"type": "integer", "enum": [0, 1]}
        elif f.kind == "uids":
            schema = {"type": "array", "items": dict(_ID_SCHEMA)}
        elif f.kind == "int":
            schema = {"type": "integer"}
            if f.minimum is not None:
                schema["minimum"] = f.minimum
            if f.maximum is not None:
                schema["maximum"] = f.maximum
        else:
            schema = {"type": "array", "items": {
                "type": "object", "required": ["from_uid", "channel_id", "channel_type"],
                "properties": {"from_uid": dict(_ID_SCHEMA), "channel_id": dict(_ID_SCHEMA),
                               "channel_type": {"type": "integer", "minimum": 1, "maximum": 255}}}}
        if f.doc:
            schema["description"] = f.doc
        props[f.name] = schema
    return {"type": "object", "properties": props,
            "required": [f.name for f in fields if f.required]}
