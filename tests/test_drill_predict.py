"""The drill prediction: history from past warnings, a replay on a temporary store + world with
people who behave as the history says, and how it compares with the drill itself (same seed)."""
import pytest

from bot.data import drills as drills_db
from bot.demo import behaviours_from, drive_warning, open_world_run, replay_with
from bot.domain import drills
from bot.domain.alerts import Draft
from bot.world.people import Behaviour, Behaviours, Delay

HORIZON = 3600.0


def truth_behaviours(world):
    """The 'real' people: some leads never forward, the rest slow or quick; some residents never read."""
    b = Behaviours()
    for n, (uid, row) in enumerate(sorted(world.people.person.items())):
        roles = row["roles"].split(",")
        if "building_lead" in roles:
            b.people[uid] = (Behaviour(forward_probability=0.0) if n % 4 == 0 else
                             Behaviour(forward_probability=1.0, forward_delay=Delay(60, 900)))
        elif row["oa_openid"]:
            b.people[uid] = (Behaviour(reply_probability=0.0) if n % 6 == 0 else
                             Behaviour(reply_probability=1.0, reply_delay=Delay(30, 1200)))
    return b


@pytest.fixture
async def run(tmp_path, settings_and_register):
    settings, register, groups = settings_and_register
    r = await open_world_run(settings, register, groups, seed=3, workdir=tmp_path)
    r.world.people.behaviours = truth_behaviours(r.world)
    yield r
    await r.close()


@pytest.fixture
def settings_and_register(tmp_path):
    from bot.core.config import load
    from bot.world.dalong import generate

    info = generate(tmp_path / "register.csv", households=80, seed=6)
    return load("config.toml", env={}), info["register"], info["groups_file"]


async def test_history_reads_each_leads_forward_delays_and_each_buildings_answers(run):
    alert_id = await drive_warning(run, Draft(type="暴雨", colour="yellow", expires_h=1), seed=11,
                                   horizon_s=HORIZON + 60)
    h = drills.history(run.store)
    assert h.alerts == [alert_id]
    asked = drills_db.forward_delays(run.store, [alert_id])
    assert asked and sum(p.asked for p in h.leads.values()) == len(asked)
    done = [r for r in asked if r["done_at"] is not None]
    assert sorted(d for p in h.leads.values() for d in p.delays) == pytest.approx(
        sorted(r["done_at"] - r["asked_at"] for r in done))
    # leads the truth made absent never forwarded: their probability is 0
    absent = {u for u, b in run.world.people.behaviours.people.items() if b.forward_probability == 0.0}
    seen_absent = [h.leads[u] for u in absent if u in h.leads]
    assert seen_absent and {p.probability for p in seen_absent} == {0.0}
    replies = {w for w, *_ in run.world.people.truth["replies"]}
    assert sum(p.acted for p in h.buildings.values()) == len(
        {w for w in replies if run.world.people.person[w]["oa_openid"]})
    b = behaviours_from(h)
    some = next(iter(h.buildings))
    assert b.buildings[some].reply_probability == h.buildings[some].probability


async def test_history_holds_each_social_workers_pace(run):
    # orange: every vulnerable resident gets a follow-up at once; workers visit one after another
    for uid, row in run.world.people.person.items():
        if "social_worker" in row["roles"].split(","):
            run.world.people.behaviours.people[uid] = Behaviour(forward_delay=Delay(60, 60), task_s=Delay(240, 240))
    alert_id = await drive_warning(run, Draft(type="暴雨", colour="orange", expires_h=1), seed=11,
                                   horizon_s=HORIZON + 60)
    h = drills.history(run.store)
    closed = drills_db.visit_times(run.store, [alert_id])
    assert closed and sum(p.acted for p in h.workers.values()) == len(closed)
    assert sorted({round(d) for p in h.workers.values() for d in p.delays}) == [240]
    b = behaviours_from(h)
    worker = next(iter(h.workers))
    assert b.people[worker].task_s.samples == tuple(h.workers[worker].delays)


async def test_predict_replays_on_a_separate_store_and_compares_with_the_drill(run, settings_and_register):
    settings, register, groups = settings_and_register
    for n, (type_, colour) in enumerate((("暴雨", "yellow"), ("台风", "yellow"))):
        await drive_warning(run, Draft(type=type_, colour=colour, expires_h=1), seed=20 + n, horizon_s=HORIZON + 60)
    alerts_before = len(drills_db.past_alerts(run.store))
    deliveries_before = len(run.world.state.deliveries)
    draft = Draft(type="雷雨大风", colour="yellow", status="exercise", expires_h=1)
    predicted = await drills.predict(run.app, draft, 5, replay=replay_with(settings, register, groups,
                                                                            horizon_s=HORIZON))
    # nobody was disturbed: no alert in the real store, nothing delivered in the real world
    assert len(drills_db.past_alerts(run.store)) == alerts_before
    assert len(run.world.state.deliveries) == deliveries_before
    assert predicted["history_alerts"] == 2 and predicted["grids"] and predicted["slowest"]
    assert predicted["report"]["drill"] is True
    # the same seed and history replay the same prediction
    again = await drills.predict(run.app, draft, 5, replay=replay_with(settings, register, groups, horizon_s=HORIZON))
    assert again["grids"] == predicted["grids"]
    alert_id = await drive_warning(run, draft, seed=5, horizon_s=HORIZON)
    observed = drills.summarise(drills.after_action(run.store, alert_id, settings=run.settings))
    rows = drills.compare(predicted, observed)
    assert {r["grid"] for r in rows} == set(observed["grids"])
    # history-shaped people land near the real ones: half the households answer within a few
    # minutes of the drill's own time in every grid
    for r in rows:
        assert r["predicted_t50_s"] is not None and r["observed_t50_s"] is not None
        assert abs(r["error_t50_s"]) < 600


async def test_predict_refuses_bad_input(run, settings_and_register):
    settings, register, groups = settings_and_register
    replay = replay_with(settings, register, groups, horizon_s=60)
    with pytest.raises(drills.DrillError, match="seed"):
        await drills.predict(run.app, Draft(type="暴雨", colour="yellow"), "7", replay=replay)
    with pytest.raises(drills.DrillError, match="unknown place"):
        await drills.predict(run.app, Draft(type="暴雨", colour="yellow", scope=[99999]), 7, replay=replay)
    with pytest.raises(drills.DrillError, match="horizon"):
        await drills.predict(run.app, Draft(type="暴雨", colour="yellow"), 7,
                             replay=replay_with(settings, register, groups, horizon_s=0))


def test_history_of_nothing_is_empty(tmp_path):
    from bot.data.store import Store

    h = drills.history(Store(tmp_path / "empty.db"))
    assert h.leads == {} and h.buildings == {} and h.alerts == []
    assert behaviours_from(h).people == {}
