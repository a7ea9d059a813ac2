"""Scheduled and recurring notices/warnings: time words, preview + confirm from chat, exactly one
alert per fire time across a restart, the missed-run rule both ways, pause/resume/cancel/edit, and
plain-Chinese refusals."""
from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sim_rig import T0, close_sim, make_sim, staff

from bot.app import App
from bot.core.clock import FakeClock
from bot.core.dispatcher import Dispatcher
from bot.domain import escalation, feed, schedules
from bot.domain.schedules import ScheduleError
from bot.domain.timers import JOB, Timers
from handlers import MIDDLEWARES, ROUTERS
from handlers import schedules as schedule_handlers

TZ = ZoneInfo("Asia/Shanghai")  # T0 is Saturday 2024-06-01 08:00 there


def at(y, mo, d, h, mi=0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp()


def wire(app) -> None:
    """What bot/app.py and handlers/__init__.py are asked to do: the chat router after alerts, the
    timer source next to escalation and the CAP feed."""
    if schedule_handlers.router not in ROUTERS:
        routers = list(ROUTERS)
        routers.insert(routers.index(next(r for r in ROUTERS if r.name == "alerts")) + 1, schedule_handlers.router)
    else:
        routers = ROUTERS
    app.dispatcher = Dispatcher(app, routers, MIDDLEWARES)
    app.timers = Timers(app, app.scheduler, [escalation, feed, schedules])


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=30)
    wire(rig.app)
    yield rig
    await close_sim(rig)


async def say(sim, who: dict, text: str) -> str:
    channel, uid = ("wecom", who["wecom_userid"]) if who.get("wecom_userid") else ("oa", who["oa_openid"])
    before = sim.store.scalar("SELECT COALESCE(MAX(id), 0) FROM sends WHERE purpose='reply'")
    await sim.world.people.callbacks.send_text(channel, uid, text)
    await sim.app.settle()
    rows = sim.store.q("SELECT payload FROM sends WHERE purpose='reply' AND id>? AND target=?", (before, uid))
    return "\n".join(json.loads(r["payload"])["text"] for r in rows)


def alerts_of(store) -> list[dict]:
    return store.q("SELECT * FROM alerts ORDER BY id")


def make_job(sim, when: str, text: str = "周六上午停水，请提前储水", **kw) -> int:
    job = schedules.draft(sim.app, when_words=when, text=text, issuer_id=staff(sim.store)["id"], **kw)
    return schedules.create(sim.app, job)


# -- time words ----------------------------------------------------------------------------------
@pytest.mark.parametrize("words, kind, first, spec", [
    ("明天8点", "once", at(2024, 6, 2, 8), None),
    ("后天下午3点", "once", at(2024, 6, 3, 15), None),
    ("明天晚上八点半", "once", at(2024, 6, 2, 20, 30), None),
    ("6月5日9点", "once", at(2024, 6, 5, 9), None),
    ("2024-06-05 08:30", "once", at(2024, 6, 5, 8, 30), None),
    ("下周一9点", "once", at(2024, 6, 3, 9), None),
    ("20点", "once", at(2024, 6, 1, 20), None),
    ("每月5号9点", "cron", at(2024, 6, 5, 9), {"day": 5, "hour": 9, "minute": 0}),
    ("每周一", "cron", at(2024, 6, 3, 9), {"day_of_week": "mon", "hour": 9, "minute": 0}),
    ("每天18点", "cron", at(2024, 6, 1, 18), {"hour": 18, "minute": 0}),
    ("每个工作日8点", "cron", at(2024, 6, 3, 8), {"day_of_week": "mon-fri", "hour": 8, "minute": 0}),
    ("每周一、四 8点半", "cron", at(2024, 6, 3, 8, 30), {"day_of_week": "mon,thu", "hour": 8, "minute": 30}),
    ("每年10月1日9点", "cron", at(2024, 10, 1, 9), {"month": 10, "day": 1, "hour": 9, "minute": 0}),
])
def test_time_words(words, kind, first, spec):
    w = schedules.parse_when(words, T0)
    assert (w.kind, w.first_at) == (kind, first)
    if spec is not None:
        assert w.spec == spec


