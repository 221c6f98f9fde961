"""The access log never shows the manager token that /events accepts as ``?token=``."""

from __future__ import annotations

import logging

import pytest

from server.logs import RedactToken, redact


@pytest.mark.parametrize(("line", "shown"), [
    ("GET /events?token=s3cret HTTP/1.1", "GET /events?token=*** HTTP/1.1"),
    ("GET /events?last_event_id=5&token=s3cret&x=1", "GET /events?last_event_id=5&token=***&x=1"),
    ("token=s3cret", "token=***"),
    ("GET /events?mytoken=1", "GET /events?mytoken=1"),  # another parameter: left alone
])
def test_redact_replaces_only_the_token_value(line: str, shown: str) -> None:
    assert redact(line) == shown


def test_filter_scrubs_hypercorn_atoms_in_place() -> None:
    # hypercorn logs `access_log_format % atoms`, the atoms a dict of request parts.
    atoms = {"r": "GET /events?token=s3cret HTTP/1.1", "q": "token=s3cret", "s": 200}
    record = logging.LogRecord("hypercorn.access", logging.INFO, __file__, 1,
                               '"%(r)s" %(s)s %(q)s', (atoms,), None)
    assert RedactToken().filter(record)
    text = record.getMessage()
    assert "s3cret" not in text and text == '"GET /events?token=*** HTTP/1.1" 200 token=***'
