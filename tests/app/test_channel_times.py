"""A channel's ``created_at`` and ``updated_at`` follow the Roster's clock, moved by hand."""

from __future__ import annotations

from pathlib import Path

from tests.app.conftest import NOW, Clock, in_process


async def test_update_moves_updated_at_not_created_at(tmp_path: Path) -> None:
    clock = Clock(NOW)
    key = {"channel_id": "g", "channel_type": 2}
    async with in_process(tmp_path, clock) as rig:
        assert (await rig.json("/channel", key))[0] == 200
        clock.now = NOW + 10
        assert (await rig.json("/channel/info", {**key, "large": 1}))[0] == 200
        r = await rig.client.get("/channel/info", query_string=key)
        assert r.status_code == 200
        info = await r.get_json()
        assert (info["created_at"], info["updated_at"], info["large"]) == (NOW, NOW + 10, 1)