def test_recurring_rules_step_through_the_calendar():
    monthly = schedules.parse_when("每月5号9点", T0)
    times = schedules.upcoming("cron", monthly.spec, T0, "Asia/Shanghai", 3)
    assert times == [at(2024, 6, 5, 9), at(2024, 7, 5, 9), at(2024, 8, 5, 9)]
    mondays = schedules.upcoming("cron", schedules.parse_when("每周一", T0).spec, T0, "Asia/Shanghai", 2)
    assert mondays == [at(2024, 6, 3, 9), at(2024, 6, 10, 9)]


@pytest.mark.parametrize("words, code", [
    ("7点", "past"), ("明天25点", "bad_clock"), ("明天下午", "need_hour"), ("每月32号", "bad_date"),
    ("每周八", "bad_repeat"), ("昨天8点", "bad_time"), ("2月30日8点", "bad_date"), ("每年2月30日", "bad_date"),
    ("明天8点61分", "bad_clock"), ("", "no_time"), ("随便什么时候", "bad_time"),
])
def test_bad_time_words_are_refused_with_a_reason(words, code):
    with pytest.raises(ScheduleError) as e:
        schedules.parse_when(words, T0)
    assert e.value.code == code


# -- the timer: once, exactly once across a restart ----------------------------------------------------
async def test_a_scheduled_notice_fires_once_across_a_restart(sim):
    sid = make_job(sim, "明天8点")
    due = at(2024, 6, 2, 8)
    assert schedules.next_due_at(sim.app) == due
    assert sim.app.timers.rearm() == due  # the one timer arms at the job's time (nothing else is due)
    assert alerts_of(sim.store) == []
    # "restart": a second App on the same file, at the fire time
    app2 = App(sim.settings, clock=FakeClock(due + 5))
    wire(app2)
    await app2.start()
    try:
        assert app2.scheduler.armed[JOB] == due  # re-armed from the rows alone
        done = await schedules.run_due(app2)
        assert done["schedules_sent"] == 1
        assert (await schedules.run_due(app2))["schedules_sent"] == 0
    finally:
        await app2.close()
    app3 = App(sim.settings, clock=FakeClock(due + 60))
    wire(app3)
    await app3.start()
    try:
        assert sum((await schedules.run_due(app3)).values()) == 0
    finally:
        await app3.close()
    rows = alerts_of(sim.store)
    assert len(rows) == 1 and rows[0]["kind"] == "notice" and "停水" in rows[0]["text"]
    assert "补发" not in rows[0]["text"]
    job = schedules.get(sim.app, sid)
    assert job["state"] == "done" and job["next_at"] is None
    assert [(r["outcome"], r["alert_id"]) for r in schedules.runs(sim.app, sid)] == [("sent", rows[0]["id"])]


async def test_a_recurring_notice_fires_each_month_from_its_template(sim):
    sid = make_job(sim, "每月5号9点", text="为老服务日 地点：党群服务中心一楼")
    for month in (6, 7):
        sim.clock.t = at(2024, month, 5, 9) + 1
        assert (await schedules.run_due(sim.app))["schedules_sent"] == 1
    rows = alerts_of(sim.store)
    assert len(rows) == 2
    assert "6月5日" in rows[0]["text"] and "为老服务日" in rows[0]["text"] and "党群服务中心一楼" in rows[0]["text"]
    assert "7月5日" in rows[1]["text"]
    assert schedules.get(sim.app, sid)["next_at"] == at(2024, 8, 5, 9)


# -- missed runs ----------------------------------------------------------------------------------
async def test_a_run_missed_while_down_is_sent_late_with_a_note(sim):
    sid = make_job(sim, "明天8点", missed="late")
    sim.clock.t = at(2024, 6, 2, 11)  # Linli was down from 07:00 to 11:00
    assert (await schedules.run_due(sim.app))["schedules_late"] == 1
    (row,) = alerts_of(sim.store)
    assert row["text"].startswith("（补发：原定 6月2日 08:00）") and "停水" in row["text"]
    assert schedules.runs(sim.app, sid)[0]["outcome"] == "late"


async def test_a_run_missed_while_down_is_skipped_by_its_rule(sim):
    sid = make_job(sim, "每天18点", missed="skip")
    sim.clock.t = at(2024, 6, 4, 9)  # down over three 18:00s: 1st, 2nd, 3rd
    done = await schedules.run_due(sim.app)
    assert done["schedules_skipped"] == 1 and done["schedules_sent"] == 0
    assert alerts_of(sim.store) == []
    assert [r["outcome"] for r in schedules.runs(sim.app, sid)] == ["skipped"] * 3
    assert schedules.get(sim.app, sid)["next_at"] == at(2024, 6, 4, 18)
    sim.clock.t = at(2024, 6, 4, 18)  # on time again: sent
    assert (await schedules.run_due(sim.app))["schedules_sent"] == 1


