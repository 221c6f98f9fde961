"""RongCloud signatures, replay cache and rate limiter (synchronous, explicit times)."""

from __future__ import annotations

import hashlib

import pytest

from server.rcsign import (
    APP_KEY_INVALID,
    SIGNATURE_INVALID,
    AuthError,
    RateLimiter,
    ReplayCache,
    Verifier,
    request_id,
    signature,
    timestamp_ms,
)

KEY, SECRET = "uwd1c0sxdlx2", "secret-of-the-app"
NOW_MS = 1_408_710_653_491


def test_signature_is_lowercase_hex_sha1_of_secret_nonce_timestamp() -> None:
    # The example request of RongCloud's /user/subscribe/set.json page (its secret is not
    # published, so only the rule is checked).
    expected = hashlib.sha1(b"secret-of-the-app143141408710653491").hexdigest()
    assert signature(SECRET, "14314", "1408710653491") == expected
    assert expected == expected.lower() and len(expected) == 40


@pytest.mark.parametrize(("raw", "ms"), [
    ("1408710653", 1_408_710_653_000),  # seconds (the SDKs)
    ("1408710653491", 1_408_710_653_491),  # milliseconds (the documentation)
    (" 1408710653 ", 1_408_710_653_000),
    ("99999999999", 99_999_999_999_000),  # below 10^11: seconds
    ("100000000000", 100_000_000_000),  # 10^11 and above: milliseconds
    ("", None), ("-5", None), ("1.5", None), ("abc", None), ("1" * 17, None), ("١٢٣", None),
])
def test_timestamp_seconds_or_milliseconds(raw: str, ms: int | None) -> None:
    assert timestamp_ms(raw) == ms


def headers(nonce: str = "14314", ts: str = str(NOW_MS), key: str = KEY,
            sig: str | None = None, prefix: str = "") -> dict[str, str]:
    return {f"{prefix}App-Key": key, f"{prefix}Nonce": nonce, f"{prefix}Timestamp": ts,
            f"{prefix}Signature": sig if sig is not None else signature(SECRET, nonce, ts)}


def verifier() -> Verifier:
    return Verifier(KEY, SECRET, ReplayCache(100))


def refused(v: Verifier, h: dict[str, str], now: int = NOW_MS) -> int:
    with pytest.raises(AuthError) as info:
        v.check(h, now)
    return info.value.code


def test_good_signatures_pass_with_either_header_form_and_any_case() -> None:
    v = verifier()
    assert v.check(headers(), NOW_MS) == "14314"
    assert v.check(headers(prefix="RC-"), NOW_MS) == "14314"
    sig = signature(SECRET, "n2", str(NOW_MS // 1000))
    assert v.check(headers("n2", str(NOW_MS // 1000), sig=sig.upper()), NOW_MS) == "n2"


def test_app_key_and_signature_refusals() -> None:
    v = verifier()
    assert refused(v, headers(key="other")) == APP_KEY_INVALID
    assert refused(v, {k: x for k, x in headers().items() if k != "App-Key"}) == APP_KEY_INVALID
    assert refused(v, headers(sig="0" * 40)) == SIGNATURE_INVALID
    assert refused(v, headers(sig="é" * 40)) == SIGNATURE_INVALID  # never a crash
    assert refused(v, {k: x for k, x in headers().items() if k != "Nonce"}) == SIGNATURE_INVALID
    assert refused(v, headers(nonce="")) == SIGNATURE_INVALID
    assert refused(v, headers(nonce="n" * 65)) == SIGNATURE_INVALID
    assert v.check(headers(nonce="n" * 64), NOW_MS)
    assert refused(v, headers(ts="yesterday")) == SIGNATURE_INVALID


def test_timestamp_skew_limit_is_300_seconds_either_way() -> None:
    v = verifier()
    for offset, ok in ((300_000, True), (-300_000, True), (300_001, False), (-300_001, False)):
        h = headers(nonce=f"n{offset}", ts=str(NOW_MS + offset))
        if ok:
            v.check(h, NOW_MS)
        else:
            assert refused(v, h) == SIGNATURE_INVALID


def test_a_nonce_is_refused_again_while_its_timestamp_is_acceptable() -> None:
    v = verifier()
    h = headers()
    nonce = v.check(h, NOW_MS)
    v.accept(h, nonce, NOW_MS)
    assert refused(v, h, NOW_MS + 1) == SIGNATURE_INVALID
    # same nonce, new timestamp and signature: still a reuse inside the window
    assert refused(v, headers(ts=str(NOW_MS + 1000)), NOW_MS + 1000) == SIGNATURE_INVALID
    # once the timestamp is too old the cache may forget it: the skew check refuses it anyway
    assert refused(v, h, NOW_MS + 300_001) == SIGNATURE_INVALID
    assert not v.cache.seen(nonce, NOW_MS + 300_001)


def test_checking_alone_does_not_burn_a_nonce() -> None:
    """A request refused later (rate limit) leaves its nonce usable for the retry."""
    v = verifier()
    v.check(headers(), NOW_MS)
    assert v.check(headers(), NOW_MS) == "14314"


def test_replay_cache_is_bounded_and_drops_expired_entries() -> None:
    cache = ReplayCache(max_entries=3)
    for i in range(5):
        cache.add(f"n{i}", NOW_MS, NOW_MS)
    assert len(cache) == 3 and not cache.seen("n0", NOW_MS) and cache.seen("n4", NOW_MS)
    cache.add("late", NOW_MS + 400_000, NOW_MS + 400_000)  # the old ones expired: dropped
    assert len(cache) == 1


def test_rate_limiter_is_a_token_bucket_per_route() -> None:
    limiter = RateLimiter(3)
    assert [limiter.allow("/a", 10.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("/b", 10.0)  # routes are counted apart
    assert not limiter.allow("/a", 10.2)
    assert limiter.allow("/a", 10.34)  # one token back after 1/3 s
    assert not limiter.allow("/a", 10.34)
    assert [limiter.allow("/a", 20.0) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(("given", "echoed"), [
    ("abc-123", "abc-123"), ("x" * 36, "x" * 36), ("x" * 37, None), ("", None),
    ("a\tb", None), ("ü", None),
])
def test_request_id_is_echoed_only_when_fit(given: str, echoed: str | None) -> None:
    assert request_id({"X-Request-ID": given}) == echoed
