"""trio calling asyncio: an asyncio event loop in a dedicated thread, futures settled into trio.

Why this bridge and not trio-asyncio: nats-py is an asyncio library and Roster is a trio program.
trio-asyncio runs asyncio *inside* trio's loop, which would put every NATS frame's parsing on the
thread that serves HTTP and RESP, adds a dependency that lags trio releases, and changes how the
whole process is started. A plain asyncio loop in its own thread keeps the NATS client exactly as
its authors run it and makes the crossing explicit: trio hands a coroutine to the loop with
``asyncio.run_coroutine_threadsafe`` and sleeps on a ``trio.Event`` that the future's done-callback
sets through ``TrioToken.run_sync_soon`` — no worker thread is parked per call. Messages pushed by
NATS (the stream's records) come back the same way, ``run_sync_soon`` in arrival order, so the trio
side applies them in stream order.

Cost (``python -m bench cluster``, "bridge round trip"): one round trip of a no-op coroutine took
76-192 us on the two-core test machine depending on its load, the same order as
``trio.to_thread.run_sync`` of a no-op (144-218 us in the same runs): two thread wake-ups either
way. A write pays a share of it: a record crosses once, carrying ~20 writes at 64 connections,
and the leader's publisher runs on the NATS thread (``replica.py``), so records follow each other
without crossing back first.

Cancellation: a cancelled trio caller cancels the asyncio future; whether the coroutine's effect
(a publish) happened is then unknown, which the caller must treat as "maybe" (the replica steps
down and re-reads the stream).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

#: how long stop() waits for the loop thread to finish its last callbacks
STOP_TIMEOUT_S = 5.0


class AsyncioThread:
    """One asyncio event loop running in a daemon thread, called from trio."""

    def __init__(self, name: str = "roster-nats") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # The client's own background tasks (consumer heartbeats, flow control) end here,
            # cancelled, rather than being destroyed pending when the loop closes.
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the asyncio loop and return its result (or raise its error)."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(fn, *args), self.loop)

        def settled(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # trio has ended: nobody waits any more

        future.add_done_callback(settled)
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            raise
        return future.result()

    def stop(self) -> None:
        """Stop the loop (after what is already scheduled on it) and join the thread."""
        if self._started and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._started:
            self._thread.join(STOP_TIMEOUT_S)


async def _as_coroutine(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)
