"""People with their own behaviour (per person, per building), serial social workers, the manual
chain without Linli, and the wall-clock driver's concurrency and lag measure."""
import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from bot.core.clock import FakeClock
from bot.core.config import load
from bot.world.dalong import generate
from bot.world.people import Behaviour, Behaviours, Delay, place_key
from bot.world.sim import World

T0 = 1_717_200_000.0
ALERT = "【大龙社区】暴雨黄色预警：测试"


def settings(**world):
    s = load("config.toml", env={})
    return dataclasses.replace(s, world=dataclasses.replace(s.world, **world))


@pytest.fixture
def register(tmp_path):
    info = generate(tmp_path / "reg.csv", households=40, seed=4)
    return Path(info["register"]), Path(info["groups_file"])


def world_of(register, behaviours=None, **world):
    w = World(settings(**world), register[0], groups=register[1], clock=FakeClock(T0), behaviours=behaviours)
    w.people.manual = True  # nobody to write to: people's answers go to the ground truth only
    return w


async def drain(world, end):
    clock, people = world.clock, world.people
    while people.next_at() is not None and people.next_at() <= end:
        clock.t = max(clock.t, people.next_at())
        await people.run_until(clock.t)


def test_delay_and_behaviour_refuse_nonsense():
    assert Delay.of([1, 2]) == Delay(1.0, 2.0)
    assert Delay.of(Delay(samples=(3.0,))).draw(random.Random(1)) == 3.0
    for bad in ([2, 1], [1], "1-2", [True, 3], [-1, 2]):
        with pytest.raises(ValueError):
            Delay.of(bad)
    with pytest.raises(ValueError):
        Delay(samples=(-1.0,))
    with pytest.raises(ValueError, match="reply_probability"):
        Behaviour(reply_probability=1.5)
    with pytest.raises(ValueError, match="forward_probability"):
        Behaviour(forward_probability=-0.1)


async def test_a_persons_own_behaviour_wins_over_the_buildings_and_the_config(register):
    w = world_of(register, resident_reply_probability=1.0, resident_delay_s=[10, 20])
    people = w.people
    g = next(g for g in w.register.groups if len(g.place) == 4)
    chat_id = people.groups_by_name[g.name]
    residents = sorted(u for u in w.state.groups[chat_id].members if people.person[u]["oa_openid"])
    assert len(residents) >= 3
    silent, slow = residents[0], residents[1]
    people.behaviours = Behaviours(
        people={silent: Behaviour(reply_probability=0.0)},
        buildings={place_key(g.place): Behaviour(reply_probability=1.0, reply_delay=Delay(600, 700))})
    people.behaviours.people[slow] = Behaviour(reply_delay=Delay(samples=(1234.0,)))
    w.state.deliver_to_group(chat_id, ALERT, "human")
    await drain(w, T0 + 3600)
    when = {who: at - T0 for who, _, _, at in people.truth["replies"]}
    assert silent not in when
    assert when[slow] == 1234.0
    others = [when[r] for r in residents[2:]]
    assert others and min(others) >= 600 and max(others) <= 700
    # in another building the config's figures hold
    g2 = next(x for x in w.register.groups if len(x.place) == 4 and x.place != g.place)
    chat2 = people.groups_by_name[g2.name]
    w.state.deliver_to_group(chat2, ALERT, "human")
    await drain(w, T0 + 7200)
    theirs = [at - w.state.groups[chat2].messages[0].at for who, _, _, at in people.truth["replies"]
              if who in w.state.groups[chat2].members]
    assert theirs and min(theirs) >= 10 and max(theirs) <= 20


async def test_a_social_worker_with_task_s_works_one_task_after_another(register):
    w = world_of(register)
    people = w.people
    worker = next(u for u, r in people.person.items() if "social_worker" in r["roles"].split(","))
    people.behaviours.people[worker] = Behaviour(task_s=Delay(300, 300))
    for n in range(3):
        w.state.deliver_to_user(worker, f"【一对一跟进 #{n + 1}】\n住址：大龙一区1栋10{n + 1}\n", "wecom_app")
    await drain(w, T0 + 7200)
    times = [at - T0 for who, _, at in people.truth["visits"] if who == worker]
    assert times == [300.0, 600.0, 900.0]


