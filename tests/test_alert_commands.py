"""Staff issue, upgrade and lift warnings from their WeCom chat (preview + confirm); residents and
leads cannot; acks follow the newest warning; answers, polls and help requests."""
import json

import aiohttp
import pytest
from chat_rig import member, say  # noqa: F401
from sim_rig import close_sim, make_sim, staff

from bot.domain import escalation
from bot.domain.acks import coverage


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=40)
    yield rig
    await close_sim(rig)




def resident(store, n=0):
    return store.q("SELECT * FROM residents WHERE oa_openid IS NOT NULL AND household_id IS NOT NULL "
                   "ORDER BY id LIMIT 1 OFFSET ?", (n,))[0]


async def test_issue_from_chat_with_preview_and_confirm(sim):
    boss = staff(sim.store)
    preview = await say(sim, boss, "发布 黄色 雷雨大风 范围:第一网格 今晚有雷阵雨")
    assert "【预览】" in preview and "第一网格" in preview and "今晚有雷阵雨" in preview
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0  # nothing goes out before 确认
    done = await say(sim, boss, "确认")
    alert = sim.store.q1("SELECT * FROM alerts")
    assert f"#{alert['id']}" in done and alert["colour"] == "yellow" and alert["issuer_id"] == boss["id"]
    assert json.loads(alert["scope"]) != []
    assert escalation.next_due_at(sim.app) is not None  # its timers are armed from the rows


async def test_cancel_and_errors(sim):
    boss = staff(sim.store)
    await say(sim, boss, "发布 红色 台风")
    assert "已取消" in await say(sim, boss, "取消")
    assert "不认识" in await say(sim, boss, "发布 紫色 台风")
    assert "没有找到" in await say(sim, boss, "发布 黄色 暴雨 范围:火星")
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0


async def test_residents_and_leads_cannot_issue(sim):
    lead = sim.store.q1("SELECT * FROM residents WHERE roles LIKE '%building_lead%' LIMIT 1")
    for who in (resident(sim.store), lead):
        await say(sim, who, "发布 红色 暴雨")
        await say(sim, who, "确认")
    assert sim.store.scalar("SELECT COUNT(*) FROM alerts") == 0


async def test_upgrade_then_lift(sim):
    boss, r = staff(sim.store), resident(sim.store)
    await say(sim, boss, "发布 黄色 暴雨")
    await say(sim, boss, "确认")
    first = sim.store.q1("SELECT * FROM alerts")
    assert "谢谢" in await say(sim, r, "收到")
    preview = await say(sim, boss, f"升级 #{first['id']} 红色")
    assert "升级" in preview and "1 平安 / 2 需要帮助" in preview  # red: a two-answer poll
    await say(sim, boss, "确认")
    second = sim.store.q1("SELECT * FROM alerts ORDER BY id DESC")
    assert sim.store.q1("SELECT state FROM alerts WHERE id=?", (first["id"],))["state"] == "superseded"
    assert second["poll"] == 1 and second["supersedes_id"] == first["id"]
    # answers now count for the red warning; "2" opens an urgent request
    reply = await say(sim, r, "2 家里进水了")
    assert "求助已登记" in reply
    ack = sim.store.q1("SELECT * FROM acks WHERE alert_id=? AND resident_id=?", (second["id"], r["id"]))
    assert ack["answer"] == "help" and ack["request_id"]
    req = sim.store.q1("SELECT * FROM requests WHERE id=?", (ack["request_id"],))
    assert req["urgency"] == "urgent" and req["alert_id"] == second["id"]
    assert coverage(sim.store, second["id"])["tree"][0]["help"] == 1
    # changing the answer to 平安 is recorded too
    assert "已更新" in await say(sim, r, "1")
    await say(sim, boss, f"解除 #{second['id']}")
    await say(sim, boss, "确认")
    assert sim.store.q1("SELECT state FROM alerts WHERE id=?", (second["id"],))["state"] == "lifted"
    summary = [d for d in sim.world.state.messages_for(boss["wecom_userid"]) if "【预警汇总】" in d.text]
    assert len(summary) == 1  # the lifted warning's figures go to the issuer once
    # superseded and lifted warnings no longer chase anyone
    sim.clock.advance(3 * 3600)
    await escalation.run_due(sim.app)
    assert sim.store.scalar("SELECT COUNT(*) FROM events WHERE kind='alert.reminded'") == 0
    # the orange upgrade gave every vulnerable resident a visit at once (policy); silence adds none
    assert sim.store.scalar("SELECT COUNT(*) FROM followups WHERE reason='silent'") == 0


