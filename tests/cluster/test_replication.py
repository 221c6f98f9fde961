"""Three Roster nodes on a three-server JetStream cluster: one leader, followers that serve reads,
redirect writes and give read-your-writes through X-Min-LSN / WAITLSN."""

from __future__ import annotations

import uuid

import httpx
import redis

from tests.cluster.helpers import HTTP, NatsCluster, RosterNode, leader_of

Shared = tuple[NatsCluster, list[RosterNode]]


def fresh(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def followers(nodes: list[RosterNode], leader: RosterNode) -> list[RosterNode]:
    return [n for n in nodes if n is not leader]


def test_one_leader_and_every_node_names_it(shared: Shared) -> None:
    _, nodes = shared
    leader = leader_of(nodes)
    roles = sorted(str(n.role()) for n in nodes)
    assert roles == ["follower", "follower", "leader"]
    for n in nodes:
        h = n.health()
        assert h is not None
        assert h["leader"] == leader.url
        assert h["node_id"] == n.node_id


def test_follower_reads_match_the_leader(shared: Shared) -> None:
    _, nodes = shared
    leader = leader_of(nodes)
    cid = fresh("g")
    with httpx.Client(base_url=leader.url) as c:
        assert c.post("/channel", json={"channel_id": cid, "channel_type": 2}).status_code == 200
        r = c.post("/channel/whitelist_add",
                   json={"channel_id": cid, "channel_type": 2, "uids": ["a", "b"]})
        assert r.status_code == 200
        lsn = r.headers["x-lsn"]
        r = c.post("/channel/blacklist_add",
                   json={"channel_id": cid, "channel_type": 2, "uids": ["b"]})
        lsn = r.headers["x-lsn"]
        want_info = c.get("/channel/info", params={"channel_id": cid, "channel_type": 2}).json()
    query = {"channel_id": cid, "channel_type": 2}
    for n in followers(nodes, leader):
        with httpx.Client(base_url=n.url, headers={"X-Min-LSN": lsn}) as c:
            assert c.get("/channel/info", params=query).json() == want_info
            assert sorted(c.get("/channel/whitelist", params=query).json()) == ["a", "b"]
            checked = c.post("/permission/check",
                             json={"channel_id": cid, "channel_type": 2, "from_uid": "b"})
            assert checked.status_code == 200  # a POST that only reads is served here
            assert checked.json() == c.post(
                leader.url + "/permission/check",
                json={"channel_id": cid, "channel_type": 2, "from_uid": "b"}).json()


def test_a_write_to_a_follower_is_redirected_to_the_leader(shared: Shared) -> None:
    _, nodes = shared
    leader = leader_of(nodes)
    follower = followers(nodes, leader)[0]
    cid = fresh("g")
    r = HTTP.post(follower.url + "/channel?x=1", json={"channel_id": cid, "channel_type": 2})
    assert r.status_code == 307
    assert r.headers["location"] == leader.url + "/channel?x=1"
    assert r.json() == {"status": 307, "msg": "not the leader", "code": "not_leader",
                        "leader": leader.url}
    # A client that follows redirects lands the write on the leader, body and all.
    with httpx.Client(follow_redirects=True) as c:
        r = c.post(follower.url + "/channel", json={"channel_id": cid, "channel_type": 2})
        assert r.status_code == 200
        assert str(r.url).startswith(leader.url)
    assert follower.resp is not None and leader.resp is not None
    with redis.Redis(*follower.resp, socket_timeout=10) as rc:
        try:
            rc.execute_command("WL.ADD", cid, 2, "u1")
            raise AssertionError("a follower accepted a RESP write")
        except redis.exceptions.ReadOnlyError as exc:
            assert str(exc) == f"not the leader; leader at {leader.resp[0]}:{leader.resp[1]}"
        # reads are served: u1 is no subscriber of the channel (reason 3)
        assert rc.execute_command("CHECK", "u1", cid, 2) == 3


def test_x_min_lsn_and_waitlsn_give_read_your_writes_on_a_follower(shared: Shared) -> None:
    _, nodes = shared
    leader = leader_of(nodes)
    follower = followers(nodes, leader)[1]
    cid = fresh("g")
    assert leader.resp is not None and follower.resp is not None
    assert HTTP.post(leader.url + "/channel",
                      json={"channel_id": cid, "channel_type": 2}).status_code == 200
    with redis.Redis(*leader.resp, socket_timeout=10) as lead, \
            redis.Redis(*follower.resp, socket_timeout=10) as follow:
        for i in range(20):
            r = HTTP.post(leader.url + "/channel/whitelist_add",
                           json={"channel_id": cid, "channel_type": 2, "uids": [f"u{i}"]})
            assert r.status_code == 200
            lsn = int(r.headers["x-lsn"])
            got = HTTP.get(follower.url + "/channel/whitelist",
                            params={"channel_id": cid, "channel_type": 2},
                            headers={"X-Min-LSN": str(lsn)})
            assert f"u{i}" in got.json()
            assert follow.execute_command("WAITLSN", lsn, 1000) >= lsn
        assert lead.execute_command("WAITLSN", 0, 0) >= lsn
        # A record nobody wrote yet: the wait is bounded and says so.
        ahead = lsn + 1_000_000
        try:
            follow.execute_command("WAITLSN", ahead, 50)
            raise AssertionError("WAITLSN past the stream's end answered")
        except redis.exceptions.ResponseError as exc:
            assert str(exc).startswith(f"TIMEOUT record {ahead} not applied within 50 ms")
    r = HTTP.get(follower.url + "/channel/whitelist",
                  params={"channel_id": cid, "channel_type": 2},
                  headers={"X-Min-LSN": str(ahead)})
    assert r.status_code == 503
    assert r.json()["code"] == "lsn_timeout"
    r = HTTP.get(follower.url + "/health", headers={"X-Min-LSN": "-1"})
    assert r.status_code == 400


def test_metrics_say_role_and_lag(shared: Shared) -> None:
    _, nodes = shared
    leader = leader_of(nodes)
    text = HTTP.get(leader.url + "/metrics").text
    assert 'roster_cluster_role{role="leader"} 1.0' in text
    assert "roster_cluster_replication_lag 0.0" in text
    assert "roster_cluster_lease_renewals_total" in text
    text = HTTP.get(followers(nodes, leader)[0].url + "/metrics").text
    assert 'roster_cluster_role{role="follower"} 1.0' in text
