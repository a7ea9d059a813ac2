"""`linli demo`: the Dalong thunderstorm story on the embedded default.

One process runs the local WeChat world (platform APIs + the register's people) and Linli, on a
shared simulated clock running `speed` times faster than real time. The output shows how far
behind the clock people act (goal: < 30 simulated seconds). Both are given the same
checked-in register file: Linli imports it into its database, the world reads it as the platform
would know its users and groups. The community secretary issues the yellow thunderstorm-gale
warning from his WeCom chat ("发布 黄色 雷雨大风", then "确认"); the relay, the people and the
timers do the rest, and the demo prints coverage by grid until the warning expires and the
summary arrives.
"""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from bot.app import App
from bot.core.clock import ScaledClock
from bot.core.config import DEMO_GROUPS, DEMO_REGISTER, Settings
from bot.data import alerts as alerts_data
from bot.data.store import Store
from bot.domain import escalation
from bot.domain.acks import coverage
from bot.domain.register import format_tree, import_register, tree_counts

# the demo's timeline, in simulated minutes: reminders, follow-up tasks, expiry + summary
DEMO_REMIND_MIN, DEMO_FOLLOWUP_MIN, DEMO_EXPIRY_H = 15, 30, 1.0
DEMO_PASSWORD = "linli-demo"
POLL_S = 2.0  # how often (wall seconds) coverage is looked at while the story runs
LAG_GOAL_S = 30.0  # people may act at most this far (simulated) behind their time


def load_demo_register(store: Store, now: float) -> None:
    """Import the checked-in Dalong register (idempotent: re-import updates in place)."""
    report = import_register(store, DEMO_REGISTER, groups_path=DEMO_GROUPS, now=now)
    print(f"register: {report.residents} residents, {report.households} households, "
          f"{report.groups} groups")


def _fresh_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()


def _progress(store, alert_id: int, clock, start: float) -> str:
    cov = coverage(store, alert_id)
    grids = [g for root in cov["tree"] for g in root["children"]]
    parts = " | ".join(f"{g['name']} {g['pct']:5.1f}%" for g in grids)
    minutes = (clock.now() - start) / 60
    return (f"[+{minutes:5.1f} min] acknowledged {cov['acked']:>5}/{cov['households']} ({cov['pct']:5.1f}%) "
            f"reached {cov['reached']:>5} | {parts}")


def _world_counts(stats: dict) -> str:
    """What the world's people did (its ground truth), next to Linli's figures."""
    truth, lag = stats["truth"], stats["lag"]
    return (f"people: {truth['replies']} replies, {truth['forwards']} forwards by leads, "
            f"{truth['proxy']} confirmations for neighbours, {truth['visits']} visits by social workers\n"
            f"people's lag behind the simulated clock: p50 {lag['p50_s']:.1f} s, p95 {lag['p95_s']:.1f} s, "
            f"max {lag['max_s']:.1f} s over {lag['actions']} actions (goal < {LAG_GOAL_S:g} s); Linli answered "
            f"their messages in p50 {stats['answer_p50_ms']:.0f} ms, p95 {stats['answer_p95_ms']:.0f} ms (wall)")


