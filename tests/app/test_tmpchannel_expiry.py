"""Temporary channels expire on the clock, tested with a hand-moved clock: no sleeps.

Over HTTP the minimum TTL is 60 s; here the Roster's clock is moved past it instead.
"""

from __future__ import annotations

from pathlib import Path

from tests.app.conftest import NOW, Clock, in_process


async def test_ttl_expiry_purge_and_restart(tmp_path: Path) -> None:
    clock = Clock(NOW)
    check = {"from_uid": "alice", "channel_id": "tmp1", "channel_type": 8}
    async with in_process(tmp_path, clock) as rig:
        status, _ = await rig.json("/tmpchannel/subscriber_set",
                                   {"channel_id": "tmp1", "uids": ["alice"], "ttl": 60})
        assert status == 200
        status, _ = await rig.json("/tmpchannel/subscriber_set",
                                   {"channel_id": "tmp2", "uids": ["bob"]})  # default 1200 s
        assert status == 200
        assert (await rig.json("/permission/check", check))[1]["reason"] == 1

        clock.now = NOW + 59_999
        assert (await rig.json("/permission/check", check))[1]["reason"] == 1
        clock.now = NOW + 60_000  # expired: behaves as missing everywhere
        assert (await rig.json("/permission/check", check))[1]["reason"] == 5
        r = await rig.client.get("/channel/info", query_string={"channel_id": "tmp1",
                                                                "channel_type": 8})
        assert r.status_code == 404
        status, body = await rig.json("/channel/whitelist_add",
                                      {"channel_id": "tmp1", "channel_type": 8, "uids": ["a"]})
        assert (status, body["code"]) == (404, "channel_not_found")

        lsn = rig.roster.wal.last_lsn
        assert await rig.roster.purge_expired() == 1  # tmp1 only; tmp2 lives 1200 s
        assert rig.roster.wal.last_lsn == lsn + 1  # the purge is itself logged
        assert ("tmp1", 8) not in rig.roster.state.channels
        assert ("tmp2", 8) in rig.roster.state.channels

    # after a restart the purge is replayed; the unexpired channel is still there
    async with in_process(tmp_path, Clock(NOW + 60_000)) as rig:
        assert ("tmp1", 8) not in rig.roster.state.channels
        other = {"from_uid": "bob", "channel_id": "tmp2", "channel_type": 8}
        assert (await rig.json("/permission/check", other))[1]["reason"] == 1
        # a new subscriber_set on the expired id starts a fresh channel
        status, _ = await rig.json("/tmpchannel/subscriber_set",
                                   {"channel_id": "tmp1", "uids": ["carol"]})
        assert status == 200
        assert (await rig.json("/permission/check", check))[1]["reason"] == 3
