"""Benchmark: the alert page (`/alerts/ID`) — server time and bytes at 10k / 30k / 100k households.

For each size: a Dalong-shaped register (bot.world.dalong.generate + import), one warning to
everyone, ~95% of households reached and ~70% acknowledged (2% of them "需要帮助") at times spread
over the first hour, written straight into the tables (the triggers keep coverage_counts and
ack_firsts as a real storm would). Then the page is built the way the dashboard's handler builds it
(alert, snapshot, superseded-by, message, template) and timed: the median of `--repeat` runs.
Also timed: one live update after 20 more acks (the shared feed's state; the bytes of the diff a
viewer is sent), the coverage query alone, and how late the event loop runs while one live update
is built on the loop (the old way) and on the live hub's own thread and connection (lag, ms).

Baseline, same command and machine: the same store through the alert page as it was at commit
BASELINE_REV (bot/web/alert_view.py and the two templates read with `git show`, so no stash or
checkout is needed); `--no-baseline` skips it, e.g. outside a git checkout.

    python -m bench page [--sizes 10000,30000,100000] [--repeat 5] [--no-baseline]
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

BASELINE_REV = "1fab520650765686b0a880628a9ca093fdaa4029"  # the alert page before issue #15 item 3
ROOT = Path(__file__).resolve().parent.parent


def add_args(p) -> None:
    p.add_argument("--sizes", default="10000,30000,100000", help="households, comma-separated")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--baseline-rev", default=BASELINE_REV)


def prepare(tmp: Path, households: int, *, seed: int = 7):
    """A store with one warning to N households, ~70% acknowledged. Returns (app, alert)."""
    from bot.app import App
    from bot.core.clock import FakeClock
    from bot.core.config import load
    from bot.data import people as people_db
    from bot.data.store import Store
    from bot.domain import alerts
    from bot.domain.register import import_register
    from bot.world.dalong import generate

    reg = tmp / "register.csv"
    info = generate(reg, households=households, seed=seed, building_groups="robot")
    s = load(str(ROOT / "config.toml"), env={})
    s = dataclasses.replace(s, store=dataclasses.replace(s.store, path=str(tmp / "linli.db")))
    store = Store(s.store.path)
    import_register(store, reg, groups_path=info["groups_file"], now=time.time(), allow_shrink=True)
    clock = FakeClock(1_717_200_000.0)
    app = App(s, store=store, clock=clock)
    staff = people_db.with_role(store, "staff")
    alert_id = alerts.issue(app, alerts.Draft(type="暴雨", colour="red", expires_h=6,
                                              issuer_id=staff[0]["id"] if staff else None))
    alert = store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))
    rng = random.Random(seed)
    t0 = alert["created_at"]
    homes = [r[0] for r in store.conn.execute(
        "SELECT h.id FROM households h JOIN alert_scope s ON s.building_id=h.building_id "
        "WHERE s.alert_id=? AND h.active=1 ORDER BY h.id", (alert_id,))]
    reached = [(alert_id, h, "robot", t0 + rng.uniform(5, 300)) for h in homes if rng.random() < 0.95]
    acked = [(alert_id, h, "oa", "help" if rng.random() < 0.02 else "ok", t0 + min(3500.0, rng.expovariate(1 / 600)), "1")
             for h in homes if rng.random() < 0.70]
    with store.transaction():
        store.conn.executemany("INSERT OR IGNORE INTO deliveries (alert_id, household_id, via, at) VALUES (?,?,?,?)",
                               reached)
        store.conn.executemany("INSERT INTO acks (alert_id, household_id, channel, answer, at, raw) "
                               "VALUES (?,?,?,?,?,?)", sorted(acked, key=lambda r: r[4]))
    clock.t = t0 + 3600  # an hour in: the warning is still on (it runs for longer)
    return app, alert


def add_acks(app, alert, n: int) -> None:
    """n more households acknowledge now (straight into the table, as in `prepare`)."""
    store = app.store
    rows = store.conn.execute(
        "SELECT h.id FROM households h JOIN alert_scope s ON s.building_id=h.building_id WHERE s.alert_id=? "
        "AND h.active=1 AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.alert_id=s.alert_id AND a.household_id=h.id) "
        "ORDER BY h.id LIMIT ?", (alert["id"], n)).fetchall()
    with store.transaction():
        store.conn.executemany("INSERT INTO acks (alert_id, household_id, channel, answer, at, raw) "
                               "VALUES (?,?,'oa','ok',?,'1')", [(alert["id"], r[0], app.clock.now()) for r in rows])


def _git_show(rev: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def baseline_page(rev: str):
    """The alert page's view module and templates as they were at `rev`: (view module, jinja env)."""
    import jinja2

    from bot.core import texts

    mod = types.ModuleType("bench_old_alert_view")
    exec(compile(_git_show(rev, "bot/web/alert_view.py"), "old_alert_view.py", "exec"), mod.__dict__)
    overlay = {name: _git_show(rev, f"templates/{name}") for name in ("web/alert.html", "web/_alert_live.html")}
    env = texts.env().overlay(loader=jinja2.ChoiceLoader([jinja2.DictLoader(overlay), texts.env().loader]))
    return mod, env


