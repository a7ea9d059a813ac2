"""The Dalong story end to end through the local world: simulated leads and residents (some
leads never forward, some residents never reply, some vulnerable residents stay silent). Every
figure Linli reports must equal the world's ground truth, and every escalation must fire once at
its simulated time."""
import pytest
from sim_rig import T0, close_sim, household_labels, make_sim, run_until, staff

from bot.domain import alerts
from bot.domain.acks import coverage
from bot.domain.alerts import Draft

HOUR = 3600.0


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(
        tmp_path, households=400, seed=3,
        world=dict(lead_forward_probability=0.6, resident_reply_probability=0.6, request_probability=0.05,
                   lead_delay_s=[20, 400], resident_delay_s=[10, 900], seed=5),
        escalation=dict(default_expiry_h=2))
    yield rig
    await close_sim(rig)


def households_of(rig, users) -> set[str]:
    """The households (by label: the world knows no database ids) these accounts live in."""
    person = rig.world.people.person
    return {person[u]["household"] for u in users if person[u]["household"] is not None}


async def test_dalong_story_matches_ground_truth(sim):
    app, store, world, people = sim.app, sim.store, sim.world.state, sim.world.people
    issuer = staff(store)
    alert_id = alerts.issue(app, Draft(type="雷雨大风", colour="yellow", issuer_id=issuer["id"]))
    alert = store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))
    await run_until(app, sim.world, T0 + 2 * HOUR + 60)
    label = household_labels(store)

    # -- deliveries: households a message about the warning actually reached ---------------------
    texts = {d.id: d.text for d in world.deliveries}
    truth_reached = households_of(sim, {who for who, did in people.truth["received"]
                                        if "雷雨大风黄色预警" in texts[did]})
    linli_reached = {label[r["household_id"]] for r in store.q(
        "SELECT household_id FROM deliveries WHERE alert_id=?", (alert_id,))}
    assert linli_reached == truth_reached and truth_reached

    # -- acks: replies, proxy confirmations and visits --------------------------------------------
    truth_acked = households_of(sim, {who for who, _, _, _ in people.truth["replies"]})
    truth_acked |= {hh for _, hh, _ in people.truth["proxy"]}
    visited_rooms = {room for _, room, _ in people.truth["visits"]}
    truth_acked |= visited_rooms  # a follow-up task names the household by its label
    linli_acked = {label[r["household_id"]] for r in store.q(
        "SELECT DISTINCT household_id FROM acks WHERE alert_id=?", (alert_id,))}
    assert linli_acked == truth_acked
    cov = coverage(store, alert_id)
    assert cov["acked"] == len(truth_acked) and cov["reached"] == len(truth_reached)
    assert 0 < cov["acked"] < cov["households"]  # some never answered: the story is not trivial

    # -- follow-ups: un-acked vulnerable residents at the follow-up time --------------------------
    t_follow = T0 + 60 * sim.settings.escalation.followup_after_min["yellow"]
    acked_before = households_of(sim, {who for who, _, _, at in people.truth["replies"] if at <= t_follow})
    acked_before |= {hh for _, hh, at in people.truth["proxy"] if at <= t_follow}
    # the world's register says who is vulnerable, and where they live
    truth_followups = {(p.name, p.household) for p in sim.world.register.people
                       if p.vulnerable and p.household and p.household not in acked_before}
    linli_followups = {(r["name"], label[r["household_id"]]) for r in store.q(
        "SELECT r.name, f.household_id FROM followups f JOIN residents r ON r.id=f.resident_id WHERE f.alert_id=?",
        (alert_id,))}
    assert linli_followups == truth_followups and truth_followups
    # each worker got exactly one direct message per task, with the room and phone
    for f in store.q("SELECT f.id, w.wecom_userid FROM followups f JOIN residents w ON w.id=f.worker_id "
                     "WHERE f.alert_id=?", (alert_id,)):
        tasks = [d for d in world.messages_for(f["wecom_userid"]) if f"【一对一跟进 #{f['id']}】" in d.text]
        assert len(tasks) == 1 and "电话" in tasks[0].text

    # -- escalations fired once, at their simulated times -----------------------------------------
    ev = {k: store.q("SELECT at FROM events WHERE kind=? AND ref_id=?", (k, alert_id))
          for k in ("alert.reminded", "alert.summary")}
    assert [e["at"] for e in ev["alert.reminded"]] == [T0 + 60 * sim.settings.escalation.remind_after_min["yellow"]]
    assert [e["at"] for e in ev["alert.summary"]] == [alert["expires_at"]]
    assert {r["created_at"] for r in store.q("SELECT created_at FROM followups WHERE alert_id=?", (alert_id,))} == {t_follow}
    deadline = 60 * sim.settings.relay.building_deadline_min
    for hop in store.q("SELECT * FROM hops WHERE alert_id=? AND escalation_level > 0", (alert_id,)):
        steps = store.q("SELECT at, data FROM events WHERE ref_type='hop' AND ref_id=? AND kind IN "
                        "('hop.asked','hop.escalated') ORDER BY id", (hop["id"],))
        times = [s["at"] for s in steps]
        assert times == sorted(times) and len(set(times)) == len(times)  # once per step
        assert all(round(b - a) in (deadline, 3 * 60) for a, b in zip(times, times[1:]))
    # silent leads really were gone around: some hops escalated to direct messages
    assert store.scalar("SELECT COUNT(*) FROM hops WHERE alert_id=? AND state='escalated'", (alert_id,)) > 0
    # the issuer got the summary
    summary = [d for d in world.messages_for(issuer["wecom_userid"]) if "【预警汇总】" in d.text]
    assert len(summary) == 1 and f"{cov['acked']}/{cov['households']}" in summary[0].text
    # nothing silently dropped: every send ended in a recorded state
    assert store.scalar("SELECT COUNT(*) FROM sends WHERE state IN ('pending','sending')") == 0
