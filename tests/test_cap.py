"""Warnings from a weather service (CAP 1.2), read completely: status, msgType and references,
several info blocks, colours ("升级为橙色"), signal codes, areas mapped to the register, onset,
duplicates and out-of-order delivery, hostile XML. Documents are written from the OASIS CAP 1.2
standard: tests/data/cap/*.xml and the builder below."""
from __future__ import annotations

from pathlib import Path

import pytest
from sim_rig import close_sim, make_sim

from bot.data import cap as cap_db
from bot.domain import feed
from bot.domain.alerts import AlertError
from bot.transports.inbound import cap

DATA = Path(__file__).parent / "data"
CAPS = DATA / "cap"
T0 = 1_717_200_000.0  # 2024-06-01 08:00 +08:00
AREAS = {"番禺区": ["*"], "440113": ["*"], "从化区": [], "大龙二网格": ["第二网格"]}


def doc(identifier="id-1", *, status="Actual", msg_type="Alert", refs="", event="暴雨", headline=None,
        severity="Moderate", area="<area><areaDesc>番禺区</areaDesc></area>", onset="", expires="2024-06-01T20:00:00+08:00",
        extra_info="", sender="panyu.weather@gd.cma", sent="2024-06-01T08:00:00+08:00", lang="zh-CN") -> bytes:
    headline = headline if headline is not None else f"番禺区气象台发布{event}黄色预警信号"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>{sender}</sender><sent>{sent}</sent>
  <status>{status}</status><msgType>{msg_type}</msgType><scope>Public</scope>
  {f"<references>{refs}</references>" if refs else ""}
  <info>
    <language>{lang}</language><category>Met</category><event>{event}</event>
    <urgency>Expected</urgency><severity>{severity}</severity><certainty>Likely</certainty>
    {f"<onset>{onset}</onset>" if onset else ""}<expires>{expires}</expires>
    <senderName>番禺区气象台</senderName><headline>{headline}</headline>
    <description>预计未来6小时有强降水。</description>{extra_info}
    {area}
  </info>
