"""The demo's second chapter, played on a small Dalong-shaped world with the injected clock: every
step goes through the platform's callbacks, and the loops end where the story says they do."""
from __future__ import annotations

import pytest
from sim_rig import close_sim, make_sim

from bot import demo_loops
from bot.domain import consult, scores


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=200, seed=11)  # large enough for units of 9+ owners
    yield rig
    await close_sim(rig)


async def test_the_chapter_passes_a_lift_vote_rates_a_wish_and_publishes_the_month(sim, capsys):
    secretary = sim.world.person_with_role("staff")
    await demo_loops.play(sim.app, sim.world, secretary)
    out = capsys.readouterr().out
    store = sim.store
    (c,) = [consult.get(sim.app, r["id"]) for r in store.q("SELECT id FROM consultations")]
    assert c["state"] == "closed" and c["unit"] and c["result"]["outcome"] == "passed"
    need = c["result"]["need"]
    assert c["result"]["counts"][0] == need  # reached exactly: the steward's proxy vote was the last one
    ballots = store.q("SELECT * FROM ballots WHERE consultation_id=? ORDER BY id", (c["id"],))
    assert sum(b["channel"] == "proxy" for b in ballots) == 1
    changed = store.q("SELECT * FROM events WHERE kind='consult.vote_changed' AND ref_id=?", (c["id"],))
    assert len(changed) == 1
    (wish,) = store.q("SELECT * FROM requests WHERE kind='wish'")
    assert wish["claim_state"] == "claimed" and wish["hours"] == 1 and wish["rating"] == 5
    month = scores.current_month(sim.clock.now(), sim.settings.timezone)
    assert store.q1("SELECT * FROM score_months WHERE month=?", (month,))["alert_id"]
    assert "通过" in out and "登记册里找不到" not in out
