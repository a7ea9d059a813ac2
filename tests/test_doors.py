"""One meaning at every door: the same act through chat, the ack link, the CLI and the CAP feed
gives the same outcome (issue: "需要帮助" files the same urgent request; answers can be changed
from either door; two live warnings; plain acks are 已确认, never 平安; finished is finished;
where to reply; two communities)."""
from __future__ import annotations

import json

import aiohttp
import pytest
from chat_rig import member, say  # noqa: F401
from sim_rig import close_sim, make_sim, staff

from bot.data import acks as acks_db
from bot.domain import alerts
from bot.domain.alerts import Draft
from bot.domain.relay import ack_link
from bot.domain.wording import reply_channels


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=40)
    yield rig
    await close_sim(rig)




async def link(sim, alert_id: int, household_id: int, answer: str | None = None) -> tuple[int, str]:
    token = ack_link(sim.app, alert_id, household_id).split("/ack/")[1]
    url = str(sim.server.make_url("")).rstrip("/") + f"/ack/{token}"
    async with aiohttp.ClientSession() as http:
        if answer is None:
            async with http.get(url) as resp:
                return resp.status, await resp.text()
        async with http.post(url, data={"answer": answer}) as resp:
            body = await resp.text()
    await sim.app.settle()
    return resp.status, body




def issue(sim, colour="red", type_="暴雨", **kw) -> int:
    return alerts.issue(sim.app, Draft(type=type_, colour=colour, issuer_id=staff(sim.store)["id"], **kw))


def urgent_requests(store, household_id):
    return store.q("SELECT * FROM requests WHERE household_id=? AND urgency='urgent'", (household_id,))


async def test_help_files_the_same_urgent_request_from_chat_and_from_the_link(sim):
    alert_id = issue(sim, "red")
    by_chat, by_link = member(sim.store, 0), member(sim.store, 5)
    assert by_chat["household_id"] != by_link["household_id"]
    reply = await say(sim, by_chat, "2")
    status, page = await link(sim, alert_id, by_link["household_id"], "help")
    assert status == 200 and "已登记" in page and "求助已登记" in reply
    chat_req, link_req = urgent_requests(sim.store, by_chat["household_id"]), urgent_requests(sim.store, by_link["household_id"])
    assert len(chat_req) == 1 and len(link_req) == 1
    for req in (chat_req[0], link_req[0]):
        assert req["alert_id"] == alert_id and req["urgency"] == "urgent"
    for h in (by_chat["household_id"], by_link["household_id"]):
        assert acks_db.last_of_household(sim.store, alert_id, h)["answer"] == "help"
    # the same answer again from the link files nothing new
    await link(sim, alert_id, by_link["household_id"], "help")
    assert len(urgent_requests(sim.store, by_link["household_id"])) == 1


async def test_an_answer_can_be_changed_from_either_door_and_the_change_is_logged(sim):
    alert_id = issue(sim, "red")  # red: a poll (1 平安 / 2 需要帮助)
    r = member(sim.store, 2)
    await say(sim, r, "2")
    status, page = await link(sim, alert_id, r["household_id"], "safe")  # link: help -> safe
    assert status == 200 and "已更新为“平安”" in page
    assert acks_db.last_of_household(sim.store, alert_id, r["household_id"])["answer"] == "safe"
    reply = await say(sim, r, "2")  # chat: safe -> help again
    assert "求助已登记" in reply
    assert acks_db.last_of_household(sim.store, alert_id, r["household_id"])["answer"] == "help"
    changes = sim.store.q("SELECT data FROM events WHERE kind='ack.changed' AND ref_id=?", (alert_id,))
    befores = [json.loads(c["data"])["before"] for c in changes]
    assert befores == ["help", "safe"]
    # the link page shows the current answer and offers the other one
    status, page = await link(sim, alert_id, r["household_id"])
    assert "需要帮助" in page and 'value="safe"' in page


