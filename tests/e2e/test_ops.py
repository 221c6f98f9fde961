"""Operating Roster: /metrics, /openapi.json, /docs, and that the docs cover every route."""

from __future__ import annotations

import re

import httpx

from server.app import route_docs
from tests.conftest import TOKEN
from tests.server_process import ServerProcess


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    raise AssertionError(f"no sample {name}{labels}")


def test_metrics_move_under_load(client: httpx.Client) -> None:
    before = client.get("/metrics").text
    sent = 20
    for i in range(sent):
        r = client.post("/channel", json={"channel_id": f"ops_metrics_{i}", "channel_type": 2,
                                          "subscribers": ["a", "b"]})
        assert r.status_code == 200
    client.post("/channel/whitelist_add", json={"channel_id": "ops_missing", "channel_type": 2,
                                                "uids": ["a"]})
    after = client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def delta(name: str, **labels: str) -> float:
        try:
            old = _sample(before, name, **labels)
        except AssertionError:
            old = 0.0
        return _sample(text, name, **labels) - old

    assert delta("roster_http_requests_total", route="/channel", method="POST",
                 status="200") == sent
    assert delta("roster_http_requests_total", route="/channel/whitelist_add", method="POST",
                 status="404") == 1
    assert delta("roster_http_request_duration_seconds_count", route="/channel") == sent
    assert delta("roster_wal_records_total") >= sent
    assert delta("roster_wal_fsyncs_total") >= 1  # the shared server runs --fsync always
    assert delta("roster_channels") >= sent
    assert delta("roster_memberships", list="subscribers") >= 2 * sent
    assert _sample(text, "roster_wal_durable_lsn") == client.get("/health").json()["lsn"]
    for name in ("roster_online_users", "roster_subscriptions", "roster_events_published_total",
                 "roster_event_streams"):
        assert _sample(text, name) >= 0


def test_metrics_follow_the_token_rule_and_the_docs_are_open(
        shared_server: ServerProcess) -> None:
    for path in ("/metrics", f"/metrics?token={TOKEN}", "/admin/snapshot"):
        r = httpx.request("POST" if path.startswith("/admin") else "GET", shared_server.url + path)
        assert r.status_code == 403, path  # ?token= is for /events only
        assert r.json()["msg"] == "no management permission"
    # The description holds no data, and a browser cannot send the header.
    for path in ("/health", "/openapi.json", "/docs"):
        assert httpx.get(shared_server.url + path).status_code == 200, path


def test_events_take_the_token_in_the_query(shared_server: ServerProcess) -> None:
    """EventSource cannot send headers: /events accepts ?token=, and only the right one."""
    with httpx.stream("GET", f"{shared_server.url}/events?token={TOKEN}") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
    for query in ("?token=wrong", "?token=", ""):
        r = httpx.get(f"{shared_server.url}/events{query}")
        assert r.status_code == 403, query


def test_openapi_documents_exactly_the_registered_routes(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == {(d.method, d.path) for d in route_docs()}
    # every documented route answers something other than 404/405 for its method
    for method, path in documented:
        if path == "/events":  # an endless Server-Sent Events stream: look at the status only
            with client.stream(method, path) as r:
                assert r.status_code == 200
            continue
        r = client.request(method, path, json={} if method == "POST" else None)
        assert r.status_code not in (404, 405) or r.json().get("code") == "channel_not_found", \
            (method, path, r.status_code)
    wl = spec["paths"]["/channel/whitelist_set"]["post"]
    body = wl["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"channel_id", "channel_type", "uids"}  # never wiped by a typo
    assert {"200", "400", "403", "404"} <= set(wl["responses"])


def test_docs_page_renders_every_route(client: httpx.Client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for doc in route_docs():
        assert f"<code>{doc.path}</code>" in r.text
    # a JSON input (the uid array of /user/onlinestatus) is escaped once, not twice
    assert "&amp;quot;" not in r.text and "&quot;type&quot;" in r.text


def test_openapi_marks_which_routes_need_the_token(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "security" not in paths["/docs"]["get"]
    assert "security" not in paths["/openapi.json"]["get"]
    assert "security" not in paths["/health"]["get"]
    assert paths["/metrics"]["get"]["security"] == [{"managerToken": []}]
    assert {"managerTokenQuery": []} in paths["/events"]["get"]["security"]