def render_page(app, alert_id: int, view, env) -> bytes:
    """What bot.web.dashboard.alert_page does for a staff viewer, without the HTTP around it."""
    from bot.data import dashboard as queries
    from bot.domain import alerts
    from bot.web.render import formatters

    alert = view.load_alert(app.store, alert_id, None)
    snap = view.snapshot(app, alert, None)
    newer = queries.superseded_by(app.store, alert["id"])
    user = types.SimpleNamespace(is_staff=True, limited=False, scope=None, csrf="x" * 32, person={"name": "管理员"})
    html = env.get_template("web/alert.html").render(
        user=user, csrf=user.csrf, path=f"/alerts/{alert_id}", alert=alert, snap=snap, newer=newer,
        message=alerts.render(app.store, alert), colours=alerts.COLOURS, **formatters(app.settings.timezone))
    return html.encode()


def _timed(fn, repeat: int) -> tuple[float, object]:
    """Median wall time of `repeat` calls after one warm-up call (template compilation, caches)."""
    times, out = [], fn()
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def measure(app, alert, *, repeat: int, baseline: tuple | None) -> dict:
    from bot.core import texts
    from bot.domain.coverage import coverage
    from bot.web import alert_view

    res = {}
    res["page_s"], body = _timed(lambda: render_page(app, alert["id"], alert_view, texts.env()), repeat)
    res["page_bytes"] = len(body)
    res["coverage_s"], _ = _timed(lambda: coverage(app.store, alert["id"]), repeat)
    # one live update after 20 more first acks: the state rebuilt, and the diff a viewer is sent
    prev = alert_view.live_state(app, alert, None)
    add_acks(app, alert, 20)
    res["live_s"], cur = _timed(lambda: alert_view.live_state(app, alert, None, prev), repeat)
    event = alert_view.diff(prev, cur, app=app, alert=alert, scope=None)
    res["live_diff_bytes"] = len(alert_view.encode(event or {}))
    res["lag_inline_ms"], res["lag_thread_ms"] = asyncio.run(_lags(app, alert, prev))
    if baseline:
        mod, env = baseline
        res["old_page_s"], old = _timed(lambda: render_page(app, alert["id"], mod, env), repeat)
        res["old_page_bytes"] = len(old)
    return res


async def _lag(build) -> float:
    """The event loop's worst lateness (ms) on a 1 ms ticker while `build()` runs: how long an
    answer to a platform callback would have waited behind one live update."""
    loop = asyncio.get_running_loop()
    worst, done = 0.0, False

    async def ticker():
        nonlocal worst
        while not done:
            t = loop.time()
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - t - 0.001)
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await build()
    done = True
    await task
    return worst * 1000


async def _lags(app, alert, prev) -> tuple[float, float]:
    """One live update built on the loop (the old way) vs by the hub on its own thread and connection."""
    from bot.data.store import Store
    from bot.web import alert_view

    async def inline():
        alert_view.live_state(app, alert, None, prev)
    hub = alert_view.LiveHub(open_reader=lambda: Store(app.store.path, migrate=False))
    await hub._run(lambda store: store.conn.execute("SELECT 1"))  # open the reader first

    async def threaded():
        await hub._run(lambda store: alert_view.live_state(alert_view._Reader(app, store), alert, None, prev))
    try:
        return await _lag(inline), await _lag(threaded)
    finally:
        await hub.shutdown()


def run(args) -> int:
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    baseline = None
    if not args.no_baseline:
        try:
            baseline = baseline_page(args.baseline_rev)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"no baseline (git show {args.baseline_rev[:10]} failed: {e}); use --no-baseline", file=sys.stderr)
            return 2
    print(f"{'households':>10} {'page ms':>8} {'page KB':>8} {'old ms':>8} {'old KB':>8} "
          f"{'live ms':>8} {'diff B':>7} {'cov ms':>7} {'lag on-loop':>11} {'lag thread':>10}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            app, alert = prepare(Path(d), n)
            r = measure(app, alert, repeat=args.repeat, baseline=baseline)
            app.store.close()
        old_ms = f"{r['old_page_s'] * 1000:8.0f}" if baseline else f"{'-':>8}"
        old_kb = f"{r['old_page_bytes'] / 1024:8.0f}" if baseline else f"{'-':>8}"
        print(f"{n:>10} {r['page_s'] * 1000:8.0f} {r['page_bytes'] / 1024:8.0f} {old_ms} {old_kb} "
              f"{r['live_s'] * 1000:8.1f} {r['live_diff_bytes']:7d} {r['coverage_s'] * 1000:7.1f} "
              f"{r['lag_inline_ms']:11.1f} {r['lag_thread_ms']:10.1f}", flush=True)
    return 0
