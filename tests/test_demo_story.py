"""The demo narrates what a secretary would follow (reminders at 15 minutes, relay hops moving past
silent leads, follow-up tasks at 30) in Chinese, says what the summary's 确认 / 送达 mean, prints one
resident count everywhere, creates a building lead's dashboard account, and stops its clock at the
end of the story. Fast: a small generated register on a FakeClock, no full demo run."""
from __future__ import annotations

import time

import pytest
from sim_rig import close_sim, make_sim, run_until, staff

from bot.data import accounts
from bot.data import demo as demo_data
from bot.demo import (
    StoryClock,
    create_lead_account,
    narrate,
    register_counts,
    story_lines,
    summary_legend,
)
from bot.domain import alerts, escalation
from bot.domain.alerts import Draft
from bot.domain.register import format_tree, import_register
from bot.web import auth

T = 1_717_200_000.0


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=120, seed=5,
                         escalation={"default_expiry_h": 1.0, "remind_after_min": {"yellow": 15},
                                     "followup_after_min": {"yellow": 30}})
    yield rig
    await close_sim(rig)


async def test_the_story_narrates_reminders_and_follow_ups_once_each_in_order(sim):
    alert_id = alerts.issue(sim.app, Draft(type="雷雨大风", colour="yellow", issuer_id=staff(sim.store)["id"]))
    start = sim.clock.now()
    await run_until(sim.app, sim.world, start + 20 * 60)
    first, after = narrate(sim.store, alert_id, start)
    await run_until(sim.app, sim.world, start + 61 * 60)
    later, after2 = narrate(sim.store, alert_id, start, after)
    reminders = [x for x in first if "再发一次预警提醒" in x]
    assert len(reminders) == 1 and reminders[0].startswith("[+ 15.0 分钟]")
    assert not [x for x in later if "再发一次预警提醒" in x]  # read once, not again
    assert [x for x in later if "一对一上门跟进任务" in x]  # the follow-ups at 30 minutes
    assert after2 > after
    again, after3 = narrate(sim.store, alert_id, start, after2)
    assert again == [] and after3 == after2


def _hop(i: int, level: int, kind: str = "hop.asked") -> dict:
    return {"id": i, "at": T + 600 + i, "kind": kind, "data": {"level": level, "alert_id": 1},
            "actor": f"李{i}", "place": f"{i}号楼", "place_kind": "building", "resident": None, "worker": None}


def test_a_few_silent_leads_are_named_and_many_are_counted():
    few = story_lines([_hop(1, 1), _hop(2, 2)], T)
    assert few == ["[+ 10.0 分钟] 1号楼的楼长没有转发，已改请备用楼长李1转发",
                   "[+ 10.0 分钟] 2号楼的楼长和备用楼长都没有转发，已请网格长李2代为转发"]
    many = story_lines([_hop(i, 1 if i % 2 else 2) for i in range(1, 9)], T, named=3)
    assert len(many) == 1
    assert "8 个群的负责人没有按时转发" in many[0] and "备用楼长（4 个）" in many[0] and "网格长（4 个）" in many[0]
    assert "1号楼、2号楼、3号楼 等" in many[0]
    direct = story_lines([_hop(1, 3, "hop.escalated")], T)
    assert direct == ["[+ 10.0 分钟] 1 个群无人转发，已改为逐户直接发给住户：1号楼"]


def test_stewards_asked_at_issue_and_those_late_are_one_line_each():
    def steward(i, kind="hop.asked"):
        e = _hop(i, 0 if kind == "hop.asked" else 3, kind)
        e["data"]["steward"] = True
        return e
    lines = story_lines([steward(1), steward(2), steward(3), steward(1, "hop.escalated"), _hop(9, 3, "hop.escalated")], T)
    assert lines == ["[+ 10.0 分钟] 已请 3 位党员中心户把预警转告各自联系的住户（每人约十户，没有微信的打电话或上门）",
                     "[+ 10.0 分钟] 1 位党员中心户没有按时转告，已改为逐户直接发给他们联系的住户",
                     "[+ 10.2 分钟] 1 个群无人转发，已改为逐户直接发给住户：9号楼"]


def test_the_first_hops_at_issue_are_not_news_and_no_events_say_nothing():
    assert story_lines([_hop(1, 0)], T) == []
    assert story_lines([], T) == []


def test_follow_up_tasks_are_counted_by_who_holds_them():
    def task(i, level, worker, kind="followup.created"):
        return {"id": i, "at": T + 1800, "kind": kind, "data": {"level": level, "alert_id": 1},
                "actor": worker, "place": None, "place_kind": None, "resident": "王", "worker": worker}
    lines = story_lines([task(1, 0, "社工甲"), task(2, 0, "社工甲"), task(3, 0, "社工乙"), task(4, 1, None)], T)
    assert lines == ["[+ 30.0 分钟] 已为 4 位重点关注居民（独居老人等）建立一对一上门跟进任务，派给 2 位社工；"
                     "1 件没有可联系的社工，直接交网格长"]
    up = story_lines([task(5, 1, None, "followup.escalated"), task(6, 2, None, "followup.escalated")], T)
    assert up == ["[+ 30.0 分钟] 1 件跟进任务社工超时未处理，已上报网格长；1 件网格长也超时，已上报社区工作人员"]