async def test_ack_with_request_and_ack_link(sim, tmp_path):
    from bot.domain.relay import ack_link

    boss, r = staff(sim.store), resident(sim.store, 3)
    await say(sim, boss, "发布 橙色 台风")
    await say(sim, boss, "确认")
    alert = sim.store.q1("SELECT * FROM alerts")
    reply = await say(sim, r, "收到，地下车库进水了")
    ack = sim.store.q1("SELECT * FROM acks WHERE resident_id=?", (r["id"],))
    req = sim.store.q1("SELECT * FROM requests WHERE id=?", (ack["request_id"],))
    assert "地下车库进水了" in req["text"] and req["place"] and "#" in reply
    # the per-household link: GET shows a button (no ack), POST records one, a forged token is refused
    other = sim.store.q1("SELECT id FROM households WHERE id NOT IN (SELECT household_id FROM acks) LIMIT 1")
    link = ack_link(sim.app, alert["id"], other["id"]).split("/ack/")[1]
    async with aiohttp.ClientSession() as http:
        base = str(sim.server.make_url("")).rstrip("/") + "/"
        async with http.get(f"{base}ack/{link}") as resp:
            assert resp.status == 200 and "平安" in await resp.text()
        assert sim.store.scalar("SELECT COUNT(*) FROM acks WHERE household_id=?", (other["id"],)) == 0
        async with http.post(f"{base}ack/{link}", data={"answer": "ok"}) as resp:
            assert resp.status == 200 and "已确认" in await resp.text()
        async with http.get(f"{base}ack/{link[:-2]}xx") as resp:
            assert resp.status == 404
    row = sim.store.q1("SELECT * FROM acks WHERE household_id=?", (other["id"],))
    assert row["channel"] == "link" and row["alert_id"] == alert["id"]


async def test_proxy_ack_and_followup_closure(sim):
    boss = staff(sim.store)
    await say(sim, boss, "发布 黄色 高温")
    await say(sim, boss, "确认")
    lead = sim.store.q1("SELECT r.*, l.node_id FROM node_leads l JOIN residents r ON r.id=l.resident_id "
                        "JOIN nodes n ON n.id=l.node_id WHERE n.kind='building' LIMIT 1")
    hh = sim.store.q1("SELECT h.*, n.name AS bname FROM households h JOIN nodes n ON n.id=h.building_id "
                      "WHERE h.building_id=? ORDER BY h.id DESC LIMIT 1", (lead["node_id"],))
    text = await say(sim, lead, f"代确认 {hh['bname']}{hh['unit']}{hh['room']}")
    assert hh["label"] in text
    assert sim.store.q1("SELECT channel, by_proxy_id FROM acks WHERE household_id=?", (hh["id"],)) == \
        {"channel": "proxy", "by_proxy_id": lead["id"]}
    # outside their buildings a lead cannot confirm
    far = sim.store.q1("SELECT h.*, n.name AS bname FROM households h JOIN nodes n ON n.id=h.building_id "
                       "WHERE h.building_id!=? LIMIT 1", (lead["node_id"],))
    assert "没有在您负责的楼栋里找到" in await say(sim, lead, f"代确认 {far['label']}")
    # follow-ups: advance past the follow-up time, the social worker closes one by room
    alert = sim.store.q1("SELECT * FROM alerts")
    sim.clock.advance(60 * sim.settings.escalation.followup_after_min["yellow"] + 1)
    await escalation.run_due(sim.app)
    await sim.app.settle()
    f = sim.store.q1("SELECT f.*, h.label, w.wecom_userid FROM followups f JOIN households h ON h.id=f.household_id "
                     "JOIN residents w ON w.id=f.worker_id WHERE f.alert_id=? LIMIT 1", (alert["id"],))
    worker = sim.store.q1("SELECT * FROM residents WHERE wecom_userid=?", (f["wecom_userid"],))
    assert "已记录" in await say(sim, worker, f"已上门 {f['label']} 平安")
    assert sim.store.q1("SELECT state FROM followups WHERE id=?", (f["id"],))["state"] == "closed"
    assert sim.store.q1("SELECT channel FROM acks WHERE household_id=? AND channel='visit'", (f["household_id"],))
