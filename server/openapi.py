"""``/openapi.json`` and ``/docs``, built from the same ``Field`` tables the routes validate with.

Each route module keeps a ``DOCS`` list of ``RouteDoc`` next to its handlers; the request schema of
every entry is ``schema.describe(fields)`` of the very tuple the handler passes to ``parse``, so
documentation and validation cannot drift. ``tests`` check that every registered route is
documented and that a fuzzer driven by this document finds no 5xx.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from server.http import OPEN_PATHS, QUERY_TOKEN_PATHS
from server.schema import Field, describe
from server.version import version

ERROR = {
    "type": "object",
    "required": ["status", "msg", "code"],
    "properties": {"status": {"type": "integer"}, "msg": {"type": "string"},
                   "code": {"type": "string"}},
}
OK = {"type": "object", "required": ["status"],
      "properties": {"status": {"type": "string", "enum": ["ok"]}}}
UID_ARRAY = {"type": "array", "items": {"type": "string"}}

_ERROR_TEXT = {
    400: "invalid request (the msg names the field; code is stable)",
    403: "missing or wrong manager token",
    404: "channel does not exist",
    413: "body larger than max_body_bytes",
    415: "body is not JSON",
    503: "the write-ahead log cannot be written; the server is stopping",
    401: "RongCloud signature refused: 1001 unknown App-Key, 1004 bad, stale or replayed signature",
    429: "RongCloud rate limit (1008)",
}


@dataclass(frozen=True)
class RouteDoc:
    method: Literal["GET", "POST"]
    path: str
    summary: str
    #: the validated request: JSON body fields (POST) or query fields (GET); None = no input
    fields: Sequence[Field] | None = None
    response: dict[str, Any] = field(default_factory=lambda: OK)
    errors: tuple[int, ...] = (400, 403, 413, 415, 503)
    #: a request body that is not described by ``fields`` (e.g. a bare JSON array)
    body_schema: dict[str, Any] | None = None
    tag: str = "channels"
    content_type: str = "application/json"
    response_type: str = "application/json"
    #: the error body, when not the JSON API's envelope (the RongCloud routes answer {"code"})
    error_schema: dict[str, Any] | None = None


def _operation(doc: RouteDoc) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": doc.summary, "tags": [doc.tag],
                          "operationId": doc.method.lower() + doc.path.replace("/", "_")
                          .replace(".", "_")}
    if doc.method == "GET" and doc.fields:
        schema = describe(doc.fields)
        required = set(schema["required"])
        op["parameters"] = [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()
        ]
    elif doc.method == "POST" and (doc.fields is not None or doc.body_schema is not None):
        body = doc.body_schema if doc.body_schema is not None else describe(doc.fields or ())
        op["requestBody"] = {"required": True, "content": {doc.content_type: {"schema": body}}}
    responses: dict[str, Any] = {
        "200": {"description": "success",
                "content": {doc.response_type: {"schema": doc.response}}},
    }
    for status in doc.errors:
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "error"),
            "content": {"application/json": {"schema": doc.error_schema or ERROR}},
        }
    op["responses"] = responses
    return op


def build(docs: Iterable[RouteDoc], token_required: bool) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for doc in docs:
        op = _operation(doc)
        if token_required and doc.tag not in ("health", "rongcloud") \
                and doc.path not in OPEN_PATHS:
            op["security"] = [{"managerToken": []}]
            if doc.path in QUERY_TOKEN_PATHS:
                op["security"].append({"managerTokenQuery": []})
        paths.setdefault(doc.path, {})[doc.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Roster",
            "version": version(),
            "description": "Channel-state and presence server: WuKongIM-compatible channel API, "
                           "RongCloud-compatible subscriptions, durable msgpack write-ahead log.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "managerToken": {"type": "apiKey", "in": "header", "name": "token"},
                # only where a browser cannot send headers (EventSource); never logged
                "managerTokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }


def render_html(spec: dict[str, Any]) -> str:
    """A self-contained page (no CDN: edge boxes are often offline) listing every operation."""
    esc = html.escape
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = op.get("parameters") or []
            body = (op.get("requestBody") or {}).get("content", {})
            schema = next(iter(body.values()))["schema"] if body else None
            inputs = ", ".join(
                f"{p['name']}{'' if p['required'] else '?'}" for p in params
            ) or (", ".join(
                f"{k}{'' if k in schema.get('required', []) else '?'}"
                for k in schema.get("properties", {})
            ) if schema and schema.get("type") == "object" else
                (json.dumps(schema) if schema else ""))
            statuses = " ".join(op["responses"])
            rows.append(
                f"<tr><td><code>{esc(method.upper())}</code></td><td><code>{esc(path)}</code>"
                f"</td><td>{esc(op['summary'])}</td><td><code>{esc(inputs)}</code></td>"
                f"<td>{esc(statuses)}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Roster API</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>Roster API</h1><p>{esc(spec['info']['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Errors are "
        "<code>{\"status\",\"msg\",\"code\"}</code>.</p>"
        "<table><tr><th>method</th><th>path</th><th>what</th><th>input (? = optional)</th>"
        f"<th>statuses</th></tr>{''.join(rows)}</table></body></html>"
    )