def world_stats(world, since: int = 0) -> dict:
    """The world's ground-truth counts and how far behind the clock its people act (overall, and
    the worst since the `since`-th action)."""
    recent = world.people.lags[since:]
    posted = world.people.callbacks.posted if world.people.callbacks else []
    took = sorted(x.wall_s for x in posted)  # how long Linli took to answer people (wall)
    return {"truth": {k: len(v) for k, v in world.people.truth.items()}, "lag": world.people.lag_stats(),
            "recent_max_s": max(recent) if recent else 0.0, "actions": len(world.people.lags),
            "answer_p50_ms": 1000 * took[len(took) // 2] if took else 0.0,
            "answer_p95_ms": 1000 * took[int(0.95 * (len(took) - 1))] if took else 0.0}


async def run_demo(settings: Settings, *, speed: float = 30.0, exit_at_end: bool = False) -> int:
    from bot.server import _until_stopped, start_app
    from bot.world.sim import World

    if speed <= 0:
        print("--speed must be > 0", flush=True)
        return 2
    db = Path(settings.store.path).with_name("demo.db")
    _fresh_db(db)
    settings = dataclasses.replace(
        settings, store=dataclasses.replace(settings.store, path=str(db)),
        escalation=dataclasses.replace(
            settings.escalation, default_expiry_h=DEMO_EXPIRY_H,
            remind_after_min={c: DEMO_REMIND_MIN for c in settings.escalation.remind_after_min},
            followup_after_min={c: DEMO_FOLLOWUP_MIN for c in settings.escalation.followup_after_min}),
        dashboard=dataclasses.replace(settings.dashboard, password=settings.dashboard.password or DEMO_PASSWORD))
    clock = ScaledClock(speed)
    store = Store(db)
    load_demo_register(store, clock.now())
    print(format_tree(tree_counts(store)))

    world = World(settings, DEMO_REGISTER, groups=DEMO_GROUPS, clock=clock)
    world_url = await world.start(settings.world.host, settings.world.port)
    app = App(settings, store=store, clock=clock)
    runner = await start_app(app, settings.server.host, settings.server.port)
    linli_url = f"http://{settings.server.host}:{settings.server.port}"
    await world.connect(linli_url)
    people = asyncio.create_task(world.run_forever())
    try:
        print(f"\nLinli:     {linli_url}/  (dashboard login: admin / {settings.dashboard.password})")
        print(f"WeChat:    {world_url}/chat  (the local WeChat world's chat window)")
        print(f"clock:     simulated, {speed:g}x real time\n")

        # the secretary is a person of the register, speaking through the platform like anyone else
        secretary = world.person_with_role("staff")
        if secretary is None:
            print("the register has no staff member on WeCom to issue the warning", flush=True)
            return 1
        for text, what in (("发布 黄色 雷雨大风", "writes to the Linli WeCom app"), ("确认", "confirms the preview")):
            print(f"{secretary['name']} (community secretary) {what}: {text}")
            await world.people.callbacks.send_text("wecom", secretary["uid"], text)
            await app.settle()
        alert = alerts_data.latest(store)
        if alert is None:
            print("the warning was not issued; see the log", flush=True)
            return 1
        start, last, seen = alert["created_at"], "", 0
        while alerts_data.get(store, alert["id"])["summary_at"] is None:
            line = _progress(store, alert["id"], clock, start)
            if line.split("]", 1)[1] != last:  # print when coverage moved
                stats = world_stats(world, seen)
                seen = stats["actions"]
                print(f"{line} | people lag ≤ {stats['recent_max_s']:.0f} s", flush=True)
                last = line.split("]", 1)[1]
            await asyncio.sleep(POLL_S)
        print(_progress(store, alert["id"], clock, start))
        print("\n" + escalation.summary_text(store, alerts_data.get(store, alert["id"])))
        print(f"\nsends: {app.outbox.counts()}; {_world_counts(world_stats(world))}")
        if not exit_at_end:
            print("\nstill running — open the URLs above; Ctrl-C to stop", flush=True)
            await _until_stopped()
    finally:
        people.cancel()
        await runner.cleanup()
        await world.close()
    return 0


# -- drills: replaying a warning on the local world (the entry layer starts the world) ---------------
class LinliPeer:
    """Linli's side of the world's discrete-event drive (bot.world.sim.Peer): its escalation
    timers and its send backoffs, on the shared FakeClock."""

    def __init__(self, app):
        self.app, self.clock = app, app.clock

    async def settle(self) -> None:
        await self.app.settle()

    async def run_due(self) -> None:
        await escalation.run_due(self.app)
        await self.app.settle()

    def next_due(self) -> float | None:
        from bot.data import sends as sends_db

        later = [t for t in (escalation.next_due_at(self.app), sends_db.next_due(self.app.store))
                 if t is not None and t > self.clock.now()]
        return min(later) if later else None


def behaviours_from(history, *, default=None):
    """The world's people as Linli's history describes them: each lead with their own observed
    forward delays and forward rate, each building's residents with the building's observed
    answer delays and answer rate, each social worker with their observed time per visit. Whoever history says nothing about keeps `default` (the
    config's figures when None)."""
    from bot.world.people import Behaviour, Behaviours, Delay

    b = Behaviours(default=default or Behaviour())
    for account, p in history.leads.items():
        b.people[account] = Behaviour(forward_probability=p.probability,
                                      forward_delay=Delay(samples=tuple(p.delays)) if p.delays else None)
    for account, p in history.workers.items():
        # a worker visits one after another, each taking as long as history says
        if p.delays:
            b.people[account] = dataclasses.replace(b.people.get(account, Behaviour()),
                                                    task_s=Delay(samples=tuple(p.delays)))
    for path, p in history.buildings.items():
        b.buildings[path] = Behaviour(reply_probability=p.probability,
                                      reply_delay=Delay(samples=tuple(p.delays)) if p.delays else None)
    return b


@dataclasses.dataclass
class WorldRun:
    """Linli + the local world on one FakeClock, in their own store: a replay, a drill, a bench."""
    settings: Settings
    store: Store
    world: object
    app: App
    server: object
    tmp: object = None

    async def close(self) -> None:
        await self.server.close()
        await self.world.close()
        if self.tmp is not None:
            self.tmp.cleanup()


async def open_world_run(settings: Settings, register, groups, *, seed: int, behaviours=None,
                         workdir: Path | None = None, start: float = 1_717_200_000.0) -> WorldRun:
    """Import the register into a new store in `workdir` (a temporary directory when None), give the
    world the same file and these people, connect both over localhost HTTP."""
    import tempfile

    from aiohttp.test_utils import TestServer

    from bot.core.clock import FakeClock
    from bot.world.sim import World

    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    clock = FakeClock(start)
    base = Path(workdir or tmp.name)
    s = dataclasses.replace(settings, store=dataclasses.replace(settings.store, path=str(base / "replay.db")),
                            world=dataclasses.replace(settings.world, seed=seed))
    store = Store(s.store.path)
    import_register(store, register, groups_path=groups, now=clock.now())
    world = World(s, register, groups=groups, clock=clock, behaviours=behaviours)
    url = await world.start()
    s = dataclasses.replace(s, wecom=dataclasses.replace(s.wecom, api_base=url),
                            oa=dataclasses.replace(s.oa, api_base=url))
    app = App(s, store=store, clock=clock)
    server = TestServer(app.web_app())
    await server.start_server()
    await world.connect(str(server.make_url("")).rstrip("/"))
    return WorldRun(s, store, world, app, server, tmp)


async def drive_warning(run: WorldRun, draft, *, seed: int, horizon_s: float = 7200.0, behaviours=None) -> int:
    """Issue `draft` in this run and drive Linli + the world for `horizon_s` simulated seconds. The
    world's people decide afresh with `seed` (a new warning is a new occasion for everyone). Scope
    items that are not ids are places by path. Returns the alert id."""
    from bot.domain import alerts, drills
    from bot.world.sim import run_until

    if horizon_s <= 0:
        raise drills.DrillError("the horizon must be > 0 seconds")
    people = run.world.people
    people.seed = seed
    people.decided.clear()
    if behaviours is not None:
        people.behaviours = behaviours
    if any(not isinstance(x, int) for x in draft.scope):
        draft = dataclasses.replace(draft, scope=alerts.resolve_scope(run.store, draft.scope))
    alert_id = alerts.issue(run.app, draft)
    await run_until(LinliPeer(run.app), run.world, run.app.clock.now() + horizon_s)
    return alert_id


async def run_on_world(settings: Settings, register, groups, draft, *, seed: int, behaviours=None,
                       horizon_s: float = 7200.0) -> dict:
    """`draft` on a fresh Linli + world in a temporary store, thrown away afterwards (a prediction
    never touches the real store). Returns the replayed warning's after-action report."""
    from bot.domain import drills

    run = await open_world_run(settings, register, groups, seed=seed, behaviours=behaviours)
    try:
        alert_id = await drive_warning(run, draft, seed=seed, horizon_s=horizon_s)
        return drills.after_action(run.store, alert_id, settings=run.settings)
    finally:
        await run.close()


def replay_with(settings: Settings, register, groups, *, horizon_s: float = 7200.0, default=None):
    """A bot.domain.drills.Replay: the warning on a fresh world with history's people."""

    async def replay(history, draft, seed: int) -> dict:
        return await run_on_world(settings, register, groups, draft, seed=seed, horizon_s=horizon_s,
                                  behaviours=behaviours_from(history, default=default))
    return replay