async def test_the_summary_says_what_its_numbers_mean(sim):
    alert_id = alerts.issue(sim.app, Draft(type="雷雨大风", colour="yellow", issuer_id=staff(sim.store)["id"]))
    await run_until(sim.app, sim.world, sim.clock.now() + 61 * 60)
    summary = escalation.summary_text(sim.store, alerts.get(sim.store, alert_id))
    legend = summary_legend(sim.store, alert_id)
    proxy = demo_data.proxy_only_households(sim.store, alert_id)
    assert "「送达」是至少一位家庭成员通过微信或企业微信收到预警的户数" in legend
    assert f"其中 {proxy} 户没有自己回复，是楼长或邻居替没有微信的住户代为确认的" in legend
    assert "确认户数可以多于送达户数" in legend
    assert "确认：" in summary and "送达" in summary  # the lines the legend explains


def test_summary_legend_of_a_warning_nobody_answered_says_zero(sim_store):
    store, alert_id = sim_store
    assert "其中 0 户没有自己回复" in summary_legend(store, alert_id)


@pytest.fixture
def sim_store(tmp_path):
    from bot.data.store import Store
    from bot.world.dalong import generate

    info = generate(tmp_path / "r.csv", households=20, seed=1)
    store = Store(tmp_path / "x.db")
    import_register(store, tmp_path / "r.csv", groups_path=info["groups_file"], now=T)
    yield store, 999_999  # an alert id with no acks at all
    store.close()


def test_one_resident_count_everywhere(tmp_path):
    from bot.data.store import Store
    from bot.world.dalong import generate

    info = generate(tmp_path / "r.csv", households=40, seed=2)
    store = Store(tmp_path / "x.db")
    report = import_register(store, tmp_path / "r.csv", groups_path=info["groups_file"], now=T)
    counts = register_counts(store, report)
    assert counts["people"] == report.residents == counts["residents"] + counts["others"]
    assert counts["households"] == report.households
    # the tree the demo prints counts the same residents (those living in a household)
    assert f"residents={counts['residents']} " in format_tree(counts["roots"]).splitlines()[0]
    store.close()


def test_the_demo_creates_a_building_lead_account_with_a_scoped_view(tmp_path):
    from bot.data.store import Store
    from bot.world.dalong import generate

    info = generate(tmp_path / "r.csv", households=40, seed=2)
    store = Store(tmp_path / "x.db")
    import_register(store, tmp_path / "r.csv", groups_path=info["groups_file"], now=T)
    lead = create_lead_account(store, "pw-123")
    assert lead is not None and lead["lead_user"] == "lead"
    row = accounts.user_by_name(store, "lead")
    assert row is not None and row["resident_id"] is not None
    assert auth.verify_password("pw-123", row["password_hash"])
    person = auth.person_for(store, row)
    scope = auth.scope_of(store, person)
    assert scope is not None and len(scope) >= 1  # sees its building(s), not the whole community
    store.close()


def test_a_register_without_building_leads_gets_no_lead_account(tmp_path):
    from bot.data.store import Store

    store = Store(tmp_path / "empty.db")
    assert create_lead_account(store, "pw") is None
    store.close()


def test_the_story_clock_stops_and_later_times_never_come():
    clock = StoryClock(30.0, start=T)
    stopped = clock.stop()
    assert clock.stop() == stopped  # stopping twice keeps the first moment
    assert clock.now() == stopped
    assert clock.to_wall(stopped + 60) > time.time() + 365 * 86400
    assert clock.to_wall(stopped - 60) < time.time() + 60
    assert clock.wall_seconds(1.0) > 365 * 86400


def test_a_running_story_clock_runs_scaled():
    clock = StoryClock(30.0, start=T)
    assert clock.stopped_at is None
    assert T <= clock.now() < T + 3600
    assert clock.wall_seconds(60.0) == 2.0


async def test_the_demo_refuses_to_empty_the_store_of_a_config_on_the_real_platforms(tmp_path, capsys):
    import dataclasses

    from sim_rig import settings_for

    from bot.demo import run_demo

    s = settings_for(tmp_path)
    s = dataclasses.replace(s, wecom=dataclasses.replace(s.wecom, api_base="https://qyapi.weixin.qq.com"))
    db = tmp_path / "linli.db"
    db.write_bytes(b"a real community's data")
    assert await run_demo(s, exit_at_end=True) == 2
    assert db.read_bytes() == b"a real community's data"
    assert "refusing to run the demo" in capsys.readouterr().out


async def test_the_demo_refuses_a_speed_that_is_not_positive(tmp_path, capsys):
    from sim_rig import settings_for

    from bot.demo import run_demo

    assert await run_demo(settings_for(tmp_path), speed=0, exit_at_end=True) == 2
    assert "--speed must be > 0" in capsys.readouterr().out