async def test_a_plain_ack_answers_every_live_warning_and_a_poll_answer_the_poll(sim):
    heat = issue(sim, "yellow", "高温")          # no poll
    storm = issue(sim, "red", "暴雨")            # poll
    r = member(sim.store, 1)
    reply = await say(sim, r, "收到")
    assert "高温黄色预警" in reply and "暴雨红色预警" in reply
    assert acks_db.last_of_household(sim.store, heat, r["household_id"])["answer"] == "ok"
    assert acks_db.last_of_household(sim.store, storm, r["household_id"])["answer"] == "ok"
    # "1" is the poll's 平安: it goes to the warning whose poll is open, not to the heat warning
    r2 = member(sim.store, 4)
    await say(sim, r2, "1")
    assert acks_db.last_of_household(sim.store, storm, r2["household_id"])["answer"] == "safe"
    assert acks_db.last_of_household(sim.store, heat, r2["household_id"]) is None


async def test_a_plain_ack_is_confirmed_never_safe(sim):
    alert_id = issue(sim, "yellow")  # no poll
    r = member(sim.store, 3)
    reply = await say(sim, r, "1")
    assert "平安" not in reply and "已确认收到" in reply
    assert acks_db.last_of_household(sim.store, alert_id, r["household_id"])["answer"] == "ok"
    status, page = await link(sim, alert_id, member(sim.store, 6)["household_id"], "ok")
    assert "已确认" in page and "平安" not in page.split("<main>")[1].split("</h1>")[0]
    # a lead's 代确认 on a poll warning is a confirmation, not a resident saying they are safe
    red = issue(sim, "red", "台风")
    lead = sim.store.q1("SELECT r.*, l.node_id FROM node_leads l JOIN residents r ON r.id=l.resident_id "
                        "JOIN nodes n ON n.id=l.node_id WHERE n.kind='building' AND r.wecom_userid IS NOT NULL LIMIT 1")
    h = sim.store.q1("SELECT * FROM households WHERE building_id=? ORDER BY id DESC LIMIT 1", (lead["node_id"],))
    await say(sim, lead, f"代确认 {h['label'].split('/')[-1]}")
    row = acks_db.last_of_household(sim.store, red, h["id"])
    assert row is not None and row["answer"] == "ok" and row["by_proxy_id"] == lead["id"]


async def test_a_lifted_warning_link_and_chat_say_it_has_ended(sim):
    alert_id = issue(sim, "yellow")
    r, other = member(sim.store, 0), member(sim.store, 7)
    alerts.follow_on(sim.app, alert_id, "lift")
    status, page = await link(sim, alert_id, other["household_id"], "ok")
    assert status == 410 and "已经结束" in page
    status, page = await link(sim, alert_id, other["household_id"])
    assert status == 410
    reply = await say(sim, r, "收到")
    assert "已经解除或结束" in reply
    assert sim.store.scalar("SELECT COUNT(*) FROM acks WHERE alert_id=?", (alert_id,)) == 0


async def test_an_expired_warning_counts_no_ack(sim):
    alert_id = issue(sim, "yellow", expires_h=1)
    sim.clock.advance(3601)
    r = member(sim.store, 2)
    assert "已经解除或结束" in await say(sim, r, "1")
    status, _ = await link(sim, alert_id, r["household_id"], "ok")
    assert status == 410
    assert sim.store.scalar("SELECT COUNT(*) FROM acks WHERE alert_id=?", (alert_id,)) == 0


async def test_a_link_for_a_household_outside_the_scope_is_refused(sim):
    grid = sim.store.q1("SELECT id FROM nodes WHERE kind='grid' ORDER BY id LIMIT 1")
    alert_id = issue(sim, "yellow", scope=[grid["id"]])
    outside = sim.store.q1("SELECT h.id FROM households h WHERE h.building_id NOT IN "
                           "(SELECT building_id FROM alert_scope WHERE alert_id=?) LIMIT 1", (alert_id,))
    status, page = await link(sim, alert_id, outside["id"], "ok")
    assert status == 404 and "不在预警范围内" in page
    assert sim.store.scalar("SELECT COUNT(*) FROM acks WHERE household_id=?", (outside["id"],)) == 0


