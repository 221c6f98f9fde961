"""Prototypes of the design changes RESULTS.md proposes, measured by the benchmarks beside the
code as it is. Nothing here is used by the server: these are arguments with numbers, for the
engineers who own ``server/`` and ``wal/`` to adopt (or not).
"""

from __future__ import annotations

from collections.abc import Iterator

from server.state import State


def key_copy_snapshot_chunks(state: State, rows_per_chunk: int = 500) -> Iterator[object]:
    """Same chunks as ``State.snapshot_chunks`` (``load_chunk`` reads them unchanged), with two
    changes aimed at the event-loop lag during a snapshot:

    * the synchronous step copies the *keys* (``list(dict)``: one list, no new objects) instead
      of ``list(dict.items())``, which allocates one tuple per channel: a million new tracked
      objects that push the cyclic GC into a full collection over the whole state, in that step;
    * rows are looked up when their chunk is built; a channel deleted meanwhile is skipped (the
      log replay after the snapshot's LSN deletes it anyway: ops are blind writes, so a fuzzy
      row is as good as in the current code), and chunks are 500 rows instead of 2000, so one
      chunk's build-and-pack step is ~4x shorter.
    """
    keys = list(state.channels)
    system = sorted(state.system_uids)
    presence_of = getattr(state, "presence", None)
    presence: Iterator[object] = (presence_of.snapshot_chunks(rows_per_chunk)
                                  if presence_of is not None else iter(()))
    channels = state.channels

    def chunks() -> Iterator[object]:
        yield {"kind": "meta", "version": 1, "system_uids": system, "channels": len(keys)}
        for start in range(0, len(keys), rows_per_chunk):
            rows = []
            for key in keys[start : start + rows_per_chunk]:
                ch = channels.get(key)
                if ch is None:
                    continue
                rows.append((key[0], key[1],
                             (ch.ban, ch.disband, ch.send_ban, ch.allow_stranger, ch.large),
                             ch.created_at, ch.updated_at, ch.expires_at,
                             list(ch.subscribers), list(ch.whitelist), list(ch.blacklist)))
            yield {"kind": "channels", "rows": rows}
        yield from presence

    return chunks()
