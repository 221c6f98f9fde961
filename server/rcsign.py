"""RongCloud request signatures, nonce replay cache and per-route rate limit
(docs/compatibility.md, "From RongCloud").

Pure and synchronous: every check takes the current time as an argument, so it is tested
without a clock. ``server/routes/rongcloud.py`` applies them to the signed routes and
``server/webhook.py`` signs its callbacks with :func:`signature`.

RongCloud's rule: ``Signature = hex(SHA1(AppSecret + Nonce + Timestamp))`` in lowercase, sent with
``App-Key``, ``Nonce`` and ``Timestamp`` headers. The official SDKs send the Timestamp in
seconds while the documentation says milliseconds: both are accepted (a value of 10^11 or more
is milliseconds — 10^11 seconds is the year 5138). Secrets and signatures are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Iterable
from typing import Final, Protocol

#: more than this far from the server clock (either way) → 1004
MAX_SKEW_MS: Final = 300_000
MAX_NONCE_LEN: Final = 64
MAX_REQUEST_ID_LEN: Final = 36
#: a Timestamp at or above this is in milliseconds
_MS_THRESHOLD: Final = 10**11

# RongCloud's codes for authentication and throttling
APP_KEY_INVALID: Final = 1001
SIGNATURE_INVALID: Final = 1004
RATE_LIMITED: Final = 1008


class Headers(Protocol):
    """Case-insensitive header lookup (werkzeug's ``Headers``; a dict works with exact names)."""

    def get(self, key: str, /) -> str | None: ...


class AuthError(Exception):
    """A signed request is refused; ``code`` is RongCloud's, answered with HTTP 401."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def signature(secret: str, nonce: str, timestamp: str) -> str:
    """Lowercase hex SHA1 of ``secret + nonce + timestamp``."""
    return hashlib.sha1((secret + nonce + timestamp).encode()).hexdigest()


def header(headers: Headers, name: str) -> str | None:
    """``name`` or its ``RC-`` prefixed form (the SDKs send either)."""
    value = headers.get(name)
    if value is None:
        value = headers.get("RC-" + name)
    return value


def timestamp_ms(raw: str) -> int | None:
    """The Timestamp header in milliseconds (it may be seconds or ms), or None if malformed."""
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
        return None
    value = int(raw)
    return value if value >= _MS_THRESHOLD else value * 1000


class NonceStore(Protocol):
    """Where accepted nonces are also recorded, so they outlive a restart (server/nonces.py)."""

    def append(self, nonce: str, until_ms: int) -> None: ...


class ReplayCache:
    """Nonces seen inside the acceptance window, bounded.

    A nonce is remembered until its timestamp could no longer be accepted (timestamp + 300 s), so
    a replay is refused for as long as it would otherwise pass. Entries sit in insertion order;
    expired ones are dropped from the front as new ones arrive, and beyond ``max_entries`` the
    oldest is dropped (the routes' rate limit keeps the set of accepted nonces far smaller).
    With a ``store``, every added nonce is also handed to it.
    """

    def __init__(self, max_entries: int, store: NonceStore | None = None) -> None:
        self.max_entries = max_entries
        self.store = store
        self._until: dict[str, int] = {}

    def load(self, entries: Iterable[tuple[str, int]]) -> None:
        """Take back ``(nonce, until_ms)`` entries a store kept (without storing them again)."""
        for nonce, until in sorted(entries, key=lambda e: e[1]):
            self._until.pop(nonce, None)
            self._until[nonce] = until
        while len(self._until) > self.max_entries:
            del self._until[next(iter(self._until))]

    def live(self, now_ms: int) -> list[tuple[str, int]]:
        """The entries that still refuse a replay at ``now_ms``, oldest first."""
        return [(n, u) for n, u in self._until.items() if u >= now_ms]

    def __len__(self) -> int:
        return len(self._until)

    def seen(self, nonce: str, now_ms: int) -> bool:
        until = self._until.get(nonce)
        return until is not None and until >= now_ms

    def add(self, nonce: str, ts_ms: int, now_ms: int) -> None:
        entries = self._until
        stale = []
        for old, until in itertools.islice(entries.items(), 64):  # amortised: a few per insert
            if until >= now_ms:
                break
            stale.append(old)
        for old in stale:
            del entries[old]
        entries.pop(nonce, None)
        entries[nonce] = until = ts_ms + MAX_SKEW_MS
        if self.store is not None:
            self.store.append(nonce, until)
        while len(entries) > self.max_entries:
            del entries[next(iter(entries))]


class Verifier:
    """Checks the signature headers of one request against the configured key and secret."""

    def __init__(self, app_key: str, app_secret: str, cache: ReplayCache) -> None:
        self._key = app_key.encode()
        self._secret = app_secret
        self.cache = cache

    def check(self, headers: Headers, now_ms: int) -> str:
        """Return the nonce if the request is properly signed (call :meth:`accept` with it once
        the request is going to be served); raise :class:`AuthError` otherwise."""
        key = header(headers, "App-Key")
        if key is None or not hmac.compare_digest(_ascii(key.strip()), self._key):
            raise AuthError(APP_KEY_INVALID, "App-Key is missing or unknown")
        nonce = header(headers, "Nonce")
        raw_ts = header(headers, "Timestamp")
        given = header(headers, "Signature")
        if nonce is None or raw_ts is None or given is None:
            raise AuthError(SIGNATURE_INVALID,
                            "Nonce, Timestamp and Signature headers are required")
        if not 1 <= len(nonce) <= MAX_NONCE_LEN:
            raise AuthError(SIGNATURE_INVALID, f"Nonce must be 1-{MAX_NONCE_LEN} characters")
        ts = timestamp_ms(raw_ts)
        if ts is None:
            raise AuthError(SIGNATURE_INVALID, "Timestamp must be seconds or milliseconds")
        if abs(ts - now_ms) > MAX_SKEW_MS:
            raise AuthError(SIGNATURE_INVALID, "Timestamp is more than 300 s off the server clock")
        expected = signature(self._secret, nonce, raw_ts)
        if not hmac.compare_digest(_ascii(given.strip().lower()), expected.encode()):
            raise AuthError(SIGNATURE_INVALID, "Signature does not match")
        if self.cache.seen(nonce, now_ms):
            raise AuthError(SIGNATURE_INVALID, "Nonce was already used")
        return nonce

    def accept(self, headers: Headers, nonce: str, now_ms: int) -> None:
        ts = timestamp_ms(header(headers, "Timestamp") or "")
        self.cache.add(nonce, ts if ts is not None else now_ms, now_ms)


class RateLimiter:
    """A token bucket per route: ``rate`` requests per second, bursts of up to ``rate``."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}  # route → (tokens, at)

    def allow(self, route: str, now_s: float) -> bool:
        tokens, at = self._buckets.get(route, (float(self.rate), now_s))
        tokens = min(float(self.rate), tokens + (now_s - at) * self.rate)
        if tokens < 1.0:
            self._buckets[route] = (tokens, now_s)
            return False
        self._buckets[route] = (tokens - 1.0, now_s)
        return True


def request_id(headers: Headers) -> str | None:
    """``X-Request-ID`` if it is fit to echo: 1-36 printable ASCII characters."""
    value = headers.get("X-Request-ID")
    if value and len(value) <= MAX_REQUEST_ID_LEN and value.isascii() and value.isprintable():
        return value
    return None


def _ascii(text: str) -> bytes:
    # Header values arrive latin-1 decoded; anything else cannot match and must not raise.
    return text.encode("latin-1", "replace")
