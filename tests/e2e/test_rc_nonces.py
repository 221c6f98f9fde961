"""A captured signed RongCloud request cannot be replayed after a restart inside its window: the
nonce cache is kept in ``<data_dir>/rc_nonces`` (server/nonces.py). Real ``roster serve``
processes on the same data dir, stopped with SIGTERM or killed with SIGKILL between the request
and its replay."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import client_for, new_id, running
from tests.e2e.presence_helpers import CHECK_ONLINE, KEY, SECRET, SET, RcClient


def code_of(r: httpx.Response) -> tuple[int, int, str]:
    body = r.json()
    return r.status_code, body["code"], body.get("msg", "")


@pytest.mark.parametrize(("how", "fsync"), [("sigterm", "always"), ("sigkill", "always"),
                                            ("sigkill", "none")])
def test_a_request_replayed_after_a_restart_is_refused(tmp_path: Path, how: str,
                                                       fsync: str) -> None:
    data = tmp_path / "data"
    me, target = new_id("me"), new_id("t")
    form = {"userId": me, "subUserIds": target, "opType": 0, "expiry": 60}
    with running(data, "--rc-app-key", KEY, "--rc-app-secret", SECRET, "--fsync", fsync
                 ) as proc, client_for(proc.url) as http:
        rc = RcClient(http, sdk=True)
        captured = rc.headers()
        other = rc.headers()
        assert code_of(rc.post(SET, form, headers=captured))[:2] == (200, 200)
        assert code_of(rc.post(CHECK_ONLINE, {"userId": me}, headers=other))[:2] == (200, 200)
        if how == "sigterm":
            assert proc.stop(signal.SIGTERM) == 0
        else:
            proc.kill()
    with running(data, "--rc-app-key", KEY, "--rc-app-secret", SECRET, "--fsync", fsync
                 ) as proc, client_for(proc.url) as http:
        rc = RcClient(http, sdk=True)
        for path, body, headers in ((SET, form, captured),
                                    (CHECK_ONLINE, {"userId": me}, other)):
            assert code_of(rc.post(path, body, headers=headers)) == (
                401, 1004, "Nonce was already used")
        # A fresh nonce is served as usual, and is itself kept for the next restart.
        fresh = rc.headers()
        assert code_of(rc.post(CHECK_ONLINE, {"userId": me}, headers=fresh))[:2] == (200, 200)
    with running(data, "--rc-app-key", KEY, "--rc-app-secret", SECRET) as proc, \
            client_for(proc.url) as http:
        rc = RcClient(http, sdk=True)
        for headers in (captured, fresh):
            assert code_of(rc.post(CHECK_ONLINE, {"userId": me}, headers=headers))[1] == 1004


def test_a_torn_nonce_file_starts_fine(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rc_nonces").write_bytes(b'[99999999999999,"kept"]\n[1,"gone"]\ngarbage\n[9999')
    with running(data, "--rc-app-key", KEY, "--rc-app-secret", SECRET) as proc, \
            client_for(proc.url) as http:
        rc = RcClient(http, sdk=True)
        assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, nonce="kept"))[1] == 1004
        assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, nonce="gone"))[:2] == (200, 200)
        assert "2 unreadable line(s) skipped" in proc.text()