async def test_group_text_says_where_this_deployment_listens(sim):
    s = sim.app.settings
    assert reply_channels(s) == ["oa", "wecom"]
    shown = alerts.preview(sim.store, Draft(type="暴雨", colour="yellow"), s)["text"]
    assert "公众号回复" in shown
    import dataclasses
    no_oa = dataclasses.replace(s, oa=dataclasses.replace(s.oa, app_id=""))
    shown = alerts.preview(sim.store, Draft(type="暴雨", colour="yellow"), no_oa)["text"]
    assert "公众号" not in shown and "企业微信「邻里」应用" in shown
    neither = dataclasses.replace(no_oa, wecom=dataclasses.replace(s.wecom, corp_id=""))
    shown = alerts.preview(sim.store, Draft(type="暴雨", colour="yellow"), neither)["text"]
    assert "公众号" not in shown and "企业微信" not in shown and "楼长" in shown


async def test_the_cli_issues_through_the_same_act(sim, capsys):
    """`linli alert send` goes through alerts.issue: same rows, timers armed, the same refusals."""
    import argparse

    from bot.server import alert_command

    args = argparse.Namespace(action="send", type="暴雨", colour="紫色", scope="", text="", poll=None,
                              expires_h=None, issuer=None, id=None, file=None)
    assert await alert_command(sim.app.settings, args) == 1
    err = capsys.readouterr().err
    assert "紫色" in err and "红色" in err and "unknown_colour" not in err  # plain words, the valid colours


TWO_COMMUNITIES = """社区,网格,小区,楼栋,单元,房号,姓名,电话,角色,困难类别,联系社工,企业微信ID,公众号OpenID
大龙社区,,,,,,段俊,13639289911,社区工作人员,,,staffA,
星光社区,,,,,,林书,13639289912,社区工作人员,,,staffB,
大龙社区,第一网格,大龙一区,1栋,1单元,101,王一,13600000001,居民,,,,oaA1
大龙社区,第一网格,大龙一区,1栋,1单元,102,王二,13600000002,楼长,,,userA2,
星光社区,东网格,星光花园,1栋,1单元,101,李一,13600000003,居民,,,,oaB1
星光社区,东网格,星光花园,1栋,1单元,102,李二,13600000004,楼长,,,userB2,
"""


async def test_two_communities_each_warning_names_its_own_and_staff_see_their_own(tmp_path):
    from bot.data import people as people_db
    from bot.domain import areas, escalation

    reg = tmp_path / "two.csv"
    reg.write_text(TWO_COMMUNITIES, encoding="utf-8")
    rig = await make_sim(tmp_path, register=reg, groups=None)
    try:
        store = rig.store
        xingguang = alerts.resolve_scope(store, ["星光社区"])
        alert_id = alerts.issue(rig.app, Draft(type="暴雨", colour="yellow", scope=xingguang))
        text = alerts.render(store, alerts.find(store, alert_id))
        assert text.lstrip().startswith("【星光社区】")
        other = alerts.issue(rig.app, Draft(type="暴雨", colour="yellow", scope=alerts.resolve_scope(store, ["大龙社区"])))
        assert alerts.render(store, alerts.find(store, other)).lstrip().startswith("【大龙社区】")
        staff_b = people_db.by_account(store, "wecom", "staffB")
        mine = areas.buildings_of(store, staff_b)
        assert mine == alerts.scope_buildings(store, xingguang)
        # the chat summary a staff member gets names only their community's figures
        summary = escalation.summary_text(store, alerts.find(store, other), within=mine)
        assert "大龙一区" not in summary
    finally:
        await close_sim(rig)
