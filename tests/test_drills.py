"""Drills (演练): a warning with exercise status runs the real chain, marked 【演练】 in every message,
its acks counted in its own figures; a real warning issued during a drill takes the reply words."""
from __future__ import annotations

import json

import pytest
from chat_rig import member, say  # noqa: F401
from sim_rig import close_sim, make_sim, staff

from bot.data import acks as acks_db
from bot.domain import alerts
from bot.domain.alerts import Draft
from bot.domain.coverage import coverage


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=40)
    yield rig
    await close_sim(rig)






async def test_a_drill_from_chat_is_marked_in_every_message(sim):
    boss = staff(sim.store)
    preview = await say(sim, boss, "演练 黄色 暴雨")
    assert "【演练】" in preview
    await say(sim, boss, "确认")
    drill = sim.store.q1("SELECT * FROM alerts")
    assert drill["status"] == "exercise"
    payloads = [json.loads(r["payload"])["text"] for r in sim.store.q(
        "SELECT payload FROM sends WHERE alert_id=? AND purpose IN ('hop','ask','direct')", (drill["id"],))]
    assert payloads and all("【演练】" in p and "演练" in p for p in payloads)


async def test_acks_count_in_the_drills_own_figures_and_a_real_warning_takes_precedence(sim):
    drill = alerts.issue(sim.app, Draft(type="暴雨", colour="yellow", status="exercise"))
    a, b = member(sim.store, 0), member(sim.store, 3)
    await say(sim, a, "收到")
    assert coverage(sim.store, drill)["acked"] == 1
    real = alerts.issue(sim.app, Draft(type="台风", colour="yellow"))
    reply = await say(sim, b, "收到")
    assert "台风黄色预警" in reply and "暴雨" not in reply
    assert acks_db.last_of_household(sim.store, real, b["household_id"]) is not None
    assert acks_db.last_of_household(sim.store, drill, b["household_id"]) is None
    assert coverage(sim.store, real)["acked"] == 1 and coverage(sim.store, drill)["acked"] == 1
