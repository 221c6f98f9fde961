"""Every error the JSON API can answer with, in one place.

Each is an ``ApiError`` carrying the HTTP status, a stable snake_case ``code`` and an English
sentence; HTTP answers ``{"status": <http status>, "msg": ..., "code": ...}`` (``server/http.py``)
and the Redis-protocol lane ``-ERR <code> <msg>`` (``server/resp.py``).

    ApiError
    ├── BadRequest (400)            invalid_json, invalid_body, field_missing, field_type,
    │                               flag_invalid, value_out_of_range, channel_id_empty,
    │                               channel_id_too_long, channel_id_special_char,
    │                               channel_type_invalid, uid_invalid, uids_empty,
    │                               too_many_uids, too_many_checks, events_empty,
    │                               too_many_events,
    │                               person_channel_unsupported, temp_subscriber_unsupported,
    │                               temp_channel_unsupported
    ├── Forbidden (403)             no_permission
    ├── NotFound (404)              channel_not_found, route_not_found
    ├── MethodNotAllowed (405)      method_not_allowed
    ├── RequestTimeout (408)        request_timeout (headers or body not in within the
    │                               --http-header-timeout / --http-body-timeout; the
    │                               connection closes: server/edge.py)
    ├── PayloadTooLarge (413)       body_too_large
    ├── UnsupportedMediaType (415)  not_json
    ├── NotLeader (307)             not_leader (cluster mode: a write sent to a follower;
    │                               ``Location`` and ``leader`` name the leader)
    └── Unavailable (503)           log_unavailable (the write-ahead log failed; the server is
                                    stopping and nothing un-logged was acknowledged),
                                    snapshot_failed (the snapshot file could not be written;
                                    the log is intact and the server keeps serving),
                                    no_leader (cluster mode: no leader is known yet),
                                    not_leader (this node lost the lead before the write was
                                    stored: its outcome is unknown), lsn_timeout (the record
                                    asked for by X-Min-LSN / WAITLSN was not applied in time)

A 500 is always a bug: the app logs it and answers ``internal_error``.
"""

from __future__ import annotations


class ApiError(Exception):
    status = 500
    default_code = "internal_error"

    def __init__(self, msg: str, code: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = code or self.default_code

    def body(self) -> dict[str, object]:
        return {"status": self.status, "msg": self.msg, "code": self.code}


class BadRequest(ApiError):
    status = 400
    default_code = "invalid_request"


class Forbidden(ApiError):
    status = 403
    default_code = "no_permission"


class NotFound(ApiError):
    status = 404
    default_code = "channel_not_found"


class MethodNotAllowed(ApiError):
    status = 405
    default_code = "method_not_allowed"


class RequestTimeout(ApiError):
    status = 408
    default_code = "request_timeout"


class PayloadTooLarge(ApiError):
    status = 413
    default_code = "body_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    default_code = "not_json"


class NotLeader(ApiError):
    """A write sent to a follower: HTTP answers 307 to the leader, RESP ``-READONLY``."""

    status = 307
    default_code = "not_leader"

    def __init__(self, leader_url: str, leader_resp: str | None) -> None:
        super().__init__("not the leader")
        #: the leader's HTTP base URL; the request's path and query are appended for Location
        self.leader_url = leader_url
        #: the leader's RESP ``host:port`` (None when it has no RESP lane)
        self.leader_resp = leader_resp

    def body(self) -> dict[str, object]:
        return {**super().body(), "leader": self.leader_url}


class Unavailable(ApiError):
    status = 503
    default_code = "log_unavailable"


def channel_not_found(channel_id: str, channel_type: int) -> NotFound:
    return NotFound(f"channel {channel_id!r} of type {channel_type} does not exist")
