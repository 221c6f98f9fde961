"""Presence and status subscriptions: the pure part, composed into ``State``.

Design notes
------------
* Same rules as ``server/state.py``: **no I/O, no trio, no clock**. Time arrives as the batch's
  ``now_ms``; every reader that depends on time takes ``now_ms`` too.
* A **subscription** is ``(subscriber, target, sub_type) → (subscribed_at_ms, expires_at_ms)``,
  held twice — ``following[subscriber][(target, sub_type)]`` and
  ``followers[target][(subscriber, sub_type)]`` point at the same tuple — so both "whom does u
  follow" and "who follows u" are one dict lookup.
* A subscription is **live** while ``now_ms < expires_at_ms``. Expired ones are ignored by every
  reader at their expiry instant, and purged lazily by a logged ``ps_expire`` op (like
  ``tmp_expire``), found through a heap of expiry instants so the purge never walks everything.
* **Presence** is per uid and device flag (0 app, 1 web, 2 pc): ``devices[uid][flag] = since_ms``
  holds online devices only; a uid is online while it has any. An offline report pops the device.
* **Ops are blind writes** (put, pop, conditional-on-time pop), so replaying a record on a state
  that already contains part of it gives the same result (fuzzy snapshots):

  ============================================================  =================================
  ``("ps_sub", subscriber, sub_type, expiry_ms, [targets])``     put ``(now, now + expiry_ms)``
  ``("ps_unsub", subscriber, sub_type, [targets])``              pop
  ``("ps_expire", [[subscriber, target, sub_type], ...])``       pop if expired at the op's time
  ``("pr_set", uid, device_flag, online, session_id, os, ip)``   put / pop one device
  ============================================================  =================================

  Limits (per subscriber, per target) are decided by the route *before* the batch is built;
  ``apply`` never refuses.
* **Notes.** The server needs to know when a user's aggregated status flips, and which live
  subscribers it had at that instant, in the same synchronous step as the apply. While
  :attr:`Presence.notes` is a list (the server sets it around each live apply; replay leaves it
  ``None``), ops append a :class:`StatusNote` for every flip, and for every *new* subscription
  (the subscriber gets the target's current status at once).
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

#: subType 1: online status (the only kind RongCloud documents for this API)
STATUS: Final = 1
DEVICE_FLAGS: Final = (0, 1, 2)  # app, web, pc

#: snapshot chunk kinds written by :meth:`Presence.snapshot_chunks`
CHUNK_KINDS: Final = frozenset({"subscriptions", "presence"})

SubKey = tuple[str, int]  # (the other uid, sub_type)
Span = tuple[int, int]  # one subscription: (subscribed_at_ms, expires_at_ms)

_intern = sys.intern


@dataclass(frozen=True, slots=True)
class StatusNote:
    """A status event produced while applying a live batch (see "Notes" above)."""

    uid: str
    online: bool
    #: the uid's online device flags after the change, sorted
    devices: tuple[int, ...]
    time: int
    #: live subscribers who should hear about it, sorted
    subscribers: tuple[str, ...]
    #: ``flip``: the aggregated status changed; ``subscribe``: a new subscription's first status
    cause: Literal["flip", "subscribe"]
    # The report that caused a flip (RongCloud's webhook carries them); empty for ``subscribe``.
    device_flag: int = -1
    session_id: str = ""
    os: str = ""
    client_ip: str = ""


@dataclass(frozen=True, slots=True)
class SubscribePlan:
    """What a subscribe request may do; see :meth:`Presence.plan_subscribe`."""

    #: targets to subscribe (new ones and renewals), in request order
    accepted: list[str]
    #: the accepted targets the subscriber does not follow yet (these count against limits)
    new: list[str]
    #: targets that already have the maximum of live subscribers (RongCloud 26021)
    refused: list[str]
    #: the subscriber would exceed their own maximum: apply nothing (RongCloud 26022)
    over_limit: bool


class Presence:
    """Subscriptions and online devices. Change them only through the ops in :meth:`ops`."""

    def __init__(self) -> None:
        self.following: dict[str, dict[SubKey, Span]] = {}
        self.followers: dict[str, dict[SubKey, Span]] = {}
        self.devices: dict[str, dict[int, int]] = {}
        #: subscriptions held, live or expired-not-yet-purged (O(1) for /metrics)
        self.subscription_count = 0
        #: (expires_at, subscriber, target, sub_type); may hold stale entries (renewed or
        #: removed subscriptions), skipped when popped and dropped by an occasional rebuild
        self._expiry: list[tuple[int, str, str, int]] = []
        #: see "Notes" in the module docstring
        self.notes: list[StatusNote] | None = None

    def ops(self) -> dict[str, Callable[..., None]]:
        return {
            "ps_sub": self._ps_sub,
            "ps_unsub": self._ps_unsub,
            "ps_expire": self._ps_expire,
            "pr_set": self._pr_set,
        }

    # -- reading: presence -------------------------------------------------------------------

    def is_online(self, uid: str) -> bool:
        return uid in self.devices

    def device_flags(self, uid: str) -> tuple[int, ...]:
        return tuple(sorted(self.devices.get(uid, ())))

    def online_users(self) -> int:
        return len(self.devices)

    # -- reading: subscriptions --------------------------------------------------------------

    def subscription(self, subscriber: str, target: str, sub_type: int,
                     now_ms: int) -> Span | None:
        """The live subscription, or None (absent or expired)."""
        rec = self.following.get(subscriber, {}).get((target, sub_type))
        return rec if rec is not None and rec[1] > now_ms else None

    def holds(self, subscriber: str, target: str, sub_type: int) -> bool:
        """True if the subscription exists, live or expired-not-yet-purged."""
        return (target, sub_type) in self.following.get(subscriber, {})

    def subscriptions_of(self, subscriber: str, sub_type: int,
                         now_ms: int) -> list[tuple[str, Span]]:
        """Live subscriptions of ``subscriber``: ``[(target, span)]`` sorted by target."""
        return _live(self.following.get(subscriber), sub_type, now_ms)

    def followers_of(self, target: str, sub_type: int,
                     now_ms: int) -> list[tuple[str, Span]]:
        """Live subscribers of ``target``: ``[(subscriber, span)]`` sorted by subscriber."""
        return _live(self.followers.get(target), sub_type, now_ms)

    def following_count(self, subscriber: str, sub_type: int, now_ms: int,
                        at_least: int | None = None) -> int:
        """Live subscriptions ``subscriber`` holds. With ``at_least``, an answer below it may be
        an upper bound (the number held, live or not): exact once it matters for a limit."""
        return _count(self.following.get(subscriber), sub_type, now_ms, at_least)

    def follower_count(self, target: str, sub_type: int, now_ms: int,
                       at_least: int | None = None) -> int:
        """Live subscribers of ``target`` (``at_least`` as in :meth:`following_count`)."""
        return _count(self.followers.get(target), sub_type, now_ms, at_least)

    def expired_subscriptions(self, now_ms: int, limit: int = 1000) -> list[tuple[str, str, int]]:
        """``(subscriber, target, sub_type)`` of subscriptions expired at ``now_ms``, unpurged."""
        heap = self._expiry
        found: list[tuple[str, str, int]] = []
        keep: list[tuple[int, str, str, int]] = []
        while heap and heap[0][0] <= now_ms and len(found) < limit:
            entry = heapq.heappop(heap)
            expires_at, subscriber, target, sub_type = entry
            rec = self.following.get(subscriber, {}).get((target, sub_type))
            if rec is not None and rec[1] == expires_at and (not keep or keep[-1] != entry):
                found.append((subscriber, target, sub_type))
                keep.append(entry)  # stays indexed until the ps_expire op removes the subscription
            # else: stale (renewed or removed since) or a duplicate: dropped from the index
        for entry in keep:
            heapq.heappush(heap, entry)
        return found

    def plan_subscribe(self, subscriber: str, targets: Sequence[str], sub_type: int,
                       now_ms: int, max_per_user: int, max_followers: int) -> SubscribePlan:
        """Decide a subscribe request against the limits, before any op is built.

        A live subscription being renewed never counts again. A target whose live subscribers
        already number ``max_followers`` is refused (the others go ahead); if the subscriber
        would then hold more than ``max_per_user`` live subscriptions, nothing is applied.
        """
        renew: set[str] = set()
        new: list[str] = []
        refused: list[str] = []
        for target in targets:
            if self.subscription(subscriber, target, sub_type, now_ms) is not None:
                renew.add(target)
            elif self.follower_count(target, sub_type, now_ms,
                                     at_least=max_followers) >= max_followers:
                refused.append(target)
            else:
                new.append(target)
        held = self.following_count(subscriber, sub_type, now_ms,
                                    at_least=max_per_user - len(new) + 1)
        over = held + len(new) > max_per_user
        skip = set(refused)
        accepted = [t for t in targets if t not in skip]
        return SubscribePlan(accepted, new, refused, over)

    # -- ops ---------------------------------------------------------------------------------

    def _ps_sub(self, now_ms: int, subscriber: str, sub_type: int, expiry_ms: int,
                targets: Iterable[str]) -> None:
        subscriber = _intern(subscriber)
        rec = (now_ms, now_ms + expiry_ms)
        mine = self.following.setdefault(subscriber, {})
        notes = self.notes
        for target in targets:
            target = _intern(target)
            key = (target, sub_type)
            old = mine.get(key)
            if old is None:
                self.subscription_count += 1
            mine[key] = rec
            self.followers.setdefault(target, {})[(subscriber, sub_type)] = rec
            heapq.heappush(self._expiry, (rec[1], subscriber, target, sub_type))
            if notes is not None and sub_type == STATUS and (old is None or old[1] <= now_ms):
                notes.append(StatusNote(target, target in self.devices, self.device_flags(target),
                                        now_ms, (subscriber,), "subscribe"))
        if len(self._expiry) > 2 * self.subscription_count + 1024:
            self._rebuild_expiry()

    def _ps_unsub(self, now_ms: int, subscriber: str, sub_type: int,
                  targets: Iterable[str]) -> None:
        for target in targets:
            self._remove(subscriber, target, sub_type)

    def _ps_expire(self, now_ms: int, entries: Iterable[Sequence[Any]]) -> None:
        for subscriber, target, sub_type in entries:
            rec = self.following.get(subscriber, {}).get((target, sub_type))
            # Only if still expired at the op's time: a renewal logged later keeps it on replay.
            if rec is not None and rec[1] <= now_ms:
                self._remove(subscriber, target, sub_type)

    def _remove(self, subscriber: str, target: str, sub_type: int) -> None:
        mine = self.following.get(subscriber)
        if mine is None or mine.pop((target, sub_type), None) is None:
            return
        self.subscription_count -= 1
        if not mine:
            del self.following[subscriber]
        theirs = self.followers.get(target)
        if theirs is not None:
            theirs.pop((subscriber, sub_type), None)
            if not theirs:
                del self.followers[target]

    def _pr_set(self, now_ms: int, uid: str, device_flag: int, online: int,
                session_id: str = "", os: str = "", client_ip: str = "") -> None:
        uid = _intern(uid)
        devices = self.devices.get(uid)
        was_online = devices is not None
        if online:
            if devices is None:
                devices = self.devices[uid] = {}
            devices[device_flag] = now_ms
        elif devices is not None:
            devices.pop(device_flag, None)
            if not devices:
                del self.devices[uid]
        is_online = uid in self.devices
        if self.notes is not None and is_online != was_online:
            subscribers = tuple(s for s, _ in self.followers_of(uid, STATUS, now_ms))
            self.notes.append(StatusNote(uid, is_online, self.device_flags(uid), now_ms,
                                         subscribers, "flip", device_flag, session_id or "",
                                         os or "", client_ip or ""))

    def _rebuild_expiry(self) -> None:
        self._expiry = [(rec[1], s, t, st) for s, mine in self.following.items()
                        for (t, st), rec in mine.items()]
        heapq.heapify(self._expiry)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot_chunks(self, rows_per_chunk: int = 2000) -> Iterator[object]:
        """Chunks for :meth:`load_chunk`. Only the top-level *keys* are copied now (one step, no
        new objects: copying ``items()`` of a million users made a million tuples at once); each
        user's rows are looked up and built in one step later, so the result is fuzzy like
        ``State``'s, and a user gone in between is skipped."""
        following, online = self.following, self.devices
        subscribers = list(following)
        uids = list(online)

        def chunks() -> Iterator[object]:
            rows: list[tuple[Any, ...]] = []
            for subscriber in subscribers:
                mine = following.get(subscriber)
                if mine is None:
                    continue
                rows.extend((subscriber, t, st, sat, exp)
                            for (t, st), (sat, exp) in list(mine.items()))
                if len(rows) >= rows_per_chunk:
                    yield {"kind": "subscriptions", "rows": rows}
                    rows = []
            if rows:
                yield {"kind": "subscriptions", "rows": rows}
            rows = []
            for uid in uids:
                flags = online.get(uid)
                if flags is None:
                    continue
                rows.extend((uid, flag, since) for flag, since in list(flags.items()))
                if len(rows) >= rows_per_chunk:
                    yield {"kind": "presence", "rows": rows}
                    rows = []
            if rows:
                yield {"kind": "presence", "rows": rows}

        return chunks()

    def load_chunk(self, chunk: dict[str, Any]) -> None:
        if chunk["kind"] == "subscriptions":
            for subscriber, target, sub_type, subscribed_at, expires_at in chunk["rows"]:
                subscriber, target = _intern(subscriber), _intern(target)
                rec = (subscribed_at, expires_at)
                mine = self.following.setdefault(subscriber, {})
                if (target, sub_type) not in mine:
                    self.subscription_count += 1
                mine[(target, sub_type)] = rec
                self.followers.setdefault(target, {})[(subscriber, sub_type)] = rec
                heapq.heappush(self._expiry, (expires_at, subscriber, target, sub_type))
        else:
            for uid, flag, since in chunk["rows"]:
                self.devices.setdefault(_intern(uid), {})[flag] = since

    def as_plain(self) -> dict[str, Any]:
        return {
            "subscriptions": {(s, t, st): rec for s, mine in self.following.items()
                              for (t, st), rec in mine.items()},
            "followers": {(t, s, st): rec for t, theirs in self.followers.items()
                          for (s, st), rec in theirs.items()},
            "devices": {uid: dict(flags) for uid, flags in self.devices.items()},
        }


def _live(index: dict[SubKey, Span] | None, sub_type: int,
          now_ms: int) -> list[tuple[str, Span]]:
    if not index:
        return []
    return sorted((uid, rec) for (uid, st), rec in index.items()
                  if st == sub_type and rec[1] > now_ms)


def _count(index: dict[SubKey, Span] | None, sub_type: int, now_ms: int,
           at_least: int | None) -> int:
    if not index:
        return 0
    if at_least is not None and len(index) < at_least:
        return len(index)  # even counting expired ones it is below the limit
    return sum(1 for (_, st), rec in index.items() if st == sub_type and rec[1] > now_ms)