async def test_after_a_long_outage_late_sends_only_the_newest_missed_run(sim):
    sid = make_job(sim, "每天18点", missed="late")
    sim.clock.t = at(2024, 6, 4, 9)
    done = await schedules.run_due(sim.app)
    assert done["schedules_late"] == 1
    assert len(alerts_of(sim.store)) == 1 and "6月3日 18:00" in alerts_of(sim.store)[0]["text"]
    assert [r["outcome"] for r in schedules.runs(sim.app, sid)] == ["skipped", "skipped", "late"]


# -- managing ---------------------------------------------------------------------------------------
async def test_pause_resume_cancel_and_edit(sim):
    sid = make_job(sim, "每天18点")
    schedules.pause(sim.app, sid)
    assert schedules.next_due_at(sim.app) is None  # nothing armed while paused
    sim.clock.t = at(2024, 6, 2, 19)
    assert sum((await schedules.run_due(sim.app)).values()) == 0
    with pytest.raises(ScheduleError) as e:
        schedules.pause(sim.app, sid)
    assert e.value.code == "already_paused"
    row = schedules.resume(sim.app, sid)  # the paused 18:00 of the 2nd is not a missed run: next is the 3rd
    assert row["state"] == "active" and row["next_at"] == at(2024, 6, 3, 18)
    row = schedules.edit(sim.app, sid, when_words="每天20点", text="晚上八点关好门窗", missed="skip")
    assert row["next_at"] == at(2024, 6, 2, 20) and row["missed"] == "skip" and row["text"] == "晚上八点关好门窗"
    schedules.cancel(sim.app, sid)
    assert schedules.next_due_at(sim.app) is None
    sim.clock.t = at(2024, 6, 5, 20)
    assert sum((await schedules.run_due(sim.app)).values()) == 0
    assert alerts_of(sim.store) == []
    for act in (schedules.pause, schedules.resume, schedules.cancel):
        with pytest.raises(ScheduleError) as e:
            act(sim.app, sid)
        assert e.value.code == "ended"
    with pytest.raises(ScheduleError) as e:
        schedules.pause(sim.app, 999)
    assert e.value.code == "no_schedule"
    assert [r["id"] for r in schedules.list_schedules(sim.app)] == []
    assert [r["id"] for r in schedules.list_schedules(sim.app, include_ended=True)] == [sid]


async def test_a_failed_run_is_recorded_and_its_creator_told(sim):
    sid = make_job(sim, "明天8点", scope_words=["第一网格"])
    job = schedules.get(sim.app, sid)
    # by the fire time its scope names no building any more (a register re-import, say)
    sim.store.conn.execute("UPDATE schedules SET scope='[999999]' WHERE id=?", (sid,))
    sim.clock.t = job["next_at"] + 1
    assert (await schedules.run_due(sim.app))["schedules_failed"] == 1
    assert schedules.runs(sim.app, sid)[0]["outcome"] == "failed"
    told = sim.store.q("SELECT payload FROM sends WHERE purpose='schedule_failed'")
    assert len(told) == 1 and "没能完成" in json.loads(told[0]["payload"])["text"]
    assert alerts_of(sim.store) == []


# -- chat ---------------------------------------------------------------------------------------------
async def test_schedule_from_chat_with_preview_and_confirm(sim):
    boss = staff(sim.store)
    preview = await say(sim, boss, "定时 明天8点 通知 范围:第一网格 周六上午停水，请提前储水")
    assert "【定时预览】" in preview and "6月2日（周日）08:00" in preview and "停水" in preview
    assert "第一网格" in preview
    assert sim.store.scalar("SELECT COUNT(*) FROM schedules") == 0
    done = await say(sim, boss, "确认")
    sid = sim.store.scalar("SELECT id FROM schedules")
    assert f"#{sid}" in done
    listing = await say(sim, boss, "定时列表")
    assert f"#{sid}" in listing and "生效中" in listing
    assert "已暂停" in await say(sim, boss, f"暂停定时 #{sid}")
    assert "已恢复" in await say(sim, boss, f"恢复定时 #{sid}")
    changed = await say(sim, boss, f"修改定时 #{sid} 时间 后天下午3点")
    assert "已修改" in changed and "6月3日（周一）15:00" in changed
    assert "已取消" in await say(sim, boss, f"取消定时 #{sid}")
    assert alerts_of(sim.store) == []