</alert>""".encode()


def ref(identifier, sent="2024-06-01T08:00:00+08:00", sender="panyu.weather@gd.cma") -> str:
    return f"{sender},{identifier},{sent}"


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=40, cap={"areas": AREAS})
    rig.clock.t = T0
    yield rig
    await close_sim(rig)


def alert(store, alert_id):
    return store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))


# -- reading ----------------------------------------------------------------------------------
def test_zh_cn_info_block_is_preferred_with_namespace_prefixes():
    m = cap.parse((CAPS / "storm_alert.xml").read_bytes())
    assert (m.type, m.colour, m.msg_type, m.status) == ("雷雨大风", "yellow", "alert", "actual")
    assert m.language == "zh-CN" and "阵风8级" in m.text and m.sender_name == "番禺区气象台"
    assert m.areas[0].desc == "番禺区" and m.areas[0].geocodes == [("行政区划代码", "440113")]
    assert m.areas[0].polygons and m.expires == pytest.approx(T0 + 6 * 3600)


def test_the_final_colour_of_the_headline_wins_upgrade_to_orange():
    """Regression: "…黄色预警信号升级为橙色" was stored as yellow (the first colour word won)."""
    m = cap.parse((CAPS / "storm_update_orange.xml").read_bytes())
    assert m.colour == "orange" and m.msg_type == "update"
    assert m.refs == [("panyu.weather@gd.cma", "44011341600000_20240601080000", "2024-06-01T08:00:00+08:00")]


def test_the_signal_code_beats_the_words():
    m = cap.parse(doc(event="强对流", headline="番禺区气象台发布预警信号",
                      extra_info="<parameter><valueName>预警信号编码</valueName><value>0903</value></parameter>"))
    assert (m.type, m.colour) == ("雷电", "orange")


def test_severity_is_the_last_resort():
    m = cap.parse(doc(event="暴雨", headline="番禺区气象台发布暴雨预警", severity="Extreme"))
    assert m.colour == "red"


@pytest.mark.parametrize("xml", [
    b"<alert><info><event>x",  # broken
    (DATA / "billion_laughs.xml").read_bytes(),
    (DATA / "xxe.xml").read_bytes(),
    b"<notcap/>",
    doc(status="Rumour"),
    doc(msg_type="Gossip"),
    doc(refs="only-two,parts"),
    doc(expires="tomorrow"),
    doc(expires="2024-06-01T20:00:00"),  # no time zone
])
def test_bad_cap_is_refused(xml):
    with pytest.raises(AlertError) as e:
        cap.parse(xml)
    assert e.value.code == "bad_cap"


# -- acting -----------------------------------------------------------------------------------
async def test_alert_update_cancel_follow_the_references_chain(sim):
    first = cap.receive(sim.app, (CAPS / "storm_alert.xml").read_bytes())
    a = alert(sim.store, first.alert_id)
    assert first.outcome == "relayed" and (a["type"], a["colour"], a["action"]) == ("雷雨大风", "yellow", "issue")
    assert a["expires_at"] == pytest.approx(T0 + 6 * 3600)
    second = cap.receive(sim.app, (CAPS / "storm_update_orange.xml").read_bytes())
    b = alert(sim.store, second.alert_id)
    assert second.outcome == "updated" and (b["colour"], b["supersedes_id"], b["poll"]) == ("orange", first.alert_id, 1)
    third = cap.receive(sim.app, (CAPS / "storm_cancel.xml").read_bytes())
    assert third.outcome == "lifted" and alert(sim.store, third.alert_id)["action"] == "lift"
    assert alert(sim.store, second.alert_id)["state"] == "lifted"


async def test_the_same_message_twice_is_a_duplicate(sim):
    body = (CAPS / "storm_alert.xml").read_bytes()
    first, again = cap.receive(sim.app, body), cap.receive(sim.app, body)
    assert again.outcome == "duplicate" and again.alert_id == first.alert_id
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 1


async def test_exercise_becomes_a_drill_marked_in_every_message(sim):
    out = cap.receive(sim.app, doc("drill-1", status="Exercise"))
    a = alert(sim.store, out.alert_id)
    assert out.outcome == "relayed" and a["status"] == "exercise"
    texts_sent = [s["payload"] for s in sim.store.q("SELECT payload FROM sends WHERE alert_id=?", (a["id"],))]
    assert texts_sent and all("【演练】" in p for p in texts_sent)


@pytest.mark.parametrize("status", ["Test", "Draft", "System"])
async def test_test_draft_system_are_recorded_never_relayed(sim, status):
    out = cap.receive(sim.app, doc(f"{status}-1", status=status))
    assert out.outcome == "recorded" and out.alert_id is None
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0
    assert [r["identifier"] for r in feed.not_relayed(sim.app)] == [f"{status}-1"]


@pytest.mark.parametrize("msg_type", ["Ack", "Error"])
async def test_ack_and_error_are_recorded(sim, msg_type):
    out = cap.receive(sim.app, doc("x-1", msg_type=msg_type, refs=ref("id-0")))
    assert out.outcome == "recorded" and sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0


async def test_an_unknown_reference_is_refused_with_the_reason(sim):
    out = cap.receive(sim.app, doc("u-1", msg_type="Update", refs=ref("never-seen")))
    assert out.outcome == "refused" and "never-seen" in out.reason
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0


async def test_cancel_before_alert_out_of_order(sim):
    cancel = cap.receive(sim.app, doc("c-1", msg_type="Cancel", refs=ref("a-1"), sent="2024-06-01T08:05:00+08:00"))
    assert cancel.outcome == "refused"
    late = cap.receive(sim.app, doc("a-1"))
    assert late.outcome == "cancelled" and sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0


async def test_two_other_warnings_are_told_apart_by_reference(sim):
    one = cap.receive(sim.app, doc("o-1", event="地质灾害", headline="发布地质灾害黄色预警"))
    two = cap.receive(sim.app, doc("o-2", event="森林火险", headline="发布森林火险黄色预警"))
    assert alert(sim.store, one.alert_id)["type"] == alert(sim.store, two.alert_id)["type"] == "其他"
    up = cap.receive(sim.app, doc("o-3", msg_type="Update", refs=ref("o-1"), event="地质灾害",
                                  headline="地质灾害黄色预警升级为橙色", sent="2024-06-01T09:00:00+08:00"))
    assert alert(sim.store, up.alert_id)["supersedes_id"] == one.alert_id  # not the newer "其他" one
    assert alert(sim.store, two.alert_id)["state"] == "active"


async def test_an_area_for_one_grid_goes_to_that_grid_only(sim):
    out = cap.receive(sim.app, doc("g-1", area="<area><areaDesc>第二网格</areaDesc></area>"))
    grid = sim.store.q1("SELECT id FROM nodes WHERE name='第二网格'")
    scope = [r["building_id"] for r in sim.store.q("SELECT building_id FROM alert_scope WHERE alert_id=?",
                                                   (out.alert_id,))]
    under = [r["id"] for r in sim.store.q("SELECT b.id FROM nodes b JOIN nodes c ON c.id=b.parent_id "
                                          "WHERE c.parent_id=? AND b.kind='building'", (grid["id"],))]
    assert out.outcome == "relayed" and scope and sorted(scope) == sorted(under)
    mapped = cap.receive(sim.app, doc("g-2", area="<area><areaDesc>大龙二网格</areaDesc></area>"))
    assert sorted(r["building_id"] for r in sim.store.q(
        "SELECT building_id FROM alert_scope WHERE alert_id=?", (mapped.alert_id,))) == sorted(under)


async def test_an_area_outside_the_community_is_not_relayed_and_staff_are_told(sim):
    out = cap.receive(sim.app, doc("out-1", area="<area><areaDesc>从化区</areaDesc></area>"))
    assert out.outcome == "outside" and sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0
    told = sim.store.q("SELECT payload FROM sends WHERE purpose='cap_notice'")
    assert told and "不涉及本社区" in told[0]["payload"]


async def test_an_area_nobody_mapped_is_held_for_staff_never_community_wide(sim):
    area = ("<area><areaDesc>某某镇东片</areaDesc><polygon>23.1,113.2 23.2,113.3 23.1,113.4 23.1,113.2</polygon>"
            "<geocode><valueName>行政区划代码</valueName><value>440199</value></geocode></area>")
    out = cap.receive(sim.app, doc("h-1", area=area))
    assert out.outcome == "held" and "某某镇东片" in out.reason
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0
    # staff decide: relay it to the first grid
    released = feed.release(sim.app, out.cap_id, scope_words=["第一网格"])
    assert released.outcome == "relayed" and alert(sim.store, released.alert_id)["type"] == "暴雨"
    assert cap_db.get(sim.store, out.cap_id)["outcome"] == "relayed"


async def test_no_area_is_held(sim):
    assert cap.receive(sim.app, doc("n-1", area="")).outcome == "held"


async def test_a_future_onset_schedules_the_relay(sim):
    out = cap.receive(sim.app, doc("f-1", onset="2024-06-01T10:00:00+08:00"))
    assert out.outcome == "scheduled" and sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0
    assert sim.app.timers.next_due_at() == pytest.approx(T0 + 2 * 3600)
    sim.clock.t = T0 + 2 * 3600
    await sim.app.timers.run_due()
    row = cap_db.get(sim.store, out.cap_id)
    assert row["outcome"] == "relayed" and alert(sim.store, row["alert_id"])["type"] == "暴雨"
    await sim.app.timers.run_due()  # once only
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 1


async def test_an_expired_message_is_refused(sim):
    out = cap.receive(sim.app, doc("e-1", expires="2024-06-01T07:00:00+08:00"))
    assert out.outcome == "refused" and sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0


async def test_a_colour_the_signal_does_not_have_is_refused(sim):
    out = cap.receive(sim.app, doc("c-2", event="高温", headline="发布高温预警",
                                   extra_info="<parameter><valueName>预警信号编码</valueName><value>0701</value></parameter>"))
    assert out.outcome == "refused" and "黄色" in out.reason and "红色" in out.reason


async def test_feed_endpoint_needs_its_token(tmp_path):
    import aiohttp

    rig = await make_sim(tmp_path, households=20, server={"feed_token": "feed-secret"}, cap={"areas": AREAS})
    try:
        rig.clock.t = T0
        url = str(rig.server.make_url("/api/alerts/cap"))
        body = (CAPS / "storm_alert.xml").read_bytes()
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body) as r:
                assert r.status == 401
            async with http.post(url, data=body, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with http.post(url, data=body, headers={"Authorization": "Bearer feed-secret"}) as r:
                assert r.status == 201
                assert (await r.json())["outcome"] == "relayed"
            async with http.post(url, data=body, headers={"Authorization": "Bearer feed-secret"}) as r:
                assert (await r.json())["outcome"] == "duplicate"
            async with http.post(url, data=b"<alert>", headers={"Authorization": "Bearer feed-secret"}) as r:
                assert r.status == 400
        assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 1
    finally:
        await close_sim(rig)
