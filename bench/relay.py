"""Benchmark: one alert to 100,000 residents through the local world.

What runs is the real thing: the register imported into a SQLite file, the world's platform APIs
over localhost HTTP, Linli's relay writing every hop and send to the outbox first, the outbox
worker sending with the platforms' own batching (one group post reaches a whole building), and
every state recorded. "Reached" is the world's ground truth: residents a message really got to.

Baseline, same process and machine: the same warning sent to a sample of residents one direct
message each (OA template notices), the way a bot without the tree and group posts would do it.
It runs under the same configured OA rate limit (10,000/min), so beyond a burst it is bounded by
what the platform allows per API, not by Linli's CPU.
Also: coverage() at 100k with 70% of households acknowledged (goal < 100 ms).

    python -m bench relay [--residents 100000] [--baseline 5000]
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path



async def _world_and_app(tmp: Path, residents: int, building_groups: str):
    from bot.app import App
    from bot.core.clock import Clock
    from bot.core.config import load
    from bot.world.dalong import generate
    from bot.domain.register import import_register
    from bot.data.store import Store
    from bot.world.sim import World

    reg = tmp / "register.csv"
    t = time.perf_counter()
    # size the register so that `residents` of them are on WeChat (about 84% are in the generator)
    info = generate(reg, households=round(residents / (2.41 * 0.84)), seed=1, building_groups=building_groups)
    t_gen = time.perf_counter() - t
    s = load("config.toml", env={})
    s = dataclasses.replace(
        s, store=dataclasses.replace(s.store, path=str(tmp / "linli.db")),
        world=dataclasses.replace(s.world, resident_reply_probability=0.0, lead_forward_probability=0.0),
        send=dataclasses.replace(s.send, concurrency=64))
    store = Store(s.store.path)
    t = time.perf_counter()
    import_register(store, reg, groups_path=info["groups_file"], now=time.time())
    t_import = time.perf_counter() - t
    world = World(s, reg, groups=info["groups_file"], clock=Clock())  # the same file, read the platform's way
    url = await world.start()
    await world.connect("http://127.0.0.1:9")  # people stay silent: this measures the fan-out
    s = dataclasses.replace(s, wecom=dataclasses.replace(s.wecom, api_base=url),
                            oa=dataclasses.replace(s.oa, api_base=url))
    app = App(s, store=store, clock=Clock())
    await app.start()
    return app, world, info, t_gen, t_import


def _reached(world, marker: str) -> int:
    people = set()
    for d in world.state.deliveries:
        if marker not in d.text:
            continue
        if d.user:
            people.add(d.user)
        else:
            people |= world.state.groups[d.chat_id].members
    person = world.people.person
    return sum(1 for u in people if u in person and person[u]["household"] is not None)


async def run_relay(residents: int) -> dict:
    from bot.domain import alerts
    from bot.domain.acks import coverage
    from bot.domain.alerts import Draft

    with tempfile.TemporaryDirectory() as d:
        app, world, info, t_gen, t_import = await _world_and_app(Path(d), residents, "robot")
        store = app.store
        calls0 = sum(world.state.calls.values())
        t0 = time.perf_counter()
        alert_id = alerts.issue(app, Draft(type="雷雨大风", colour="yellow"))
        t_plan = time.perf_counter() - t0
        await app.settle()
        t_total = time.perf_counter() - t0
        calls = sum(world.state.calls.values()) - calls0
        reached = _reached(world, "雷雨大风黄色预警")
        rows = store.scalar("SELECT COUNT(*) FROM sends WHERE alert_id=?", (alert_id,))
        states = {r["state"]: r["n"] for r in store.q(
            "SELECT state, COUNT(*) n FROM sends WHERE alert_id=? GROUP BY state", (alert_id,))}
        hh_reached = store.scalar("SELECT COUNT(*) FROM deliveries WHERE alert_id=?", (alert_id,))
        # coverage at scale: 70% of households acknowledge
        hh = [r["id"] for r in store.q("SELECT id FROM households")]
        rng = random.Random(3)
        now = time.time()
        with store.transaction() as conn:
            conn.executemany("INSERT INTO acks (alert_id, household_id, channel, at) VALUES (?,?,?,?)",
                             [(alert_id, h, "oa", now + rng.uniform(0, 900)) for h in hh if rng.random() < 0.7])
        times = []
        for _ in range(7):
            t = time.perf_counter()
            coverage(store, alert_id)
            times.append(time.perf_counter() - t)
        residents_total = store.scalar("SELECT COUNT(*) FROM residents WHERE household_id IS NOT NULL")
        reachable = store.scalar("SELECT COUNT(*) FROM residents WHERE household_id IS NOT NULL AND "
                                 "(oa_openid IS NOT NULL OR wecom_userid IS NOT NULL)")
        await app.close()
        await world.close()
    return dict(residents=residents_total, reachable=reachable, households=len(hh), buildings=info["buildings"], reached=reached,
                households_reached=hh_reached, seconds=t_total, plan_s=t_plan, calls=calls, outbox_rows=rows,
                states=states, coverage_ms=statistics.median(times) * 1000, generate_s=t_gen, import_s=t_import)


async def run_baseline(sample: int) -> dict:
    """The same warning as one direct message per resident, for `sample` residents."""
    from bot.domain import alerts

    with tempfile.TemporaryDirectory() as d:
        app, world, *_ = await _world_and_app(Path(d), sample, "robot")
        store = app.store
        people = store.q("SELECT id, oa_openid FROM residents WHERE oa_openid IS NOT NULL")
        alert_like = dict(type="雷雨大风", colour="yellow", action="issue", text="", poll=False, supersedes_id=None)
        text = "[baseline] " + alerts.render(store, alert_like, "messages/alert_direct.j2", link="")
        calls0 = sum(world.state.calls.values())
        t0 = time.perf_counter()
        app.outbox.enqueue_many(dict(key=f"baseline:{p['id']}", channel="oa_template", target=p["oa_openid"],
                                     payload={"text": text}, purpose="bench")
                                for p in people)
        await app.settle()
        seconds = time.perf_counter() - t0
        calls = sum(world.state.calls.values()) - calls0
        reached = len({d.user for d in world.state.deliveries if d.user and "[baseline]" in d.text})
        await app.close()
        await world.close()
    return dict(reached=reached, seconds=seconds, calls=calls)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--residents", type=int, default=100_000)
    p.add_argument("--baseline", type=int, default=5_000, help="residents in the per-resident baseline")


def run(args) -> int:
    from bench.callbacks import machine

    logging.basicConfig(level=logging.WARNING)
    r = asyncio.run(run_relay(args.residents))
    b = asyncio.run(run_baseline(args.baseline))
    rate, brate = r["reached"] / r["seconds"], b["reached"] / b["seconds"]
    lines = [
        f"# Relay fan-out benchmark\n\n{machine()}\n",
        "| run | residents reached | seconds | reached/s | API calls | calls/s | ratio vs baseline |",
        "|---|---|---|---|---|---|---|",
        f"| Linli relay (group posts + outbox) | {r['reached']:,} | {r['seconds']:.2f} | {rate:,.0f} | "
        f"{r['calls']:,} | {r['calls'] / r['seconds']:,.0f} | {rate / brate:.1f}× |",
        f"| baseline: one direct message per resident | {b['reached']:,} | {b['seconds']:.2f} | {brate:,.0f} | "
        f"{b['calls']:,} | {b['calls'] / b['seconds']:,.0f} | 1.0× |",
        "",
        f"- register: {r['residents']:,} residents in {r['households']:,} households, {r['buildings']:,} buildings "
        f"(generated in {r['generate_s']:.1f} s, imported in {r['import_s']:.1f} s)",
        f"- outbox rows for the alert: {r['outbox_rows']:,}, final states {r['states']}; planning (alert + hops + "
        f"outbox rows, one transaction) {r['plan_s'] * 1000:.0f} ms; households recorded reached: "
        f"{r['households_reached']:,}",
        f"- goal: every resident on WeChat ({r['reachable']:,} of {r['residents']:,}) reached in ≤ 10 s: "
        f"{'met' if r['reached'] >= r['reachable'] and r['seconds'] <= 10 else 'NOT met'} "
        f"({r['reached']:,} reached in {r['seconds']:.2f} s; the {r['residents'] - r['reachable']:,} without "
        "WeChat are reached by their building lead or social worker, not by a message)",
        f"- coverage() with 70% of households acknowledged: median {r['coverage_ms']:.1f} ms (goal < 100 ms)",
    ]
    out = "\n".join(lines)
    print(out)
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/relay.md").write_text(out + "\n", encoding="utf-8")
    return 0
