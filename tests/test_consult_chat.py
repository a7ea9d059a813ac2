"""议事 through chat, over the real callback protocol: staff open one (preview, 确认), it travels like a
notice, a resident votes by reply and changes the vote, a lead votes for a household (代投), a vote after
closing is refused, several open ones ask which, a non-owner is refused politely, and a resident's
plain 收到 / 1 still reaches the acks router; the schedules' 确认 keeps working."""
from __future__ import annotations

import json

import pytest
from chat_rig import say
from sim_rig import small_sim, staff  # noqa: F401  (small_sim: a fixture)

from bot.domain import consult

DAY = 24 * 3600


@pytest.fixture
def sim(small_sim):
    return small_sim


def voter_in_building(store) -> dict:
    """An OA resident with a household, in a building that has a lead reachable in chat."""
    return store.q1(
        "SELECT r.*, h.building_id, h.room, n.name AS building, p.name AS compound FROM residents r "
        "JOIN households h ON h.id=r.household_id JOIN nodes n ON n.id=h.building_id JOIN nodes p ON p.id=n.parent_id "
        "WHERE r.active=1 AND r.oa_openid IS NOT NULL AND r.roles='resident' AND EXISTS (SELECT 1 FROM node_leads l "
        "JOIN residents x ON x.id=l.resident_id WHERE l.node_id=h.building_id AND x.roles NOT LIKE '%grid%' "
        "AND (x.wecom_userid IS NOT NULL OR x.oa_openid IS NOT NULL)) ORDER BY r.id LIMIT 1")


def boss(store) -> dict:
    return staff(store)


async def open_by_chat(sim, person, scope: str, question: str = "加装电梯", extra: str = "") -> int:
    text = f"议事 {scope}\n问题：{question}\n通过：三分之二 按户\n截止：6月8日18:00{extra}"
    preview = await say(sim, person, text)
    assert "回复“确认”发起" in preview and question in preview, preview
    opened = await say(sim, person, "确认")
    assert "已发起" in opened, opened
    return sim.store.scalar("SELECT MAX(id) FROM consultations")


async def test_staff_open_a_consultation_and_a_resident_votes_and_changes_it(sim):
    store = sim.store
    me = voter_in_building(store)
    cid = await open_by_chat(sim, boss(store), f"{me['compound']}/{me['building']}")
    c = consult.get(sim.app, cid)
    assert (c["kind"], c["threshold_num"], c["threshold_den"], c["opened_by"]) == ("approve", 2, 3, boss(store)["id"])
    assert json.loads(store.q1("SELECT scope FROM alerts WHERE id=?", (c["alert_id"],))["scope"]) == [me["building_id"]]
    # the notice went down the relay: the resident's household is reached like for any notice
    await sim.app.settle()
    assert store.scalar("SELECT COUNT(*) FROM hops WHERE alert_id=?", (c["alert_id"],)) > 0
    reply = await say(sim, me, "同意")
    assert "已记录您家的投票" in reply and "同意" in reply
    reply = await say(sim, me, "不同意")
    assert "已改为“不同意”" in reply
    b = store.q("SELECT choice, channel, resident_id FROM ballots WHERE consultation_id=? ORDER BY id", (cid,))
    assert b == [{"choice": 0, "channel": "oa", "resident_id": me["id"]},
                 {"choice": 1, "channel": "oa", "resident_id": me["id"]}]
    listing = await say(sim, me, "议事")
    assert f"议事{cid}" in listing and "您家已投“不同意”" in listing and "/vote/" in listing


async def test_plain_acks_still_reach_the_acks_router(sim):
    store = sim.store
    me = voter_in_building(store)
    cid = await open_by_chat(sim, boss(store), f"{me['compound']}/{me['building']}")
    alert_id = consult.get(sim.app, cid)["alert_id"]
    reply = await say(sim, me, "收到")
    assert "已记录您家的投票" not in reply
    assert store.q1("SELECT * FROM acks WHERE alert_id=? AND household_id=?", (alert_id, me["household_id"]))
    await say(sim, me, "1")
    assert store.scalar("SELECT COUNT(*) FROM ballots") == 0


async def test_a_lead_votes_for_a_household_without_a_phone(sim):
    store = sim.store
    me = voter_in_building(store)
    cid = await open_by_chat(sim, boss(store), f"{me['compound']}/{me['building']}")
    lead = store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id WHERE l.node_id=? "
                    "AND r.roles NOT LIKE '%grid%' AND (r.wecom_userid IS NOT NULL OR r.oa_openid IS NOT NULL) "
                    "ORDER BY l.rank LIMIT 1", (me["building_id"],))
    reply = await say(sim, lead, f"代投 {me['building']}{me['room']} 同意")
    assert "代投" in reply and "同意" in reply, reply
    ballot = store.q1("SELECT * FROM ballots WHERE consultation_id=?", (cid,))
    assert (ballot["household_id"], ballot["channel"], ballot["by_proxy_id"]) == (me["household_id"], "proxy",
                                                                                 lead["id"])
    # a resident with no role cannot vote for a neighbour
    store.conn.execute("UPDATE households SET steward_id=NULL WHERE id=?", (me["household_id"],))
    other = store.q1("SELECT * FROM residents WHERE roles='resident' AND oa_openid IS NOT NULL AND household_id!=? "
                     "ORDER BY id LIMIT 1", (me["household_id"],))
    reply = await say(sim, other, f"代投 {me['building']}{me['room']} 不同意")
    assert "不能替" in reply
    assert store.scalar("SELECT COUNT(*) FROM ballots WHERE consultation_id=?", (cid,)) == 1


