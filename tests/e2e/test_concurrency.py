"""Atomicity seen from outside: concurrent requests on one channel each apply entirely
or not at all (a *_set is one step, never a clear followed by an add)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, get_list, ok, subscribers
from tests.server_process import ServerProcess

THREADS = 8
ROUNDS = 6


def _run(shared_server: ServerProcess, jobs: list[tuple[str, dict[str, object]]]) -> None:
    def one(job: tuple[str, dict[str, object]]) -> int:
        with client_for(shared_server.url, TOKEN) as c:
            return c.post(job[0], json=job[1]).status_code

    with ThreadPoolExecutor(THREADS) as pool:
        assert set(pool.map(one, jobs)) == {200}


def test_concurrent_whitelist_sets_never_mix(shared_server: ServerProcess, api: httpx.Client,
                                             gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2})
    sets = [[f"w{t}_{i}" for i in range(40)] for t in range(THREADS * ROUNDS)]
    _run(shared_server, [("/channel/whitelist_set",
                          {"channel_id": gid, "channel_type": 2, "uids": uids}) for uids in sets])
    final = get_list(api, "whitelist", gid, 2)
    assert final in [sorted(s) for s in sets]


def test_concurrent_adds_all_land(shared_server: ServerProcess, api: httpx.Client,
                                  gid: str) -> None:
    batches = [[f"s{t}_{i}" for i in range(25)] for t in range(THREADS * ROUNDS)]
    _run(shared_server, [("/channel/subscriber_add",
                          {"channel_id": gid, "channel_type": 2, "subscribers": b})
                         for b in batches])
    assert subscribers(api, gid, 2) == sorted(u for b in batches for u in b)
