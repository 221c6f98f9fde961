"""server/nonces.py on real files: what is loaded back, torn and garbled lines, expiry, and the
rewrite once most lines have expired (with lines appended while it runs)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from server import nonces
from server.nonces import COMPACT_MIN_LINES, FILE_NAME, NonceFile, encode_line, read_entries
from server.rcsign import ReplayCache

NOW = 1_700_000_000_000


def lines_of(data_dir: Path) -> list[bytes]:
    return (data_dir / FILE_NAME).read_bytes().splitlines()


def test_entries_survive_a_reopen_and_expired_ones_are_not_loaded(tmp_path: Path) -> None:
    store, kept = NonceFile.open(tmp_path, NOW, fsync_each=True)
    assert kept == [] and lines_of(tmp_path) == []
    cache = ReplayCache(100, store)
    cache.add("old", NOW - 300_000, NOW)  # until NOW: still refused at NOW, not after
    cache.add("new", NOW, NOW)
    cache.add('odd "nonce" \\ é', NOW, NOW)
    store.close()

    again, kept = NonceFile.open(tmp_path, NOW, fsync_each=True)
    assert kept == [("old", NOW), ("new", NOW + 300_000), ('odd "nonce" \\ é', NOW + 300_000)]
    again.close()
    later, kept = NonceFile.open(tmp_path, NOW + 1, fsync_each=True)
    assert [n for n, _ in kept] == ["new", 'odd "nonce" \\ é']
    later.close()
    assert len(lines_of(tmp_path)) == 2  # the reopen rewrote the file without "old"

    cache = ReplayCache(100)
    cache.load(kept)
    assert cache.seen("new", NOW + 300_000) and not cache.seen("old", NOW + 1)


def test_a_torn_last_line_and_garbage_are_skipped(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE_NAME).write_bytes(
        encode_line("a", NOW) + b"\x00\x00garbage\n" + b'["x",1]\n' + encode_line("b", NOW)
        + b'[1700000000000,"c')
    assert read_entries(tmp_path / FILE_NAME, NOW) == ([("a", NOW), ("b", NOW)], 3)
    with caplog.at_level(logging.WARNING, logger="roster"):
        store, kept = NonceFile.open(tmp_path, NOW, fsync_each=False)
    assert kept == [("a", NOW), ("b", NOW)]
    assert "3 unreadable line(s) skipped" in caplog.text
    store.append("d", NOW)  # appends after the rewrite, not onto the torn fragment
    store.close()
    assert read_entries(tmp_path / FILE_NAME, NOW) == ([("a", NOW), ("b", NOW), ("d", NOW)], 0)


async def test_settle_rewrites_once_most_lines_expired(tmp_path: Path) -> None:
    store, _ = NonceFile.open(tmp_path, NOW, fsync_each=True)
    cache = ReplayCache(COMPACT_MIN_LINES * 2, store)
    for i in range(COMPACT_MIN_LINES):
        cache.add(f"n{i}", NOW - 300_000 - 1 if i % 4 else NOW, NOW)  # 1 in 4 stays live
    await store.settle(lambda: cache.live(NOW))
    assert store.lines == COMPACT_MIN_LINES // 4
    store.close()
    entries, bad = read_entries(tmp_path / FILE_NAME, NOW)
    assert bad == 0
    assert entries == [(f"n{i}", NOW + 300_000) for i in range(0, COMPACT_MIN_LINES, 4)]


async def test_lines_appended_during_a_rewrite_are_kept(tmp_path: Path) -> None:
    store, _ = NonceFile.open(tmp_path, NOW, fsync_each=False)
    for i in range(COMPACT_MIN_LINES):
        store.append(f"n{i}", NOW - 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.settle, lambda: [("live", NOW)])
        await trio.testing.wait_all_tasks_blocked()  # the rewrite waits on its worker thread
        store.append("during", NOW)
    store.append("after", NOW)
    store.close()
    entries, bad = read_entries(tmp_path / FILE_NAME, NOW)
    assert bad == 0 and entries == [("live", NOW), ("during", NOW), ("after", NOW)]
    assert not (tmp_path / (FILE_NAME + ".tmp")).exists()


async def test_concurrent_settles_share_an_fdatasync(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = NonceFile.open(tmp_path, NOW, fsync_each=True)
    calls: list[int] = []
    real = nonces._fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(nonces, "_fdatasync", counting)
    async with trio.open_nursery() as nursery:
        for i in range(20):
            store.append(f"n{i}", NOW)
            nursery.start_soon(store.settle, list)
    store.close()
    assert len(calls) == 1  # the first settle's fdatasync covered all twenty lines
