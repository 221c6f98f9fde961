"""Roster: channel-state and presence server.

Embedding the state engine in-process (no HTTP, no log)::

    from server.state import State
    from server.permission import decide, REASON_NAMES

    state = State()
    state.apply((now_ms, [("ch_put", "g1", 2, {}), ("sub_add", "g1", 2, ["alice"])]))
    decide(state, "alice", "g1", 2, now_ms)  # -> 1 (Success)
"""