async def test_a_vote_after_closing_is_refused(sim):
    store = sim.store
    me = voter_in_building(store)
    cid = await open_by_chat(sim, boss(store), f"{me['compound']}/{me['building']}")
    sim.clock.advance(consult.get(sim.app, cid)["closes_at"] - sim.clock.now() + 1)
    reply = await say(sim, me, "同意")
    assert "已经截止" in reply
    await sim.app.timers.run_due()
    assert consult.get(sim.app, cid)["state"] == "closed"
    reply = await say(sim, me, "不同意")
    assert "已经截止" in reply
    assert store.scalar("SELECT COUNT(*) FROM ballots WHERE consultation_id=?", (cid,)) == 0


async def test_several_open_ask_which_and_a_numbered_vote_answers(sim):
    store = sim.store
    me = voter_in_building(store)
    scope = f"{me['compound']}/{me['building']}"
    first = await open_by_chat(sim, boss(store), scope, "加装电梯")
    second = await open_by_chat(sim, boss(store), scope, "选物业", "\n选项：甲物业/乙物业\n通过：相对多数")
    assert consult.get(sim.app, second)["kind"] == "choose"
    reply = await say(sim, me, "选2")  # both have a second option
    assert "请注明是哪一项" in reply and f"议事{first}" in reply and f"议事{second}" in reply
    reply = await say(sim, me, f"议事{second} 选2")
    assert "乙物业" in reply
    reply = await say(sim, me, "同意")  # only the first has 同意
    assert "加装电梯" in reply and "同意" in reply
    assert {(r["consultation_id"], r["choice"]) for r in store.q("SELECT * FROM ballots")} == {(first, 0), (second, 1)}


async def test_a_non_owner_is_refused_politely_when_only_owners_vote(sim):
    store = sim.store
    me = voter_in_building(store)
    store.conn.execute("UPDATE residents SET owner=0 WHERE id=?", (me["id"],))
    owner = store.q1("SELECT id FROM residents WHERE household_id=? AND id!=? AND active=1", (me["household_id"],
                                                                                            me["id"]))
    if owner is None:  # a one-person household: give the household another resident who owns it
        owner = {"id": store.db["residents"].insert({"key": "owner-x", "name": "产权人甲", "household_id":
                                                     me["household_id"], "owner": 1}).last_pk}
    store.conn.execute("UPDATE residents SET owner=1 WHERE id=?", (owner["id"],))
    await open_by_chat(sim, boss(store), f"{me['compound']}/{me['building']}", extra="\n投票：业主")
    reply = await say(sim, me, "同意")
    assert "只由业主（产权人）投票" in reply
    assert store.scalar("SELECT COUNT(*) FROM ballots") == 0


async def test_preview_cancel_and_the_schedules_confirm_still_work(sim):
    store = sim.store
    me = voter_in_building(store)
    preview = await say(sim, boss(store), f"议事 {me['compound']}/{me['building']}\n问题：装充电桩")
    assert "回复“确认”发起" in preview
    assert "没有发起" in await say(sim, boss(store), "取消")
    assert store.scalar("SELECT COUNT(*) FROM consultations") == 0
    # a schedule's preview is answered by the schedules router, not this one
    await say(sim, boss(store), "定时 明天8点 通知 周六停水")
    await say(sim, boss(store), "确认")
    assert store.scalar("SELECT COUNT(*) FROM schedules") == 1 and store.scalar("SELECT COUNT(*) FROM consultations") == 0
    # a resident cannot open one; bad words are refused in Chinese
    assert "只有社区工作人员" in await say(sim, me, "议事\n问题：装充电桩")
    bad = await say(sim, boss(store), f"议事 {me['compound']}/{me['building']}\n问题：x\n通过：很多")
    assert "看不懂" in bad
    bad = await say(sim, boss(store), "议事 火星小区\n问题：x")
    assert "找不到" in bad


async def test_staff_close_early_or_cancel_from_chat(sim):
    store = sim.store
    me = voter_in_building(store)
    scope = f"{me['compound']}/{me['building']}"
    first = await open_by_chat(sim, boss(store), scope, "加装电梯")
    await say(sim, me, "同意")
    reply = await say(sim, boss(store), f"截止议事 {first}")
    assert "提前截止" in reply and "未通过" in reply  # 1 household of the whole building is short of 2/3
    c = consult.get(sim.app, first)
    assert c["state"] == "closed" and c["result_alert_id"] is not None
    assert "已经截止了" in await say(sim, boss(store), f"截止议事 {first}")
    second = await open_by_chat(sim, boss(store), scope, "装充电桩")
    carrier = consult.get(sim.app, second)["alert_id"]
    reply = await say(sim, boss(store), f"取消议事 {second}")
    assert "已取消议事" in reply
    assert consult.get(sim.app, second)["state"] == "cancelled"
    lift = store.q1("SELECT * FROM alerts WHERE supersedes_id=? AND action='lift'", (carrier,))
    assert lift is not None and "已取消" in lift["text"]
    # a resident cannot close one
    third = await open_by_chat(sim, boss(store), scope, "换门禁")
    await say(sim, me, f"截止议事 {third}")
    assert consult.get(sim.app, third)["state"] == "open"
