"""Vulnerable first: at orange/red every vulnerable resident in scope gets a one-to-one task at once,
whatever they answer; tasks have deadlines that escalate social worker → grid lead → staff (each told,
with the list); a resident with no social worker goes to the grid lead at once; visit outcomes
平安 / 需要帮助 / 不在家 / 已转移."""
from __future__ import annotations

import json

import pytest
from chat_rig import member, say  # noqa: F401
from sim_rig import close_sim, make_sim, staff

from bot.data import followups as followups_db
from bot.domain import alerts, escalation, followups
from bot.domain.alerts import Draft


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=120, seed=3)
    yield rig
    await close_sim(rig)


def vulnerable(store):
    return store.q("SELECT r.* FROM residents r JOIN households h ON h.id=r.household_id "
                   "WHERE r.active=1 AND r.vulnerable != '' ORDER BY r.id")


def texts_to(store, target):
    return [json.loads(r["payload"])["text"] for r in store.q(
        "SELECT payload FROM sends WHERE target=? AND purpose='followup' ORDER BY id", (target,))]




async def test_red_gives_every_vulnerable_resident_a_task_at_time_zero_even_if_they_answered(sim):
    people = vulnerable(sim.store)
    assert len(people) >= 3
    early = next(p for p in people if p["oa_openid"] or p["wecom_userid"])
    alert_id = alerts.issue(sim.app, Draft(type="台风", colour="red", issuer_id=staff(sim.store)["id"]))
    await say(sim, early, "1")  # answered at once: still visited
    tasks = followups_db.open_for_alert(sim.store, alert_id)
    assert {t["resident_id"] for t in tasks} == {p["id"] for p in people}
    assert {t["reason"] for t in tasks} == {"policy"}
    worker_task = next(t for t in tasks if t["level"] == 0)
    worker = sim.store.q1("SELECT * FROM residents WHERE id=?", (worker_task["worker_id"],))
    assert any("无论是否回复" in x for x in texts_to(sim.store, worker["wecom_userid"]))


async def test_yellow_only_follows_up_silence(sim):
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="yellow", issuer_id=staff(sim.store)["id"]))
    assert followups_db.open_for_alert(sim.store, alert_id) == []
    sim.clock.advance(60 * sim.settings.escalation.followup_after_min["yellow"] + 1)
    await escalation.run_due(sim.app)
    assert {t["reason"] for t in followups_db.open_for_alert(sim.store, alert_id)} == {"silent"}


async def test_a_missed_deadline_climbs_to_the_grid_lead_then_staff_each_told_with_the_list(sim):
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="red", issuer_id=staff(sim.store)["id"]))
    task = next(t for t in followups_db.open_for_alert(sim.store, alert_id) if t["level"] == 0)
    sim.clock.advance(60 * followups.DEFAULT_DEADLINE_MIN["red"] + 1)
    await escalation.run_due(sim.app)
    task = followups_db.get(sim.store, task["id"])
    assert task["level"] == 1
    grid = sim.store.q1("SELECT g.id FROM nodes b JOIN nodes c ON c.id=b.parent_id JOIN nodes g ON g.id=c.parent_id "
                        "WHERE b.id=?", (task["building_id"],))
    lead = sim.store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id WHERE l.node_id=? "
                        "AND l.rank=0", (grid["id"],))
    told = texts_to(sim.store, lead["wecom_userid"])
    assert any("跟进转交网格长" in x and task["name"] in x and task["room"] in x for x in told)
    sim.clock.advance(60 * followups.DEFAULT_DEADLINE_MIN["red"] + 1)
    await escalation.run_due(sim.app)
    assert followups_db.get(sim.store, task["id"])["level"] == 2
    boss = staff(sim.store)
    assert any("请社区处理" in x and task["name"] in x for x in texts_to(sim.store, boss["wecom_userid"]))
    # staff hold it now: no further timers for it
    sim.clock.advance(24 * 3600)
    await escalation.run_due(sim.app)
    assert followups_db.get(sim.store, task["id"])["level"] == 2


async def test_a_vulnerable_resident_without_a_social_worker_goes_to_the_grid_lead_at_once(sim):
    person = vulnerable(sim.store)[0]
    sim.store.conn.execute("UPDATE residents SET social_worker_id=NULL WHERE id=?", (person["id"],))
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="red", issuer_id=staff(sim.store)["id"]))
    task = next(t for t in followups_db.open_for_alert(sim.store, alert_id) if t["resident_id"] == person["id"])
    assert task["level"] == 1
    assert sim.store.scalar("SELECT COUNT(*) FROM sends WHERE purpose='followup' AND payload LIKE ?",
                            (f"%{person['name']}%",)) >= 1


async def _worker_and_task(sim, colour="red"):
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour=colour, issuer_id=staff(sim.store)["id"]))
    task = next(t for t in followups_db.open_for_alert(sim.store, alert_id) if t["level"] == 0)
    worker = sim.store.q1("SELECT * FROM residents WHERE id=?", (task["worker_id"],))
    return alert_id, task, worker


