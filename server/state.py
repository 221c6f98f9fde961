"""The state engine: every channel, list and system account, held in dicts and sets.

Design notes
------------
* **No I/O, no trio, no clock.** Time arrives as ``now_ms`` inside each mutation, so the engine
  is tested synchronously and a gateway can embed it (``State`` + ``apply`` + ``decide``).
* **Mutations are ops**: small tuples such as ``("wl_set", channel_id, channel_type, [uids])``,
  named and built in ``server/ops.py``. A request becomes one *batch* ``(now_ms, [op, ...])``;
  the server logs the batch as one WAL record and applies it here in the same synchronous step,
  so log order is apply order.
* **Ops are blind writes** (set-add, discard, replace, put, pop). Applying a suffix of the log
  to a state that already contains part of that suffix gives the same result as applying it to
  the state before the suffix: that makes fuzzy snapshots (taken while writes continue) correct.
* **apply never rejects.** Validation (does the channel exist, is the uid well formed) happens
  in the command layer (``server/commands.py``) *before* a batch is built; an op that finds no
  channel creates it, so replay can never fail half-way through a record.
* **Layout for the decision** (``server/permission.py``, bench/RESULTS.md §1): channels live in
  one table per channel type keyed by the id string (no ``(id, type)`` tuple to build, hash and
  dereference per lookup). A table is ``SHARDS`` dicts picked by ``hash(id) & SHARD_MASK``, so a
  snapshot copies one shard's keys at a time (copying a million keys at once blocked the event
  loop 25-40 ms). ``send_banned`` holds the uids whose own person channel has ``send_ban=1``
  (rule 1 of the decision), kept by ``ch_put``/``ch_del``/snapshot loads, so the decision tests a
  small set instead of probing the person table for every sender.
* Memory: empty white/black lists share one frozenset; uids are interned so a uid that is in
  many sets is stored once.
* **Snapshots**, format 2 (``snapshot_chunks``/``load_chunk``; format 1 still loads): a meta
  chunk, ``channels`` chunks, one ``channels_end``, then the presence chunks. A channels chunk
  (told from a format-1 one by its ``members`` key) carries the uids it is the first to use
  (appended to a uid table that grows over the whole snapshot: each distinct uid is written and
  interned once), its rows ``[id, type, flag bits, created_at, updated_at, expires_at,
  n_subscribers, n_whitelist, n_blacklist]``, and ``members``: the rows' members as indexes into
  the uid table, packed little-endian ``u32`` in row order (subscribers, whitelist, blacklist of
  the first row, then the next row's...). Flag bit ``i`` is ``FLAG_NAMES[i]``.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from server import ops as op_names
from server.ops import FLAG_NAMES
from server.presence import CHUNK_KINDS as PRESENCE_CHUNK_KINDS
from server.presence import Presence, StatusNote

PERSON: Final = 1
GROUP: Final = 2
TEMP: Final = 8

#: dicts per channel-type table; a power of two (the shard is ``hash(id) & SHARD_MASK``)
SHARDS: Final = 64
SHARD_MASK: Final = SHARDS - 1

#: snapshot state format written by :meth:`State.snapshot_chunks` (1 still loads)
SNAPSHOT_VERSION: Final = 2

ChannelKey = tuple[str, int]
Batch = tuple[int, Sequence[Sequence[Any]]]

_EMPTY: frozenset[str] = frozenset()
_intern = sys.intern
_BIG_ENDIAN: Final = sys.byteorder == "big"
#: flag bits -> the five flag values in FLAG_NAMES order
_FLAG_VALUES: Final = tuple(tuple((bits >> i) & 1 for i in range(len(FLAG_NAMES)))
                            for bits in range(1 << len(FLAG_NAMES)))
if array("I").itemsize != 4:  # pragma: no cover - every platform CPython supports today
    raise ImportError("snapshot format 2 needs a 4-byte array('I')")


class Channel:
    """One channel's flags and member sets.

    ``whitelist`` / ``blacklist`` are the shared empty frozenset until something is added: most
    channels never have either, and ``uid in frozenset()`` costs the same as on a set.
    """

    __slots__ = (
        "allow_stranger",
        "ban",
        "blacklist",
        "created_at",
        "disband",
        "expires_at",
        "large",
        "send_ban",
        "subscribers",
        "updated_at",
        "whitelist",
    )

    def __init__(self, now_ms: int) -> None:
        self.ban = 0
        self.disband = 0
        self.send_ban = 0
        self.allow_stranger = 0
        self.large = 0
        self.subscribers: set[str] | frozenset[str] = _EMPTY
        self.whitelist: set[str] | frozenset[str] = _EMPTY
        self.blacklist: set[str] | frozenset[str] = _EMPTY
        self.created_at = now_ms
        self.updated_at = now_ms
        # Temporary channels only: the instant (ms) after which the channel counts as missing.
        self.expires_at = 0

    def flags(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FLAG_NAMES}

    def flag_bits(self) -> int:
        return (self.ban | self.disband << 1 | self.send_ban << 2 | self.allow_stranger << 3
                | self.large << 4)


assert FLAG_NAMES == ("ban", "disband", "send_ban", "allow_stranger", "large")  # flag_bits order

#: one channel type's channels: ``SHARDS`` dicts, channel id -> Channel
Table = list[dict[str, Channel]]


def new_table() -> Table:
    return [{} for _ in range(SHARDS)]


#: the table of a channel type no channel has used yet (never written to)
NO_TABLE: Final[Table] = new_table()


def _replace(uids: Iterable[str]) -> set[str] | frozenset[str]:
    members = {_intern(u) for u in uids}
    return members if members else _EMPTY


def _add(current: set[str] | frozenset[str], uids: Iterable[str]) -> set[str] | frozenset[str]:
    if not current:  # the shared empty frozenset: never mutate it
        return _replace(uids)
    assert isinstance(current, set)
    current.update(_intern(u) for u in uids)
    return current


def _discard(current: set[str] | frozenset[str], uids: Iterable[str]) -> set[str] | frozenset[str]:
    if not current:
        return current
    assert isinstance(current, set)
    current.difference_update(uids)
    return current if current else _EMPTY


class ChannelsView(Mapping[ChannelKey, Channel]):
    """Read-only ``(channel_id, channel_type) -> Channel`` view over the per-type tables, for
    tools, tests and benchmarks. Hot paths use ``State.tables`` directly."""

    def __init__(self, tables: dict[int, Table]) -> None:
        self._tables = tables

    def __getitem__(self, key: ChannelKey) -> Channel:
        cid, ctype = key
        return self._tables.get(ctype, NO_TABLE)[hash(cid) & SHARD_MASK][cid]

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        cid, ctype = key
        return cid in self._tables.get(ctype, NO_TABLE)[hash(cid) & SHARD_MASK]

    def __iter__(self) -> Iterator[ChannelKey]:
        for ctype, table in list(self._tables.items()):
            for shard in table:
                for cid in list(shard):
                    yield (cid, ctype)

    def __len__(self) -> int:
        return sum(len(shard) for table in self._tables.values() for shard in table)


class State:
    """All channel state. Read the attributes freely; change them only through :meth:`apply`."""

    def __init__(self, system_uids: Iterable[str] = ()) -> None:
        #: channel type -> its table (created on first use; the three named types always exist)
        self.tables: dict[int, Table] = {PERSON: new_table(), GROUP: new_table(),
                                         TEMP: new_table()}
        self.persons = self.tables[PERSON]
        #: uids whose own person channel has send_ban=1 (rule 1 of the decision)
        self.send_banned: set[str] = set()
        self.system_uids: set[str] = {_intern(u) for u in system_uids}
        #: every channel by ``(id, type)``, read-only
        self.channels = ChannelsView(self.tables)
        #: total members per list kind over all channels (what /metrics reports)
        self.sizes = {"subscribers": 0, "whitelist": 0, "blacklist": 0}
        o = op_names
        self._ops: dict[str, Callable[..., None]] = {
            o.CH_PUT: self._ch_put,
            o.CH_DEL: self._ch_del,
            o.TMP_SET: self._tmp_set,
            o.TMP_EXPIRE: self._tmp_expire,
            o.SYS_ADD: self._sys_add,
            o.SYS_RM: self._sys_rm,
        }
        changes = {"add": _add, "rm": _discard, "set": lambda _cur, uids: _replace(uids)}
        for (which, change), name in o.LIST_OPS.items():
            self._ops[name] = self._list_op(which, changes[change])
        #: status subscriptions and online devices; its ops share this table
        self.presence = Presence()
        self._ops.update(self.presence.ops())
        #: snapshot format 2 loading: the uid table so far (emptied by ``channels_end``)
        self._uid_table: list[str] = []

    # -- reading -----------------------------------------------------------------------------

    def shard(self, channel_id: str, channel_type: int) -> dict[str, Channel]:
        """The dict that holds (or would hold) the channel (a shared empty one for unused
        types: read it, never write it)."""
        return self.tables.get(channel_type, NO_TABLE)[hash(channel_id) & SHARD_MASK]

    def get(self, channel_id: str, channel_type: int, now_ms: int) -> Channel | None:
        """The live channel, or None if it does not exist (or is an expired temporary channel)."""
        ch = self.shard(channel_id, channel_type).get(channel_id)
        if ch is None or (ch.expires_at and ch.expires_at <= now_ms):
            return None
        return ch

    def exists(self, channel_id: str, channel_type: int) -> bool:
        """True if the channel is held, live or expired (a ``ch_del`` would remove something)."""
        return channel_id in self.shard(channel_id, channel_type)

    def expired_temp_channels(self, now_ms: int, limit: int = 1000) -> list[str]:
        """Ids of temporary channels whose TTL has passed (in memory until purged)."""
        found = []
        for shard in self.tables[TEMP]:
            for cid, ch in shard.items():
                if ch.expires_at and ch.expires_at <= now_ms:
                    found.append(cid)
                    if len(found) >= limit:
                        return found
        return found

    def counts(self) -> dict[str, int]:
        """Sizes for /metrics: membership totals are kept up to date by every op."""
        return {"channels": len(self.channels), **self.sizes,
                "system_uids": len(self.system_uids)}

    def _forget(self, ch: Channel) -> None:
        sizes = self.sizes
        sizes["subscribers"] -= len(ch.subscribers)
        sizes["whitelist"] -= len(ch.whitelist)
        sizes["blacklist"] -= len(ch.blacklist)

    def _remember(self, ch: Channel) -> None:
        sizes = self.sizes
        sizes["subscribers"] += len(ch.subscribers)
        sizes["whitelist"] += len(ch.whitelist)
        sizes["blacklist"] += len(ch.blacklist)

    # -- mutating ----------------------------------------------------------------------------

    def apply(self, batch: Batch, notes: list[StatusNote] | None = None) -> None:
        """Apply one logged batch ``(now_ms, ops)``. Never raises for ops from ``server/ops.py``.

        With ``notes``, every presence status flip the batch causes (and every new
        subscription's first status) is appended to it, in the same step; replay passes none.
        """
        now_ms, ops = batch
        table = self._ops
        if notes is None:
            for op in ops:
                table[op[0]](now_ms, *op[1:])
            return
        presence = self.presence
        presence.notes = notes
        try:
            for op in ops:
                table[op[0]](now_ms, *op[1:])
        finally:
            presence.notes = None

    def _shard_for_write(self, channel_id: str, channel_type: int) -> dict[str, Channel]:
        table = self.tables.get(channel_type)
        if table is None:
            table = self.tables[channel_type] = new_table()
        return table[hash(channel_id) & SHARD_MASK]

    def _touch(self, channel_id: str, channel_type: int, now_ms: int) -> Channel:
        shard = self._shard_for_write(channel_id, channel_type)
        ch = shard.get(channel_id)
        if ch is None:
            ch = shard[_intern(channel_id)] = Channel(now_ms)
            if channel_type == TEMP:
                # Only replay gets here (commands refuse to create a temporary channel this
                # way): the op's channel was live when logged and is gone from a fuzzy snapshot
                # because a later record removed it. Born expired, it counts as missing and that
                # later tmp_expire removes it again; with no expiry it would live forever.
                ch.expires_at = now_ms
        else:
            ch.updated_at = now_ms
        return ch

    def _ch_put(self, now_ms: int, channel_id: str, channel_type: int,
                flags: dict[str, int]) -> None:
        ch = self._touch(channel_id, channel_type, now_ms)
        for name, value in flags.items():
            if name in FLAG_NAMES:
                setattr(ch, name, int(value))
        if channel_type == PERSON:
            self._note_send_ban(channel_id, ch.send_ban)

    def _note_send_ban(self, uid: str, send_ban: int) -> None:
        if send_ban:
            self.send_banned.add(_intern(uid))
        else:
            self.send_banned.discard(uid)

    def _ch_del(self, now_ms: int, channel_id: str, channel_type: int) -> None:
        ch = self.shard(channel_id, channel_type).pop(channel_id, None)
        if ch is not None:
            self._forget(ch)
            if channel_type == PERSON:
                self.send_banned.discard(channel_id)

    def _list_op(
        self,
        attr: str,
        change: Callable[[set[str] | frozenset[str], Iterable[str]], set[str] | frozenset[str]],
    ) -> Callable[..., None]:
        def op(now_ms: int, channel_id: str, channel_type: int, uids: Iterable[str]) -> None:
            # A new person channel starts with send_ban=0: send_banned needs no update.
            ch = self._touch(channel_id, channel_type, now_ms)
            before = len(getattr(ch, attr))
            after = change(getattr(ch, attr), uids)
            setattr(ch, attr, after)
            self.sizes[attr] += len(after) - before

        return op

    def _tmp_set(self, now_ms: int, channel_id: str, uids: Iterable[str], expires_at: int) -> None:
        shard = self._shard_for_write(channel_id, TEMP)
        ch = shard.get(channel_id)
        if ch is None or (ch.expires_at and ch.expires_at <= now_ms):
            # An expired temporary channel is gone: a new subscriber_set starts a fresh one.
            if ch is not None:
                self._forget(ch)
            ch = shard[_intern(channel_id)] = Channel(now_ms)
        ch.updated_at = now_ms
        self.sizes["subscribers"] -= len(ch.subscribers)
        ch.subscribers = _replace(uids)
        self.sizes["subscribers"] += len(ch.subscribers)
        ch.expires_at = expires_at

    def _tmp_expire(self, now_ms: int, channel_id: str) -> None:
        shard = self.shard(channel_id, TEMP)
        ch = shard.get(channel_id)
        if ch is not None and ch.expires_at and ch.expires_at <= now_ms:
            del shard[channel_id]
            self._forget(ch)

    def _sys_add(self, now_ms: int, uids: Iterable[str]) -> None:
        self.system_uids.update(_intern(u) for u in uids)

    def _sys_rm(self, now_ms: int, uids: Iterable[str]) -> None:
        self.system_uids.difference_update(uids)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot_chunks(self, rows_per_chunk: int = 250) -> Iterator[object]:
        """Chunks (format 2, see the module notes) that :meth:`load_chunk` turns back into this
        state.

        Nothing per channel is copied now: each shard's *keys* are copied when the snapshot
        reaches that shard (one step of ~1/64 of a type's channels: a list of references, no new
        objects for the collector), and each chunk looks its rows up when it is built, in one
        step too, so a set is never iterated while it changes. A channel deleted in between is
        skipped, one created in between may be included. The result is fuzzy and the log replay
        after the snapshot's LSN makes it exact, because ops are blind writes: a channel that
        exists at the LSN and is not written after it is in its shard's key copy unchanged.

        The uid-to-index map of the writer is sharded like the tables, so that growing it never
        rehashes a million entries in one step. 250 rows per chunk: a chunk of 1M x 10 took up
        to ~10 ms to build with 500 (each member costs a probe of that map).
        """
        tables = [(ctype, table) for ctype, table in self.tables.items()
                  if any(table)]
        system = sorted(self.system_uids)
        total = len(self.channels)
        presence = self.presence.snapshot_chunks(rows_per_chunk)  # copied now, like the channels

        def chunks() -> Iterator[object]:
            yield {"kind": "meta", "version": SNAPSHOT_VERSION, "system_uids": system,
                   "channels": total}
            index: list[dict[str, int]] = [{} for _ in range(SHARDS)]
            table_size = 0
            for ctype, table in tables:
                for shard in table:
                    keys = list(shard)
                    for start in range(0, len(keys), rows_per_chunk):
                        new_uids: list[str] = []
                        members = array("I")
                        rows = []
                        for cid in keys[start : start + rows_per_chunk]:
                            ch = shard.get(cid)
                            if ch is None:
                                continue
                            subs, wl, bl = ch.subscribers, ch.whitelist, ch.blacklist
                            for group in (subs, wl, bl) if wl or bl else (subs,):
                                for u in group:
                                    where = index[hash(u) & SHARD_MASK]
                                    i = where.get(u)
                                    if i is None:
                                        i = where[u] = table_size
                                        table_size += 1
                                        new_uids.append(u)
                                    members.append(i)
                            rows.append((cid, ctype, ch.flag_bits(), ch.created_at,
                                         ch.updated_at, ch.expires_at, len(subs), len(wl),
                                         len(bl)))
                        if _BIG_ENDIAN:  # pragma: no cover
                            members.byteswap()
                        yield {"kind": "channels", "uids": new_uids, "rows": rows,
                               "members": members.tobytes()}
            # Freeing a million-entry map (its int objects, a reference to every uid) blocked
            # the loop ~40 ms at 1M: release it one shard per (empty) chunk instead.
            while index:
                index.pop().clear()
                yield {"kind": "channels", "uids": [], "rows": [], "members": b""}
            yield {"kind": "channels_end"}
            yield from presence

        return chunks()

    def load_chunk(self, chunk: object) -> None:
        """Inverse of :meth:`snapshot_chunks`, one chunk at a time (formats 1 and 2)."""
        if not isinstance(chunk, dict):
            raise ValueError(f"snapshot chunk is {type(chunk).__name__}, expected a map")
        kind = chunk.get("kind")
        if kind == "channels" and "members" in chunk:
            self._load_rows(chunk)
        elif kind == "meta":
            version = chunk.get("version")
            if version not in (1, 2):
                raise ValueError(f"unsupported snapshot state version {version!r}")
            self.system_uids = {_intern(u) for u in chunk["system_uids"]}
            self._uid_table = []
        elif kind == "channels_end":
            self._uid_table = []
        elif kind == "channels":  # format 1: member lists spelled out in every row
            for cid, ctype, flags, created, updated, expires, subs, wl, bl in chunk["rows"]:
                ch = Channel(created)
                ch.ban, ch.disband, ch.send_ban, ch.allow_stranger, ch.large = flags
                ch.updated_at = updated
                ch.expires_at = expires
                ch.subscribers = _replace(subs)
                ch.whitelist = _replace(wl)
                ch.blacklist = _replace(bl)
                self._put_loaded(cid, ctype, ch)
        elif kind in PRESENCE_CHUNK_KINDS:
            self.presence.load_chunk(chunk)
        else:
            raise ValueError(f"unknown snapshot chunk kind {kind!r}")

    def _load_rows(self, chunk: dict[str, Any]) -> None:
        table = self._uid_table
        table.extend(map(_intern, chunk["uids"]))
        indexes = array("I")
        indexes.frombytes(chunk["members"])
        if _BIG_ENDIAN:  # pragma: no cover
            indexes.byteswap()
        members = list(map(table.__getitem__, indexes))
        flag_values = _FLAG_VALUES
        put = self._put_loaded
        at = 0
        for cid, ctype, bits, created, updated, expires, n_subs, n_wl, n_bl in chunk["rows"]:
            ch = Channel(created)
            ch.ban, ch.disband, ch.send_ban, ch.allow_stranger, ch.large = flag_values[bits]
            ch.updated_at = updated
            ch.expires_at = expires
            if n_subs:
                ch.subscribers = set(members[at : at + n_subs])
                at += n_subs
            if n_wl:
                ch.whitelist = set(members[at : at + n_wl])
                at += n_wl
            if n_bl:
                ch.blacklist = set(members[at : at + n_bl])
                at += n_bl
            put(cid, ctype, ch)
        if at != len(members):
            raise ValueError(f"snapshot rows use {at} member indexes, the chunk has "
                             f"{len(members)}")

    def _put_loaded(self, channel_id: str, channel_type: int, ch: Channel) -> None:
        shard = self._shard_for_write(channel_id, channel_type)
        old = shard.get(channel_id)
        if old is not None:
            self._forget(old)
        shard[_intern(channel_id)] = ch
        self._remember(ch)
        if channel_type == PERSON and (ch.send_ban or old is not None):
            self._note_send_ban(channel_id, ch.send_ban)

    def as_plain(self) -> dict[str, Any]:
        """Everything as plain dicts/sets: what tests compare before and after a restart."""
        return {
            "system_uids": set(self.system_uids),
            "channels": {
                key: {
                    **ch.flags(),
                    "subscribers": set(ch.subscribers),
                    "whitelist": set(ch.whitelist),
                    "blacklist": set(ch.blacklist),
                    "created_at": ch.created_at,
                    "updated_at": ch.updated_at,
                    "expires_at": ch.expires_at,
                }
                for key, ch in self.channels.items()
            },
            "presence": self.presence.as_plain(),
        }
