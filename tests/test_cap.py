"""Warnings from a weather service (CAP 1.2): issue, update, cancel; ingested once; hostile XML refused."""
from pathlib import Path

import pytest

from bot.transports.inbound import cap
from bot.domain.alerts import AlertError
from sim_rig import close_sim, make_sim

DATA = Path(__file__).parent / "data"


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=20)
    yield rig
    await close_sim(rig)


def test_parse_maps_type_colour_and_text():
    c = cap.parse((DATA / "cap_thunderstorm.xml").read_bytes())
    assert (c["type"], c["colour"], c["msg_type"]) == ("雷雨大风", "yellow", "alert")
    assert "阵风8级" in c["text"] and c["sender"] == "番禺区气象台"
    assert cap.parse((DATA / "cap_thunderstorm_update.xml").read_bytes())["colour"] == "orange"


@pytest.mark.parametrize("xml", [
    b"<alert><info><event>x",  # broken
    (DATA / "billion_laughs.xml").read_bytes(),
    (DATA / "xxe.xml").read_bytes(),
    b"<notcap/>",
    b"<alert><msgType>Alert</msgType><info><event>\xe6\x9a\xb4\xe9\x9b\xa8</event></info></alert>",  # no colour
])
def test_bad_cap_is_refused(xml):
    with pytest.raises(AlertError) as e:
        cap.parse(xml)
    assert e.value.code == "bad_cap"


async def test_ingest_issue_update_cancel_once(sim):
    sim.clock.t = 1_717_200_000.0  # 2024-06-01 08:00 +08:00, before the CAP expiry
    first = cap.ingest(sim.app, (DATA / "cap_thunderstorm.xml").read_bytes())
    a = sim.store.q1("SELECT * FROM alerts WHERE id=?", (first,))
    assert (a["type"], a["colour"], a["action"]) == ("雷雨大风", "yellow", "issue")
    assert a["expires_at"] == pytest.approx(1_717_221_600.0)  # 14:00 +08:00
    assert "阵风8级" in a["text"]
    assert cap.ingest(sim.app, (DATA / "cap_thunderstorm.xml").read_bytes()) is None  # same identifier
    second = cap.ingest(sim.app, (DATA / "cap_thunderstorm_update.xml").read_bytes())
    b = sim.store.q1("SELECT * FROM alerts WHERE id=?", (second,))
    assert (b["colour"], b["action"], b["supersedes_id"], b["poll"]) == ("orange", "update", first, 1)
    third = cap.ingest(sim.app, (DATA / "cap_thunderstorm_cancel.xml").read_bytes())
    assert sim.store.q1("SELECT action FROM alerts WHERE id=?", (third,))["action"] == "lift"
    assert sim.store.q1("SELECT state FROM alerts WHERE id=?", (second,))["state"] == "lifted"
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 3


async def test_feed_endpoint_needs_its_token(tmp_path):
    import aiohttp

    rig = await make_sim(tmp_path, households=20, server={"feed_token": "feed-secret"})
    try:
        rig.clock.t = 1_717_200_000.0
        url = str(rig.server.make_url("/api/alerts/cap"))
        body = (DATA / "cap_thunderstorm.xml").read_bytes()
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body) as r:
                assert r.status == 401
            async with http.post(url, data=body, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with http.post(url, data=body, headers={"Authorization": "Bearer feed-secret"}) as r:
                assert r.status == 201
            async with http.post(url, data=body, headers={"Authorization": "Bearer feed-secret"}) as r:
                assert (await r.json()) == {"duplicate": True}
            async with http.post(url, data=b"<alert>", headers={"Authorization": "Bearer feed-secret"}) as r:
                assert r.status == 400
        assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 1
    finally:
        await close_sim(rig)