async def test_visit_outcomes_safe_help_moved(sim):
    alert_id, task, worker = await _worker_and_task(sim)
    reply = await say(sim, worker, f"已上门 #{task['id']} 平安")
    assert "跟进已完成" in reply
    done = followups_db.get(sim.store, task["id"])
    assert done["state"] == "closed" and done["outcome"] == "safe"
    others = [t for t in followups_db.open_of_worker(sim.store, worker["id"])]
    if len(others) >= 2:
        reply = await say(sim, worker, f"已上门 #{others[0]['id']} 需要帮助 家里漏水了")
        req = sim.store.q1("SELECT * FROM requests WHERE household_id=? AND urgency='urgent'",
                           (others[0]["household_id"],))
        assert req is not None and "#" in reply
        await say(sim, worker, f"已上门 #{others[1]['id']} 已转移 到女儿家")
        assert followups_db.get(sim.store, others[1]["id"])["outcome"] == "moved"


async def test_not_home_keeps_the_task_open_and_asks_again(sim):
    alert_id, task, worker = await _worker_and_task(sim)
    reply = await say(sim, worker, f"已上门 #{task['id']} 不在家")
    assert "还没有完成" in reply
    f = followups_db.get(sim.store, task["id"])
    assert f["state"] == "open" and f["outcome"] == "not_home"
    sim.clock.advance(60 * followups.DEFAULT_RETRY_MIN + 1)
    await escalation.run_due(sim.app)
    again = [x for x in texts_to(sim.store, worker["wecom_userid"]) if "上次没有见到人" in x]
    assert again and followups_db.get(sim.store, task["id"])["level"] == 0  # asked again, not escalated yet


async def test_the_board_shows_open_overdue_and_done_by_worker(sim):
    alert_id, task, worker = await _worker_and_task(sim)
    await say(sim, worker, f"已上门 #{task['id']} 平安")
    rows = followups.board(sim.app, staff(sim.store), alert_id)
    states = {r["id"]: r["board_state"] for r in rows}
    assert states[task["id"]] == "done" and "open" in states.values()
    sim.clock.advance(60 * followups.DEFAULT_DEADLINE_MIN["red"] + 1)
    rows = followups.board(sim.app, staff(sim.store), alert_id)
    assert "overdue" in {r["board_state"] for r in rows}
    # a building lead sees none of it
    lead = sim.store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes n "
                        "ON n.id=l.node_id WHERE n.kind='building' LIMIT 1")
    mine = sim.store.scalar("SELECT node_id FROM node_leads WHERE resident_id=? LIMIT 1", (lead["id"],))
    visible = followups.board(sim.app, lead, alert_id)
    assert [r["id"] for r in visible] == [r["id"] for r in rows if r["building_id"] == mine]


async def test_a_warning_for_vulnerable_households_only_from_chat(sim):
    boss = staff(sim.store)
    preview = await say(sim, boss, "发布 黄色 高温 对象:独居老人")
    assert "独居老人家庭" in preview
    await say(sim, boss, "确认")
    alert_id = sim.store.scalar("SELECT MAX(id) FROM alerts")
    want = {r["household_id"] for r in sim.store.q(
        "SELECT DISTINCT r.household_id FROM residents r JOIN households h ON h.id=r.household_id "
        "WHERE r.active=1 AND h.active=1 AND r.vulnerable LIKE '%独居老人%'")}
    got = {r["household_id"] for r in sim.store.q("SELECT household_id FROM alert_targets WHERE alert_id=?",
                                                  (alert_id,))}
    assert want and got == want
    assert sim.store.scalar("SELECT SUM(households) FROM coverage_counts WHERE alert_id=?", (alert_id,)) == len(want)
    # no group posts: each targeted household is messaged on its own, nobody else
    assert sim.store.scalar("SELECT COUNT(*) FROM hops WHERE alert_id=? AND method!='direct'", (alert_id,)) == 0
    # every such resident is visited, whatever the colour
    visited = {t["household_id"] for t in followups_db.open_for_alert(sim.store, alert_id)}
    assert visited == want
    # a household outside the audience answering counts nothing
    other = sim.store.q1("SELECT * FROM residents WHERE oa_openid IS NOT NULL AND household_id NOT IN "
                         f"({','.join(map(str, want))}) LIMIT 1")
    await say(sim, other, "收到")
    assert sim.store.scalar("SELECT COUNT(*) FROM acks WHERE alert_id=? AND household_id=?",
                            (alert_id, other["household_id"])) == 0


async def test_a_social_worker_sees_the_tasks_of_the_residents_in_their_care(sim):
    from bot.domain import areas

    alert_id, task, worker = await _worker_and_task(sim)
    clients = {r["id"] for r in sim.store.q("SELECT id FROM residents WHERE social_worker_id=?", (worker["id"],))}
    area = areas.buildings_of(sim.store, worker)
    assert area  # a worker has an area (and so can log in to the dashboard): where their clients live
    mine = followups.board(sim.app, worker, alert_id)
    assert task["id"] in {r["id"] for r in mine}
    assert {r["resident_id"] for r in mine if r["worker_id"] == worker["id"]} <= clients
