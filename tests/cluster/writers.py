"""Concurrent HTTP writers that follow the leader and remember exactly what was acknowledged.

Each writer thread adds one fresh uid per request to one channel's whitelist. A 200 (with its
``X-LSN``) is an acknowledged write and is remembered; a 307 points the writers at the new
leader; a 503 or a broken connection is a write whose outcome is unknown, which the checks
ignore (it may or may not be there). Every loop is bounded by a stop flag and a count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

#: requests per writer thread at most (bounds a run whose stop flag is never set)
MAX_REQUESTS = 20_000


class Writers:
    def __init__(self, channel: str, find_leader: Callable[[], str | None], threads: int = 4,
                 *, follow: bool = True, timeout: float = 5.0) -> None:
        """``follow=False``: keep writing to what ``find_leader`` says, never to a 307's leader
        (to see what one node answers)."""
        self.channel = channel
        self.follow = follow
        self.timeout = timeout
        self.find_leader = find_leader
        self.leader_url: str | None = find_leader()
        self.acked: dict[str, int] = {}  # uid -> its X-LSN
        self.refused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def start(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def max_lsn(self) -> int:
        with self._lock:
            return max(self.acked.values(), default=0)

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            for i in range(MAX_REQUESTS):
                if self._stop.is_set():
                    return
                url = self.leader_url
                if url is None:
                    self.leader_url = self.find_leader()
                    self._stop.wait(0.05)  # no leader known: ask again shortly
                    continue
                uid = f"w{index}-{i}"
                try:
                    r = client.post(url + "/channel/whitelist_add",
                                    json={"channel_id": self.channel, "channel_type": 2,
                                          "uids": [uid]})
                except httpx.HTTPError:
                    self.leader_url = self.find_leader()
                    continue
                if r.status_code == 200:
                    with self._lock:
                        self.acked[uid] = int(r.headers["x-lsn"])
                elif r.status_code == 307 and self.follow:
                    self.leader_url = r.json()["leader"]
                else:
                    self.refused += 1
                    self.leader_url = self.find_leader()
