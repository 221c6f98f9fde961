"""The HTTP edge's pure parts: the derived connection cap and the accept-incident log."""

from __future__ import annotations

import errno
import logging

import pytest
import trio

from server.edge import FD_RESERVE, AcceptErrors, derived_max_connections


@pytest.mark.parametrize(("nofile", "resp", "expected"), [
    (20_000, 10_000, 20_000 - FD_RESERVE - (20_000 - FD_RESERVE) // 4),  # RESP gets a quarter
    (20_000, 100, 20_000 - FD_RESERVE - 100),  # RESP needs less than its quarter
    (20_000, 0, 20_000 - FD_RESERVE),  # RESP off
    (FD_RESERVE, 100, 1),  # nothing spare: still one
    (16, 0, 1),
])
def test_the_derived_cap_keeps_a_reserve_below_the_descriptor_limit(
        nofile: int, resp: int, expected: int) -> None:
    cap = derived_max_connections(nofile, resp)
    assert cap == expected
    assert cap + min(resp, max(nofile - FD_RESERVE, 0) // 4) <= max(nofile - FD_RESERVE, 1)


async def test_an_accept_incident_is_logged_once_with_its_count(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    errors = AcceptErrors()
    emfile = OSError(errno.EMFILE, "Too many open files")
    with caplog.at_level(logging.WARNING, logger="roster"):
        for _ in range(2):
            waits = []
            for _ in range(500):
                waits.append(errors.failed(emfile))
                await trio.sleep(waits[-1])
            errors.accepted()
            errors.accepted()  # accepting normally: nothing more to say
            assert waits == sorted(waits) and max(waits) == 1.0  # backs off, never spins
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and errors.incidents == 2
    assert lines[0].startswith("cannot accept HTTP connections: Too many open files")
    assert lines[1].startswith("accepting HTTP connections again after 500 failed accepts")