async def test_the_manual_chain_goes_as_far_as_people_forward(register):
    """Grid lead -> compound lead group -> building group, by hand; an absent building lead's
    residents never hear of it."""
    w = world_of(register, resident_reply_probability=1.0, lead_forward_probability=1.0,
                 lead_delay_s=[60, 60], resident_delay_s=[30, 30])
    people, rf = w.people, w.register
    places = {}
    for g in rf.groups:
        places.setdefault(tuple(g.place), []).append(g)
    grid = next(p for p in places if len(p) == 2)
    grid_lead = rf.leads_of(grid)[0].wecom_userid
    compounds = [people.groups_by_name[g.name] for p, gs in places.items() if len(p) == 3 and p[:2] == grid
                 for g in gs]
    people.lead_below(grid_lead, compounds)
    buildings = [g for p, gs in places.items() if len(p) == 4 and p[:2] == grid for g in gs]
    absent_group = buildings[0]
    for g in buildings:
        people.lead_below(rf.owner_of(g), [people.groups_by_name[g.name]])
    people.behaviours.people[rf.owner_of(absent_group)] = Behaviour(forward_probability=0.0)
    chat = w.state.groups[people.groups_by_name[next(g.name for g in places[grid])]]
    w.state.human_post(chat.chat_id, grid_lead, ALERT)
    await drain(w, T0 + 3600)
    forwarded = {group for _, group, _ in people.truth["forwards"]}
    assert absent_group.name not in forwarded and {g.name for g in buildings[1:]} <= forwarded
    answered = {hh for _, hh, _, _ in people.truth["replies"]}
    absent_households = {p.household for p in rf.people if p.building == tuple(absent_group.place)}
    assert answered and not answered & absent_households
    # grid lead at 60 s, building lead at 120 s, residents at 150 s: nobody earlier
    assert min(at for _, _, _, at in people.truth["replies"]) - T0 == pytest.approx(150.0)


async def test_start_due_keeps_each_persons_order_and_measures_lag(register):
    w = world_of(register)
    people = w.people
    order = []

    async def act(a):
        await asyncio.sleep(0.01 if a.data["n"] == 0 else 0)
        order.append((a.who, a.data["n"]))

    people._act = act
    who = next(iter(people.person))
    for n in range(3):
        people._push(T0 + n, "reply", who, {"n": n})
    people._push(T0, "reply", "someone-else", {"n": 9})
    w.clock.t = T0 + 10
    assert await people.start_due(w.clock.now(), limit=2) == 4
    await people.drain()
    assert [n for p, n in order if p == who] == [0, 1, 2]
    stats = people.lag_stats()
    assert stats["actions"] == 4 and stats["max_s"] == 10.0 and stats["p50_s"] >= 8.0


def test_lag_stats_when_nothing_happened(register):
    assert world_of(register).people.lag_stats() == {"actions": 0, "p50_s": 0.0, "p95_s": 0.0, "max_s": 0.0}


async def test_the_demo_reports_how_far_behind_people_are(register):
    from bot.demo import _world_counts, world_stats

    w = world_of(register, resident_reply_probability=1.0, resident_delay_s=[10, 10])
    g = next(g for g in w.register.groups if len(g.place) == 4)
    w.state.deliver_to_group(w.people.groups_by_name[g.name], ALERT, "human")
    w.clock.t = T0 + 40  # people get to it 30 s late
    await w.people.run_until(w.clock.now())
    stats = world_stats(w)
    assert stats["truth"]["replies"] == stats["actions"] > 0 and stats["recent_max_s"] == 30.0
    assert world_stats(w, since=stats["actions"])["recent_max_s"] == 0.0
    line = _world_counts(stats)
    assert "p50 30.0 s" in line and "goal < 30 s" in line
