"""Benchmark: acknowledgements in a storm — is the cost of an ack flat as acks pile up?

A register of N households (default 100,000; the Dalong generator), one red warning to all of
them, then every resident on WeChat answers "1". Each answer goes the whole way a real one goes
after the HTTP front: the Inbound message through the dispatcher and its middlewares (resident
lookup), the acks router, `acknowledge` (which warning, duplicate or changed answer, the ack row
and the coverage counters the triggers keep, the event log) and the thank-you written to the
outbox. Timed in windows of W acks: acks/s per window and cost per ack against acks already stored.

Baseline, same command and machine: the same run on a copy of the store with this change's ack
indexes dropped (acks_alert_resident, acks_alert_answer): the "last answer of this resident"
lookup then reads every ack the alert already has, which is what made acks slow down as they
accumulated.

    python -m bench acks [--households 100000] [--window 5000] [--limit 0] [--no-baseline]
"""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path


def add_args(p) -> None:
    p.add_argument("--households", type=int, default=100_000)
    p.add_argument("--window", type=int, default=5_000)
    p.add_argument("--limit", type=int, default=0, help="stop after this many acks (0: everyone)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--baseline-limit", type=int, default=30_000,
                   help="the baseline slows down quadratically: stop it after this many acks")


def _prepare(tmp: Path, households: int) -> tuple[Path, object]:
    from bot.core.config import load
    from bot.data.store import Store
    from bot.domain.register import import_register
    from bot.world.dalong import generate

    reg = tmp / "register.csv"
    info = generate(reg, households=households, seed=7, building_groups="robot")
    s = load("config.toml", env={})
    s = dataclasses.replace(s, store=dataclasses.replace(s.store, path=str(tmp / "linli.db")))
    store = Store(s.store.path)
    import_register(store, reg, groups_path=info["groups_file"], now=time.time(), allow_shrink=True)
    store.close()
    return Path(s.store.path), s


async def _storm(db: Path, settings, window: int, limit: int) -> list[tuple[int, float]]:
    from bot.app import App
    from bot.core.clock import Clock
    from bot.core.models import Inbound
    from bot.data import people as people_db
    from bot.data.store import Store
    from bot.domain import alerts

    settings = dataclasses.replace(settings, store=dataclasses.replace(settings.store, path=str(db)))
    app = App(settings, store=Store(str(db)), clock=Clock())
    staff = people_db.with_role(app.store, "staff")
    alerts.issue(app, alerts.Draft(type="暴雨", colour="red", issuer_id=staff[0]["id"] if staff else None))
    people = [r for r in app.store.db.query(
        "SELECT id, wecom_userid, oa_openid FROM residents WHERE active=1 AND household_id IS NOT NULL "
        "AND (wecom_userid IS NOT NULL OR oa_openid IS NOT NULL) ORDER BY id")]
    if limit:
        people = people[:limit]
    out, t0, done = [], time.perf_counter(), 0
    for i, p in enumerate(people):
        channel, user = ("wecom", p["wecom_userid"]) if p["wecom_userid"] else ("oa", p["oa_openid"])
        await app.dispatcher.dispatch(Inbound(channel=channel, user_id=user, msg_type="text", text="1",
                                              msg_id=f"bench{i}", at=time.time(), inbound_id=i + 1))
        done += 1
        if done % window == 0:
            t1 = time.perf_counter()
            out.append((done, window / (t1 - t0)))
            t0 = t1
    acked = app.store.db.execute("SELECT COUNT(*) FROM acks").fetchone()[0]
    thanked = app.store.db.execute("SELECT COUNT(*) FROM sends WHERE purpose='reply'").fetchone()[0]
    app.store.close()
    print(f"  acks stored: {acked}; thank-you sends queued: {thanked}")
    return out


def _table(name: str, rows: list[tuple[int, float]]) -> dict:
    rates = [r for _, r in rows]
    first, last = rates[0], rates[-1]
    print(f"\n{name}: acks/s per window (acks already stored at the end of the window)")
    for n, r in rows:
        print(f"  {n:>8,}  {r:8.0f}/s  {1000 / r:6.3f} ms/ack")
    summary = {"rates": rates, "first": first, "last": last, "median": statistics.median(rates), "min": min(rates),
               "last_over_first": last / first}
    print(f"  first {first:.0f}/s, last {last:.0f}/s, median {summary['median']:.0f}/s, "
          f"min {summary['min']:.0f}/s; last/first = {summary['last_over_first']:.2f}")
    return summary


def run(args) -> int:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        db, settings = _prepare(tmp, args.households)
        print(f"register of {args.households:,} households imported in {time.perf_counter() - t:.1f} s")
        base_db = tmp / "baseline.db"
        shutil.copy(db, base_db)
        now = _table("Linli (indexed)", asyncio.run(_storm(db, settings, args.window, args.limit)))
        if args.no_baseline:
            return 0
        conn = sqlite3.connect(base_db)
        conn.execute("DROP INDEX IF EXISTS acks_alert_resident")
        conn.execute("DROP INDEX IF EXISTS acks_alert_answer")
        conn.commit()
        conn.close()
        before = _table("baseline: without the ack indexes",
                        asyncio.run(_storm(base_db, settings, args.window,
                                                      min(args.limit or args.baseline_limit, args.baseline_limit))))
        n = len(before["rates"])
        print(f"\nat {n * args.window:,} acks stored: {now['rates'][n - 1]:.0f}/s vs {before['last']:.0f}/s = "
              f"{now['rates'][n - 1] / before['last']:.1f}x the baseline")
    return 0
