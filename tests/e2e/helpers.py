"""Shared helpers of the end-to-end suite: they speak HTTP to a real ``roster serve`` only.

Nothing here imports ``server``: the suite checks the contract of SPEC §1-5 from outside, so the
reason names and error shapes are written down again here on purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TOKEN
from tests.server_process import ServerProcess

JSON_CT = "application/json"
#: What ``curl -d`` sends when no ``-H 'Content-Type: …'`` is given (seed 001's short examples).
CURL_FORM_CT = "application/x-www-form-urlencoded"
MAX_ID = 64
MAX_UIDS = 10_000
MAX_BODY = 4 * 1024 * 1024

#: WuKongIM reason codes of SPEC §5.
REASONS = {
    1: "Success",
    3: "SubscriberNotExist",
    4: "InBlacklist",
    5: "ChannelNotExist",
    13: "NotInWhitelist",
    19: "Ban",
    24: "Disband",
    25: "SendBan",
}
FLAGS = ("ban", "disband", "send_ban", "allow_stranger", "large")
INFO_KEYS = {"channel_id", "channel_type", *FLAGS, "subscriber_count", "whitelist_count",
             "blacklist_count", "created_at", "updated_at"}


def new_id(prefix: str = "x") -> str:
    """A fresh id, valid as a channel id and as a uid, unique across the session."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _no_server_errors(response: httpx.Response) -> None:
    # SPEC §1: "A 500 is a bug." Nothing in this suite may ever see a 5xx.
    if response.status_code >= 500:
        response.read()
        req = response.request
        raise AssertionError(
            f"{req.method} {req.url} answered {response.status_code}: {response.text[:500]}"
        )


def guard(client: httpx.Client) -> httpx.Client:
    """Make every response of ``client`` fail the test if it is a 5xx."""
    client.event_hooks["response"] = [*client.event_hooks["response"], _no_server_errors]
    return client


@contextmanager
def serving(data_dir: Path, *args: str, token: str | None = TOKEN
            ) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """A fresh server of its own on ``data_dir`` and a guarded client for it."""
    extra = ("--token", token) if token else ()
    with ServerProcess(data_dir, *extra, *args) as proc, guard(proc.client(token)) as c:
        yield proc, c


# -- requests ---------------------------------------------------------------------------------

def post_raw(c: httpx.Client, path: str, content: bytes | str,
             content_type: str | None = JSON_CT) -> httpx.Response:
    headers = {"content-type": content_type} if content_type is not None else {}
    if isinstance(content, str):
        content = content.encode()
    return c.post(path, content=content, headers=headers)


def assert_ok(r: httpx.Response) -> None:
    assert r.status_code == 200, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    assert r.json() == {"status": "ok"}


def ok(c: httpx.Client, path: str, body: Any) -> None:
    """POST ``body`` as JSON and require ``{"status":"ok"}``."""
    assert_ok(c.post(path, json=body))


def assert_error(r: httpx.Response, status: int, code: str | None = None, *,
                 names: str | None = None, msg: str | None = None) -> dict[str, Any]:
    """The error envelope of SPEC §1, with the given status (and code / field name / message)."""
    assert r.status_code == status, (
        f"{r.request.method} {r.request.url}: expected {status} {code}, got {r.status_code} "
        f"{r.text[:300]}"
    )
    assert r.headers["content-type"].startswith(JSON_CT), r.headers["content-type"]
    body = r.json()
    assert isinstance(body, dict), body
    assert body["status"] == status, body
    assert isinstance(body["msg"], str) and body["msg"].strip(), body
    if code is not None:
        assert body.get("code") == code, body
    if names is not None:
        assert names in body["msg"], f"{names!r} not named in {body['msg']!r}"
    if msg is not None:
        assert body["msg"] == msg, body
    return body


# -- reading state back -----------------------------------------------------------------------

def q(cid: str, ctype: int, **extra: Any) -> dict[str, Any]:
    return {"channel_id": cid, "channel_type": ctype, **extra}


def info(c: httpx.Client, cid: str, ctype: int) -> dict[str, Any] | None:
    """GET /channel/info, or None on 404."""
    r = c.get("/channel/info", params=q(cid, ctype))
    if r.status_code == 404:
        assert_error(r, 404, "channel_not_found")
        return None
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    assert set(data) == INFO_KEYS, data
    return data


def subscribers(c: httpx.Client, cid: str, ctype: int) -> list[str]:
    r = c.get("/channel/subscribers", params=q(cid, ctype))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None, body
    uids: list[str] = body["uids"]
    return uids


def get_list(c: httpx.Client, name: str, cid: str, ctype: int) -> list[str]:
    r = c.get(f"/channel/{name}", params=q(cid, ctype))
    assert r.status_code == 200, r.text
    uids: list[str] = r.json()
    assert uids == sorted(uids)
    return uids


def system_uids(c: httpx.Client) -> list[str]:
    r = c.get("/user/systemuids")
    assert r.status_code == 200, r.text
    uids: list[str] = r.json()
    assert uids == sorted(uids)
    return uids


def snapshot(c: httpx.Client, cid: str, ctype: int) -> dict[str, Any] | None:
    """Everything readable about one channel (None if it does not exist)."""
    data = info(c, cid, ctype)
    if data is None:
        return None
    out: dict[str, Any] = {"info": data}
    if ctype != 1:
        out["subscribers"] = subscribers(c, cid, ctype)
    out["whitelist"] = get_list(c, "whitelist", cid, ctype)
    out["blacklist"] = get_list(c, "blacklist", cid, ctype)
    return out


def check(c: httpx.Client, from_uid: str, cid: str, ctype: int) -> int:
    """POST /permission/check; checks the answer's shape and returns the reason code."""
    r = c.post("/permission/check", json={"from_uid": from_uid, "channel_id": cid,
                                           "channel_type": ctype})
    assert r.status_code == 200, r.text
    return reason_of(r.json())


def reason_of(answer: dict[str, Any]) -> int:
    assert set(answer) == {"allowed", "reason", "reason_name"}, answer
    reason = answer["reason"]
    assert type(reason) is int and reason in REASONS, answer
    assert answer["reason_name"] == REASONS[reason], answer
    assert answer["allowed"] is (reason == 1), answer
    return reason
