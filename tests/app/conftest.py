"""In-process app tests: a real ``Roster`` (state, write-ahead log in ``tmp_path``, event hub) and
the real quart-trio app driven through ``app.test_app()``, with a clock the test moves by hand.

No sockets and no sleeps: expiries are reached by setting ``clock.now``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from quart_trio import QuartTrio
from quart_trio.testing import TrioClient

from server.app import create_app
from server.config import Settings
from server.runner import recover_state
from server.service import Roster
from wal import WriteAheadLog

NOW = 1_700_000_000_000


class Clock:
    """``Roster(clock=...)``: wall-clock milliseconds that move only when the test says so."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class InProcess:
    roster: Roster
    app: QuartTrio
    client: TrioClient
    clock: Clock
    settings: Settings

    async def form(self, path: str, **form: Any) -> tuple[int, dict[str, Any]]:
        r = await self.client.post(path, form={k: str(v) for k, v in form.items()})
        return r.status_code, await r.get_json()

    async def json(self, path: str, body: Any) -> tuple[int, Any]:
        r = await self.client.post(path, json=body)
        return r.status_code, await r.get_json()


@asynccontextmanager
async def in_process(data_dir: Path, clock: Clock | None = None,
                     **options: Any) -> AsyncIterator[InProcess]:
    """A Roster over a fresh (or existing) data dir, recovered like ``roster serve`` does."""
    settings = Settings(data_dir=data_dir, fsync="none", **options)
    clock = clock or Clock()
    state, last_lsn = recover_state(settings)
    wal = WriteAheadLog(data_dir, next_lsn=last_lsn + 1, fsync="none")
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run)
        roster = Roster(state, wal, settings, clock=clock)
        app = create_app(roster)
        async with app.test_app() as test_app:
            yield InProcess(roster, app, test_app.test_client(), clock, settings)
        await wal.close()
        nursery.cancel_scope.cancel()
