"""Timers come from the database: a new process on the same file arms the same next timer, and
each escalation step still happens exactly once across the restart."""
from sim_rig import T0, close_sim, make_sim, staff

from bot.app import App
from bot.core.clock import FakeClock
from bot.domain import alerts, escalation
from bot.domain.alerts import Draft


async def test_restart_rearms_and_fires_once(tmp_path):
    rig = await make_sim(tmp_path, households=30)
    try:
        alert_id = alerts.issue(rig.app, Draft(type="寒潮", colour="blue", issuer_id=staff(rig.store)["id"]))
        await rig.app.settle()
        first_due = rig.app.timers.rearm()
        assert rig.app.scheduler.armed[escalation.JOB] == first_due
        assert first_due == T0 + 60 * rig.settings.relay.building_deadline_min  # the earliest hop deadline
        # "restart": a new App on the same file, later in the day
        later = FakeClock(T0 + 60 * rig.settings.escalation.remind_after_min["blue"] + 5)
        app2 = App(rig.settings, clock=later)
        await app2.start()
        try:
            assert app2.scheduler.armed[escalation.JOB] == first_due  # overdue: armed, runs now
            done = await escalation.run_due(app2)
            assert done["reminders"] > 0 and done["hops"] > 0
            again = await escalation.run_due(app2)
            assert again["reminders"] == 0 and again["hops"] == 0
        finally:
            await app2.close()
        app3 = App(rig.settings, clock=FakeClock(later.t + 1))
        await app3.start()
        try:
            assert (await escalation.run_due(app3))["reminders"] == 0
            assert rig.store.scalar("SELECT COUNT(*) FROM events WHERE kind='alert.reminded' AND ref_id=?",
                                    (alert_id,)) == 1
            # the next timer is the follow-up time, armed from the rows
            assert app3.scheduler.armed[escalation.JOB] <= T0 + 60 * rig.settings.escalation.followup_after_min["blue"]
        finally:
            await app3.close()
    finally:
        await close_sim(rig)
