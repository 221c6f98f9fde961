"""``X-Min-LSN: n``: a read answered only once record ``n`` is applied on this node.

Read-your-writes on any node: a client that wrote through the leader got ``X-LSN: n`` and sends
it with its next read to a follower, which waits until it has applied record ``n`` (at most
``MIN_LSN_WAIT_S``) and then answers; past the wait it answers 503 ``lsn_timeout``. Works the same
on one node, where every acknowledged LSN is already applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from server.errors import ApiError, BadRequest, Unavailable
from server.http import error_body
from server.service import Roster

#: how long a read waits for its X-Min-LSN record before 503
MIN_LSN_WAIT_S: Final = 1.0
HEADER: Final = b"x-min-lsn"
#: more digits than any LSN a log can reach; bounds int() on hostile input
_MAX_DIGITS: Final = 19

ASGIApp = Callable[[dict[str, Any], Any, Any], Any]


def parse_min_lsn(raw: bytes) -> int:
    """An LSN as sent: ASCII digits only (no sign, space or underscore)."""
    text = raw.strip()
    if not text or len(text) > _MAX_DIGITS or not text.isdigit() or not text.isascii():
        raise BadRequest("X-Min-LSN must be a non-negative integer", "invalid_request")
    return int(text)


def min_lsn(roster: Roster, app: ASGIApp) -> ASGIApp:
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == HEADER:
                    try:
                        lsn = parse_min_lsn(value)
                        if not await roster.wait_applied(lsn, MIN_LSN_WAIT_S):
                            raise Unavailable(f"record {lsn} was not applied on this node within "
                                              f"{MIN_LSN_WAIT_S:g} s (applied: "
                                              f"{roster.applied_lsn})", "lsn_timeout")
                    except ApiError as err:
                        await _refuse(err, send)
                        return
                    break
        await app(scope, receive, send)

    return asgi


async def _refuse(err: ApiError, send: Any) -> None:
    # Answer without reading the body, like every refusal: the edge (server/edge.py) closes the
    # connection when an answer goes out before the body has arrived, so keep-alive stays in
    # step and a client cannot make us read a body without end.
    body = error_body(err)
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
