"""Every staff/lead chat command against every role: allowed or refused, and no reply shows names
or rooms outside the sender's area (a grid lead's "汇总" covers their grid only, as the dashboard)."""
from __future__ import annotations

import pytest
from chat_rig import member, say  # noqa: F401
from sim_rig import close_sim, make_sim, staff

from bot.domain import alerts, escalation
from bot.domain.alerts import Draft


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=120, seed=5)
    yield rig
    await close_sim(rig)




def people(store) -> dict[str, dict]:
    grid_leads = store.q("SELECT r.*, l.node_id FROM node_leads l JOIN residents r ON r.id=l.resident_id "
                         "JOIN nodes n ON n.id=l.node_id WHERE n.kind='grid' AND l.rank=0 AND r.wecom_userid "
                         "IS NOT NULL ORDER BY n.id")
    building_lead = store.q1("SELECT r.*, l.node_id FROM node_leads l JOIN residents r ON r.id=l.resident_id "
                             "JOIN nodes n ON n.id=l.node_id WHERE n.kind='building' AND r.wecom_userid IS NOT NULL "
                             "ORDER BY n.id LIMIT 1")
    worker = store.q1("SELECT * FROM residents WHERE roles LIKE '%social_worker%' AND wecom_userid IS NOT NULL LIMIT 1")
    res = store.q1("SELECT * FROM residents WHERE roles='resident' AND oa_openid IS NOT NULL "
                   "AND household_id IS NOT NULL LIMIT 1")
    return {"staff": staff(store), "grid_lead": grid_leads[0], "other_grid_lead": grid_leads[1],
            "building_lead": building_lead, "social_worker": worker, "resident": res}


ISSUE_ROLES = {"staff"}


@pytest.mark.parametrize("role", ["staff", "grid_lead", "building_lead", "social_worker", "resident"])
async def test_only_staff_issue_update_and_lift(sim, role):
    who = people(sim.store)[role]
    await say(sim, who, "发布 黄色 暴雨")
    await say(sim, who, "确认")
    issued = sim.store.scalar("SELECT COUNT(*) FROM alerts")
    assert issued == (1 if role in ISSUE_ROLES else 0)
    if issued:
        alert_id = sim.store.scalar("SELECT id FROM alerts")
    else:
        alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="yellow"))
    await say(sim, who, f"解除 #{alert_id}")
    await say(sim, who, "确认")
    lifted = sim.store.scalar("SELECT COUNT(*) FROM alerts WHERE action='lift'")
    assert lifted == (1 if role in ISSUE_ROLES else 0)


async def test_a_grid_leads_summary_covers_their_grid_only(sim):
    p = people(sim.store)
    mine, theirs = p["grid_lead"], p["other_grid_lead"]
    # a warning for the other grid, with vulnerable residents there still silent and followed up
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="yellow", scope=[theirs["node_id"]]))
    sim.clock.advance(3 * 3600)
    await escalation.run_due(sim.app)
    await sim.app.settle()
    other_names = [r["name"] for r in sim.store.q(
        "SELECT r.name FROM followups f JOIN residents r ON r.id=f.resident_id WHERE f.alert_id=?", (alert_id,))]
    other_rooms = [r["label"] for r in sim.store.q(
        "SELECT h.label FROM households h JOIN alert_scope s ON s.building_id=h.building_id WHERE s.alert_id=?",
        (alert_id,))]
    assert other_names and other_rooms
    reply = await say(sim, mine, f"汇总 #{alert_id}")
    assert reply  # they get an answer …
    for name in other_names:
        assert name not in reply  # … with no name …
    for room in other_rooms:
        assert room not in reply  # … and no room of the other grid
    # the other grid's own lead and staff do see them
    for reader in (theirs, p["staff"]):
        text = await say(sim, reader, f"汇总 #{alert_id}")
        assert any(n in text for n in other_names)


@pytest.mark.parametrize("role, allowed", [("staff", True), ("grid_lead", True), ("building_lead", False),
                                           ("social_worker", False), ("resident", False)])
async def test_summary_command_by_role(sim, role, allowed):
    alerts.issue(sim.app, Draft(type="暴雨", colour="yellow"))
    reply = await say(sim, people(sim.store)[role], "汇总")
    assert ("覆盖" in reply or "确认" in reply) if allowed else ("户已确认" not in reply)


@pytest.mark.parametrize("role, allowed", [("staff", True), ("grid_lead", True), ("building_lead", True),
                                           ("social_worker", False), ("resident", False)])
async def test_proxy_ack_by_role_and_area(sim, role, allowed):
    p = people(sim.store)
    alerts.issue(sim.app, Draft(type="暴雨", colour="yellow"))
    lead = p["building_lead"]
    h = sim.store.q1("SELECT * FROM households WHERE building_id=? ORDER BY id DESC LIMIT 1", (lead["node_id"],))
    who = p[role]
    if role == "grid_lead":  # the grid lead whose grid holds that building
        who = sim.store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes g ON "
                           "g.id=l.node_id JOIN nodes c ON c.parent_id=g.id JOIN nodes b ON b.parent_id=c.id "
                           "WHERE b.id=? AND l.rank=0", (lead["node_id"],))
    place = sim.store.q1("SELECT c.name || b.name AS place FROM nodes b JOIN nodes c ON c.id=b.parent_id "
                         "WHERE b.id=?", (lead["node_id"],))["place"]
    unit = h["unit"] if h["unit"] else ""
    await say(sim, who, f"代确认 {place}{unit}{h['room']}")
    acked = sim.store.scalar("SELECT COUNT(*) FROM acks WHERE household_id=? AND channel='proxy'", (h["id"],))
    assert acked == (1 if allowed else 0)


async def test_a_building_lead_cannot_confirm_outside_their_building(sim):
    p = people(sim.store)
    alerts.issue(sim.app, Draft(type="暴雨", colour="yellow"))
    lead = p["building_lead"]
    far = sim.store.q1("SELECT h.*, n.name AS building, c.name AS compound FROM households h "
                       "JOIN nodes n ON n.id=h.building_id JOIN nodes c ON c.id=n.parent_id "
                       "WHERE h.building_id != ? ORDER BY h.id DESC LIMIT 1", (lead["node_id"],))
    await say(sim, lead, f"代确认 {far['compound']}{far['building']}{far['room']}")
    assert sim.store.scalar("SELECT COUNT(*) FROM acks WHERE household_id=?", (far["id"],)) == 0
