"""The after-action report (复盘) of a drill and of a real warning, checked against the world's
ground truth on a small register driven on a FakeClock: time to X% per area, each hop's forward
delay, leads gone around, households never reached, vulnerable residents not visited in time;
its CSV/XLSX export and the per-grid curves."""
import csv
import io

import openpyxl
import pytest
from sim_rig import T0, close_sim, household_labels, make_sim, run_until

from bot.domain import alerts, drills
from bot.domain.acks import coverage
from bot.domain.alerts import Draft

HOUR = 3600.0


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(
        tmp_path, households=120, seed=3,
        world=dict(lead_forward_probability=0.5, resident_reply_probability=0.6, lead_delay_s=[20, 600],
                   resident_delay_s=[10, 900], seed=5),
        escalation=dict(default_expiry_h=2))
    yield rig
    await close_sim(rig)


@pytest.fixture
async def drill(sim):
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="orange", status="exercise"))
    await run_until(sim.app, sim.world, T0 + 2 * HOUR + 60)
    return alert_id, drills.after_action(sim.store, alert_id, settings=sim.settings)


async def test_time_to_each_milestone_matches_the_worlds_answers(sim, drill):
    alert_id, rep = drill
    assert rep["drill"] is True
    people = sim.world.people
    first: dict[str, float] = {}
    for _, hh, _, at in people.truth["replies"]:
        if hh:
            first[hh] = min(at, first.get(hh, at))
    for _, hh, at in people.truth["proxy"]:
        first[hh] = min(at, first.get(hh, at))
    for _, room, at in people.truth["visits"]:
        first[room] = min(at, first.get(room, at))
    times = sorted(first.values())
    assert rep["acked"] == len(times) == coverage(sim.store, alert_id)["acked"] > 0
    for pct in (50, 90):
        need = -(-pct * rep["households"] // 100)
        expected = times[need - 1] - T0 if need <= len(times) else None
        assert rep["time_to"][pct] == pytest.approx(expected) if expected is not None else rep["time_to"][pct] is None
    kinds = {a["kind"] for a in rep["areas"]}
    assert {"community", "grid", "compound", "lead"} <= kinds
    grids = [a for a in rep["areas"] if a["kind"] == "grid"]
    assert sum(g["households"] for g in grids) == rep["households"]
    assert sum(g["acked"] for g in grids) == rep["acked"]
    # a milestone is never earlier than a lower one
    for a in rep["areas"]:
        got = [a["time_to"][p] for p in drills.MILESTONES if a["time_to"][p] is not None]
        assert got == sorted(got)


async def test_hops_leads_gone_around_and_households_never_reached(sim, drill):
    alert_id, rep = drill
    store = sim.store
    asked = [h for h in rep["hops"] if h["method"] in ("ask_lead", "customer")]
    assert asked
    for h in asked:
        row = store.q1("SELECT * FROM hops WHERE id=?", (h["hop_id"],))
        if row["done_at"] is None:
            assert h["forward_delay_s"] is None
        else:
            assert h["forward_delay_s"] == pytest.approx(row["done_at"] - row["created_at"])
    # every ask that was followed by another ask (or by direct messages) is a lead gone around
    gone = store.scalar("SELECT COUNT(*) FROM hops WHERE alert_id=? AND escalation_level > 0", (alert_id,))
    assert gone > 0 and {m["hop_id"] for m in rep["missed"]} == {
        r["id"] for r in store.q("SELECT id FROM hops WHERE alert_id=? AND escalation_level > 0", (alert_id,))}
    for m in rep["missed"]:
        assert m["then"] in ("backup", "grid", "direct", "failed") and m["deadline_s"] > m["asked_s"]
    # never reached: the households the world's people never got any message of this warning
    label = household_labels(store)
    reached = {label[r["household_id"]] for r in store.q(
        "SELECT household_id FROM deliveries WHERE alert_id=?", (alert_id,))}
    assert {n["label"] for n in rep["never_reached"]} == set(label.values()) - reached


async def test_vulnerable_not_visited_in_time(sim, drill):
    alert_id, rep = drill
    store = sim.store
    # orange: every vulnerable resident gets a task at once; the worker visits after a lead's delay
    tasks = store.q("SELECT f.*, r.name FROM followups f JOIN residents r ON r.id=f.resident_id "
                    "WHERE f.alert_id=?", (alert_id,))
    assert tasks
    late = {t["name"] for t in tasks if t["closed_at"] is None or t["closed_at"] - T0 > rep["visit_within_s"]}
    assert {v["name"] for v in rep["vulnerable_late"] if v["task"] != "none"} == late
    # with a tight window (5 simulated minutes) more are late, each with the reason why
    tight = drills.after_action(store, alert_id, settings=sim.settings, visit_within_s=300)
    assert len(tight["vulnerable_late"]) >= len(rep["vulnerable_late"]) and tight["vulnerable_late"]
    assert {v["task"] for v in tight["vulnerable_late"]} <= {"none", "open", "late"}


async def test_export_csv_and_xlsx(sim, drill):
    alert_id, rep = drill
    raw = drills.export(rep, "csv")
    assert raw.startswith("\ufeff".encode())  # Excel reads the Chinese
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["演练复盘报告"]
    flat = [c for r in rows for c in r]
    assert "各转发环节" in flat and "始终未送达的住户" in flat and "未及时上门的困难群众" in flat
    assert len(rows) >= len(rep["areas"]) + len(rep["hops"]) + len(rep["never_reached"])
    wb = openpyxl.load_workbook(io.BytesIO(drills.export(rep, "XLSX")))
    assert len(wb.sheetnames) == 6
    areas = wb[wb.sheetnames[1]]
    assert areas.max_row == len(rep["areas"]) + 1
    with pytest.raises(drills.DrillError, match="csv, xlsx"):
        drills.export(rep, "pdf")


async def test_curves_per_grid(sim, drill):
    alert_id, rep = drill
    curves = drills.curves(sim.store, alert_id)
    grids = {a["name"]: a for a in rep["areas"] if a["kind"] == "grid"}
    assert set(curves) == set(grids)
    for name, pts in curves.items():
        assert pts[0] == (0.0, 0.0) and len(pts) <= drills.MAX_CURVE_POINTS
        assert [t for t, _ in pts] == sorted(t for t, _ in pts)
        assert pts[-1][1] == pytest.approx(grids[name]["pct"], abs=0.06)
    small = drills.curves(sim.store, alert_id, max_points=5)
    assert max(len(p) for p in small.values()) <= 5
    with pytest.raises(drills.DrillError):
        drills.curves(sim.store, alert_id, max_points=1)


def test_downsample_keeps_the_ends():
    pts = [(i, i) for i in range(1000)]
    out = drills.downsample(pts, 200)
    assert len(out) == 200 and out[0] == (0, 0) and out[-1] == (999, 999)
    assert drills.downsample(pts[:3], 200) == pts[:3]


def test_time_to_edges():
    assert drills.time_to([], 10, 50, 0) is None
    assert drills.time_to([5.0], 0, 50, 0) is None
    assert drills.time_to([1.0, 2.0], 2, 100, 0) == 2.0
    assert drills.time_to([1.0, 2.0], 4, 50, 0) == 2.0
    assert drills.time_to([1.0, 2.0], 4, 95, 0) is None


async def test_a_real_warning_gets_the_same_report(sim):
    alert_id = alerts.issue(sim.app, Draft(type="雷雨大风", colour="yellow"))
    await run_until(sim.app, sim.world, T0 + 20 * 60)
    rep = drills.after_action(sim.store, alert_id, settings=sim.settings)
    assert rep["drill"] is False and rep["households"] == 120
    assert drills.export(rep, "csv").decode("utf-8-sig").startswith("预警复盘报告")


async def test_bad_inputs(sim):
    with pytest.raises(drills.DrillError, match="no alert #999"):
        drills.after_action(sim.store, 999)
    with pytest.raises(drills.DrillError, match="no alert"):
        drills.curves(sim.store, 999)
    alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="yellow", status="exercise"))
    with pytest.raises(drills.DrillError, match="> 0"):
        drills.after_action(sim.store, alert_id, visit_within_s=0)
    # nothing happened yet: no milestones, nobody late, everyone not yet reached is listed
    rep = drills.after_action(sim.store, alert_id)
    assert rep["acked"] == 0 and rep["time_to"] == {p: None for p in drills.MILESTONES}