async def test_recurring_template_notice_and_warning_from_chat(sim):
    boss = staff(sim.store)
    preview = await say(sim, boss, "每月5号9点 通知 为老服务日 地点：党群服务中心 错过:跳过")
    assert "每月5日 09:00" in preview and "为老服务日" in preview and "6月5日" in preview
    await say(sim, boss, "确认")
    row = sim.store.q1("SELECT * FROM schedules")
    assert row["template"] == "elderly_service_day" and row["missed"] == "skip" and row["text"] == "地点：党群服务中心"
    preview = await say(sim, boss, "定时 后天下午3点 发布 黄色 高温 午后气温38度")
    assert "高温黄色预警" in preview
    await say(sim, boss, "确认")
    warn = sim.store.q1("SELECT * FROM schedules WHERE type='高温'")
    assert warn["colour"] == "yellow" and warn["next_at"] == at(2024, 6, 3, 15)


async def test_chat_refusals_in_plain_chinese(sim):
    boss = staff(sim.store)
    assert "“7点”这个时间已经过了" in await say(sim, boss, "定时 7点 通知 开会")
    assert "看不懂重复方式" in await say(sim, boss, "每周八 通知 开会")
    assert "请写明几点" in await say(sim, boss, "定时 明天下午 通知 开会")
    assert "通知没有内容" in await say(sim, boss, "定时 明天8点 通知")
    assert "没有找到" in await say(sim, boss, "定时 明天8点 通知 范围:火星 开会")
    purple = await say(sim, boss, "定时 明天8点 发布 紫色 高温")
    assert "颜色“紫色”不认识" in purple and "定时列表" in purple  # the alert's reason, the schedule's format
    assert "高温预警信号没有“蓝色”" in await say(sim, boss, "定时 明天8点 发布 蓝色 高温")
    assert "没有编号为 #99 的定时" in await say(sim, boss, "暂停定时 #99")
    assert "不能修改" in await say(sim, boss, "修改定时 #1 颜色 红色")
    assert "补发”或“跳过" in await say(sim, boss, "定时 明天8点 通知 开会 错过:随便")
    assert sim.store.scalar("SELECT COUNT(*) FROM schedules") == 0


async def test_residents_cannot_schedule(sim):
    r = sim.store.q1("SELECT * FROM residents WHERE roles='resident' AND oa_openid IS NOT NULL LIMIT 1")
    await say(sim, r, "定时 明天8点 通知 开会")
    await say(sim, r, "确认")
    assert sim.store.scalar("SELECT COUNT(*) FROM schedules") == 0


async def test_a_template_that_is_gone_fails_the_run_without_looping(sim):
    sid = make_job(sim, "每月5号9点", text="为老服务日")
    sim.store.conn.execute("UPDATE schedules SET template='retired_template' WHERE id=?", (sid,))
    sim.clock.t = at(2024, 6, 5, 9) + 1
    assert (await schedules.run_due(sim.app))["schedules_failed"] == 1
    assert schedules.get(sim.app, sid)["next_at"] == at(2024, 7, 5, 9)  # moved on: the timer does not spin
    told = json.loads(sim.store.q1("SELECT payload FROM sends WHERE purpose='schedule_failed'")["payload"])["text"]
    assert "retired_template" in told and "没能完成：没能完成" not in told


async def test_the_example_recurring_notices_are_seeded_paused_once(sim):
    ids = schedules.seed_examples(sim.app, issuer_id=staff(sim.store)["id"])
    rows = schedules.list_schedules(sim.app)
    assert [r["id"] for r in rows] == ids and len(ids) == 3
    assert {r["template"] for r in rows} == {"elderly_service_day", "monthly_talk", "party_day"}
    assert {r["state"] for r in rows} == {"paused"} and schedules.next_due_at(sim.app) is None
    assert schedules.seed_examples(sim.app) == []  # again: nothing new
    for r in rows:  # each template renders for its first date
        job = schedules.resume(sim.app, r["id"])
        body = schedules.body_for(sim.app, job, job["next_at"])
        assert "大龙社区" in body and f"{schedules.at_parts(job['next_at'], 'Asia/Shanghai')['day']}日" in body
