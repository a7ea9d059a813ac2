import json

import pytest
from sim_rig import close_sim, make_sim, staff

from bot.data import relay as relay_db
from bot.domain import alerts, escalation, relay
from bot.domain.acks import coverage
from bot.domain.alerts import AlertError, Draft


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=60)
    yield rig
    await close_sim(rig)


def hop_states(store, alert_id):
    return {r["state"]: r["n"] for r in store.q(
        "SELECT state, COUNT(*) n FROM hops WHERE alert_id=? GROUP BY state", (alert_id,))}


async def test_plan_posts_where_it_can_and_asks_leads_elsewhere(sim):
    store = sim.store
    alert_id = alerts.issue(sim.app, Draft(type="雷雨大风", colour="yellow", issuer_id=staff(store)["id"]))
    groups = store.scalar("SELECT COUNT(*) FROM chat_groups WHERE active=1")
    assert store.scalar("SELECT COUNT(*) FROM hops WHERE alert_id=?", (alert_id,)) == groups
    methods = {r["kind"]: r["method"] for r in store.q(
        "SELECT g.kind, h.method FROM hops h JOIN chat_groups g ON g.id=h.group_id WHERE h.alert_id=?",
        (alert_id,))}
    assert methods["app_chat"] == "post" and methods["robot"] == "post"
    assert methods["personal"] == "ask_lead"
    # every intended send is an outbox row before anything is sent
    assert store.scalar("SELECT COUNT(*) FROM sends WHERE alert_id=? AND state='pending'", (alert_id,)) > 0
    await sim.app.settle()
    posted = store.q("SELECT * FROM hops WHERE alert_id=? AND method='post'", (alert_id,))
    assert posted and all(h["state"] == "posted" for h in posted)
    # the world really got the posts, and the lead the request to forward
    grid_chat = store.q1("SELECT chat_id FROM chat_groups WHERE kind='app_chat' LIMIT 1")["chat_id"]
    assert "雷雨大风黄色预警" in sim.world.state.group_messages(grid_chat)[0].text
    ask = store.q1("SELECT h.*, r.wecom_userid FROM hops h JOIN residents r ON r.id=h.lead_id "
                   "WHERE h.alert_id=? AND h.method='ask_lead' LIMIT 1", (alert_id,))
    inbox = sim.world.state.messages_for(ask["wecom_userid"])
    assert any("请把下面这条预警转发到" in d.text for d in inbox)


async def test_lead_forward_marks_hop_and_delivers_households(sim):
    store = sim.store
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="blue", issuer_id=staff(store)["id"]))
    await sim.app.settle()
    hop = store.q1("SELECT * FROM hops WHERE alert_id=? AND method='ask_lead' AND state='asked' LIMIT 1",
                   (alert_id,))
    lead = store.q1("SELECT * FROM residents WHERE id=?", (hop["lead_id"],))
    await sim.world.people.callbacks.send_text("wecom", lead["wecom_userid"], "已转发")
    await sim.app.settle()
    hop = store.q1("SELECT * FROM hops WHERE id=?", (hop["id"],))
    assert hop["state"] == "forwarded" and hop["done_by"] == lead["id"]
    delivered = store.scalar("SELECT COUNT(*) FROM deliveries WHERE alert_id=? AND household_id IN "
                             "(SELECT id FROM households WHERE building_id=?)", (alert_id, hop["node_id"]))
    assert delivered == len(relay_db.reachable_households(store, hop["node_id"])) > 0
    reply = store.q1("SELECT payload FROM sends WHERE purpose='reply' ORDER BY id DESC LIMIT 1")
    assert "已转发" in json.loads(reply["payload"])["text"]


async def test_missed_deadline_escalates_backup_grid_then_direct(sim):
    store, clock = sim.store, sim.clock
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="blue", issuer_id=staff(store)["id"]))
    await sim.app.settle()
    hop = store.q1("SELECT * FROM hops WHERE alert_id=? AND method='ask_lead' LIMIT 1", (alert_id,))
    levels = [hop["escalation_level"]]
    leads = [hop["lead_id"]]
    for _ in range(4):
        clock.advance(sim.settings.relay.building_deadline_min * 60 + 1)
        await escalation.run_due(sim.app)
        await sim.app.settle()
        h = store.q1("SELECT * FROM hops WHERE id=?", (hop["id"],))
        levels.append(h["escalation_level"])
        leads.append(h["lead_id"])
        if h["state"] == "escalated":
            break
    assert h["state"] == "escalated" and levels[-1] == relay.LAST_LEVEL
    assert levels == sorted(levels) and len(set(leads)) == len(leads) - 1  # a new person each step
    grid_lead = store.q1("SELECT l.resident_id FROM node_leads l JOIN nodes n ON n.id=l.node_id "
                         "WHERE n.kind='grid' AND l.rank=0 AND n.id=(SELECT parent_id FROM nodes WHERE id="
                         "(SELECT parent_id FROM nodes WHERE id=?))", (hop["node_id"],))["resident_id"]
    assert grid_lead in leads
    direct = store.q("SELECT * FROM sends WHERE key LIKE ?", (f"hop:{hop['id']}:direct%",))
    assert direct and all(r["state"] == "sent" for r in direct)
    # one event per step, each escalation exactly once even if run again
    await escalation.run_due(sim.app)
    assert store.scalar("SELECT COUNT(*) FROM events WHERE kind='hop.escalated' AND ref_id=?", (hop["id"],)) == 1


async def test_failed_post_escalates_at_once(sim):
    sim.world.state.inject("/cgi-bin/appchat/send", errcode=86003, times=None)  # chat gone
    store = sim.store
    alert_id = alerts.issue(sim.app, Draft(type="高温", colour="orange", issuer_id=staff(store)["id"]))
    await sim.app.settle()
    hops = store.q("SELECT h.* FROM hops h JOIN chat_groups g ON g.id=h.group_id WHERE h.alert_id=? "
                   "AND g.kind='app_chat'", (alert_id,))
    sends = store.q("SELECT state, error_code FROM sends WHERE channel='wecom_appchat' AND alert_id=?", (alert_id,))
    assert all(s["state"] == "failed" and s["error_code"] == 86003 for s in sends)
    assert all(h["state"] in ("asked", "failed") and h["escalation_level"] >= 1 for h in hops)


async def test_bad_commands_are_errors(sim):
    with pytest.raises(AlertError):
        alerts.issue(sim.app, Draft(type="地震", colour="yellow"))
    with pytest.raises(AlertError):
        alerts.resolve_scope(sim.store, ["不存在的小区"])


async def test_scope_limits_the_plan(sim):
    store = sim.store
    compound = store.q1("SELECT * FROM nodes WHERE kind='compound' ORDER BY id LIMIT 1")
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="yellow", scope=[compound["id"]]))
    in_scope = set(alerts.scope_buildings(store, [compound["id"]]))
    assert {r["building_id"] for r in store.q("SELECT building_id FROM alert_scope WHERE alert_id=?",
                                              (alert_id,))} == in_scope
    nodes = {r["node_id"] for r in store.q("SELECT node_id FROM hops WHERE alert_id=?", (alert_id,))}
    assert nodes <= in_scope | {compound["id"]}
    cov = coverage(store, alert_id)
    assert cov["households"] == store.scalar(
        f"SELECT COUNT(*) FROM households WHERE building_id IN ({','.join(map(str, in_scope))})")
