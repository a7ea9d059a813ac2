"""`linli demo`: the Dalong thunderstorm story on the embedded default.

One process runs the local WeChat world (platform APIs + the register's people) and Linli, on a
shared simulated clock running `speed` times faster than real time. The output shows how far
behind the clock people act (goal: < 30 simulated seconds). Both are given the same
checked-in register file: Linli imports it into its database, the world reads it as the platform
would know its users and groups. The community secretary issues the yellow thunderstorm-gale
warning from his WeCom chat ("发布 黄色 雷雨大风", then "确认"); the relay, the people and the
timers do the rest. The demo narrates, in Chinese, what a secretary would follow (reminders,
relay hops moving past silent leads, follow-up tasks) next to coverage by grid, until the warning
expires and the summary arrives; then its clock stops.

The demo uses the config's store (`[store] path`), emptied first, so `linli alert list` and the
dashboard afterwards show the demo's warning. It refuses to empty a store whose config talks to
the real platforms.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict
from pathlib import Path

from bot import demo_loops
from bot.app import App
from bot.core import texts
from bot.core.clock import ScaledClock
from bot.core.config import DEMO_GROUPS, DEMO_REGISTER, Settings, is_local_url
from bot.data import alerts as alerts_data
from bot.data import demo as demo_data
from bot.data import org
from bot.data.store import Store
from bot.domain import escalation
from bot.domain.acks import coverage
from bot.domain.register import format_tree, import_register, tree_counts

# the demo's timeline, in simulated minutes: reminders, follow-up tasks, expiry + summary
DEMO_REMIND_MIN, DEMO_FOLLOWUP_MIN, DEMO_EXPIRY_H = 15, 30, 1.0
DEMO_PASSWORD = "linli-demo"
LEAD_USER = "lead"  # the building lead's dashboard account, to show the scoped view
POLL_S = 2.0  # how often (wall seconds) coverage is looked at while the story runs
LAG_GOAL_S = 30.0  # people may act at most this far (simulated) behind their time
NAMED = 5  # up to this many hops in one narration line are named one by one
FAR_FUTURE_S = 10 * 365 * 86400.0  # where a stopped clock's later times map to on the wall


class StoryClock(ScaledClock):
    """The demo's scaled clock, which stops at the end of the story: afterwards `now()` stands
    still and every later time maps to the far future, so no timer and no person acts again."""

    def __init__(self, speed: float, start: float | None = None):
        super().__init__(speed, start)
        self.stopped_at: float | None = None

    def stop(self) -> float:
        if self.stopped_at is None:
            self.stopped_at = super().now()
        return self.stopped_at

    def now(self) -> float:
        return self.stopped_at if self.stopped_at is not None else super().now()

    def to_wall(self, at: float) -> float:
        if self.stopped_at is not None and at > self.stopped_at:
            return time.time() + FAR_FUTURE_S
        return super().to_wall(at)

    def wall_seconds(self, sim_seconds: float) -> float:
        return FAR_FUTURE_S if self.stopped_at is not None else super().wall_seconds(sim_seconds)


def register_counts(store: Store, report) -> dict:
    """One set of register figures for everything the demo prints: people in the register (the
    import's count), residents living in a household (the tree's and coverage's count), and the
    difference — staff such as grid leads and social workers who belong to no household."""
    roots = tree_counts(store)
    residents = sum(r["residents"] for r in roots)
    households = sum(r["households"] for r in roots)
    return {"people": report.residents, "residents": residents, "households": households,
            "others": max(0, report.residents - residents), "groups": report.groups, "roots": roots}


def load_demo_register(store: Store, now: float) -> dict:
    """Import the checked-in Dalong register (idempotent: re-import updates in place) and print
    what it holds. Returns register_counts()."""
    t0 = time.monotonic()
    report = import_register(store, DEMO_REGISTER, groups_path=DEMO_GROUPS, now=now)
    counts = register_counts(store, report)
    print(texts.render("demo/setup.j2", step="register", seconds=time.monotonic() - t0, **counts), flush=True)
    return counts


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
    return (f"[+{minutes:5.1f} 分钟] 确认 {cov['acked']:>5}/{cov['households']} 户 ({cov['pct']:5.1f}%) "
            f"送达 {cov['reached']:>5} 户 | {parts}")


def story_lines(events: list[dict], start: float, named: int = NAMED) -> list[str]:
    """Narration lines (Chinese, templates/demo/story.j2) for story events as
    bot.data.demo.story_events returns them, oldest first. A reminder is one line each; relay
    hops moving past a silent lead are named one by one when there are at most `named` of them,
    else counted in one line; follow-up tasks created / escalated are counted in one line each.
    The first hop of each group (level 0, at issue) is the relay itself, not news."""
    lines: list[tuple[float, str]] = []

    def say(at: float, kind: str, **ctx) -> None:
        lines.append((at, texts.render("demo/story.j2", kind=kind, minutes=(at - start) / 60, **ctx)))

    asked = [e for e in events if e["kind"] == "hop.asked" and (e["data"].get("level") or 0) >= 1]
    by_kind = defaultdict(list)
    for e in events:
        by_kind[e["kind"]].append(e)
    for e in by_kind["alert.reminded"]:
        say(e["at"], "reminded", households=e["data"].get("households", 0))
    if 0 < len(asked) <= named:
        for e in asked:
            say(e["at"], "hop", level=e["data"]["level"], place=e["place"] or "?",
                place_kind=e["place_kind"] or "", actor=e["actor"] or "?")
    elif asked:
        say(asked[0]["at"], "hops", n=len(asked), places=[e["place"] or "?" for e in asked[:named]],
            backup=sum(e["data"]["level"] == 1 for e in asked), grid=sum(e["data"]["level"] >= 2 for e in asked))
    # stewards (党员中心户): asked at issue to pass it on to their households; those who did not in
    # time had their households messaged directly
    stewards = [e for e in by_kind["hop.asked"] if e["data"].get("steward")]
    if stewards:
        say(stewards[0]["at"], "stewards", n=len(stewards))
    late = [e for e in by_kind["hop.escalated"] if e["data"].get("steward")]
    if late:
        say(late[0]["at"], "stewards_direct", n=len(late))
    by_kind["hop.escalated"] = [e for e in by_kind["hop.escalated"] if not e["data"].get("steward")]
    for kind, word in (("hop.escalated", "direct"), ("hop.failed", "failed")):
        if by_kind[kind]:
            evs = by_kind[kind]
            say(evs[0]["at"], word, n=len(evs), places=[e["place"] or "?" for e in evs[:named]])
    if by_kind["followup.created"]:
        evs = by_kind["followup.created"]
        worker_tasks = [e for e in evs if (e["data"].get("level") or 0) == 0]
        say(evs[0]["at"], "followups", n=len(evs), workers=len({e["actor"] for e in worker_tasks if e["actor"]}),
            grid=len(evs) - len(worker_tasks))
    if by_kind["followup.escalated"]:
        evs = by_kind["followup.escalated"]
        say(evs[0]["at"], "followups_escalated", to_grid=sum(e["data"].get("level") == 1 for e in evs),
            to_staff=sum((e["data"].get("level") or 0) >= 2 for e in evs))
    return [text for _, text in sorted(lines, key=lambda x: x[0])]


def narrate(store: Store, alert_id: int, start: float, after_id: int = 0) -> tuple[list[str], int]:
    """The story since event `after_id`: (lines, the last event id read)."""
    events = demo_data.story_events(store, alert_id, after_id)
    return story_lines(events, start), (events[-1]["id"] if events else after_id)


def summary_legend(store: Store, alert_id: int, counts: dict | None = None) -> str:
    """What the summary's 确认 / 送达 mean, so more acknowledgements than deliveries reads right."""
    return texts.render("demo/summary_legend.j2", proxy=demo_data.proxy_only_households(store, alert_id),
                        residents=counts["residents"] if counts else None,
                        households=counts["households"] if counts else None)


def create_lead_account(store: Store, password: str, username: str = LEAD_USER) -> dict | None:
    """A dashboard account for the first building's lead, so a newcomer can log in and see the
    scoped view. None when the register has no building lead."""
    from bot.web.auth import create_user

    for node in org.nodes(store):
        if node["kind"] != "building":
            continue
        lead = org.lead_of(store, node["id"], 0)
        if lead is not None:
            create_user(store, username, password, resident_id=lead["id"])
            return {"lead_user": username, "lead_name": lead["name"], "lead_place": node["name"]}
    return None


async def _start_web(app: App, host: str, port: int):
    """Serve Linli's routes in this process (not via bot.server, which imports this module for
    its drills: the two would form an import cycle)."""
    from aiohttp import web

    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def _until_signal() -> None:
    """Until SIGINT/SIGTERM: the demo keeps serving its pages, its clock stopped."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass  # no signal handlers here (not the main thread): Ctrl-C still raises
    await stop.wait()


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
    from bot.world.sim import World

    if speed <= 0:
        print("--speed must be > 0", flush=True)
        return 2
    remote = [u for u in (settings.wecom.api_base, settings.oa.api_base) if not is_local_url(u)]
    if remote:
        # the demo empties the config's store: never the store of a deployment on the real platforms
        print(f"refusing to run the demo: this config talks to {', '.join(remote)}, not the local world; "
              "the demo would empty its store", flush=True)
        return 2
    # the scaled clock makes APScheduler's wall-clock jobs run a little late; its "missed by"
    # warnings are noise in a story the timers are meant to drive
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    # routine sender chatter (token refreshes) would interleave with the narration
    logging.getLogger("linli.senders").setLevel(logging.WARNING)
    # nor "this volunteer has no WeChat" for each of the area's volunteers told of a wish
    logging.getLogger("linli.digest").setLevel(logging.WARNING)
    db = Path(settings.store.path)
    db.parent.mkdir(parents=True, exist_ok=True)
    _fresh_db(db)
    print(texts.render("demo/setup.j2", step="store", path=db), flush=True)
    settings = dataclasses.replace(
        settings,
        escalation=dataclasses.replace(
            settings.escalation, default_expiry_h=DEMO_EXPIRY_H,
            remind_after_min={c: DEMO_REMIND_MIN for c in settings.escalation.remind_after_min},
            followup_after_min={c: DEMO_FOLLOWUP_MIN for c in settings.escalation.followup_after_min}),
        dashboard=dataclasses.replace(settings.dashboard, password=settings.dashboard.password or DEMO_PASSWORD),
        # the household level: Dalong's register names a 党员中心户 for about every ten households
        relay=dataclasses.replace(settings.relay, stewards=True))
    clock = StoryClock(speed)
    store = Store(db)
    counts = load_demo_register(store, clock.now())
    print(format_tree(counts["roots"]))

    t0 = time.monotonic()
    world = World(settings, DEMO_REGISTER, groups=DEMO_GROUPS, clock=clock)
    world_url = await world.start(settings.world.host, settings.world.port)
    print(texts.render("demo/setup.j2", step="world", people=counts["people"], groups=counts["groups"],
                       seconds=time.monotonic() - t0), flush=True)
    t0 = time.monotonic()
    app = App(settings, store=store, clock=clock)
    runner = await _start_web(app, settings.server.host, settings.server.port)
    linli_url = f"http://{settings.server.host}:{settings.server.port}"
    await world.connect(linli_url)
    print(texts.render("demo/setup.j2", step="linli", seconds=time.monotonic() - t0), flush=True)
    people = asyncio.create_task(world.run_forever())
    try:
        lead = create_lead_account(store, settings.dashboard.password)
        print(texts.render("demo/setup.j2", step="accounts" if lead else "no_lead",
                           password=settings.dashboard.password, **(lead or {})))
        print(f"\nLinli:     {linli_url}/  (dashboard login: admin / {settings.dashboard.password}"
              + (f"; building lead: {lead['lead_user']} / {settings.dashboard.password}" if lead else "") + ")")
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
        start, last, seen, after = alert["created_at"], "", 0, 0
        while alerts_data.get(store, alert["id"])["summary_at"] is None:
            lines, after = narrate(store, alert["id"], start, after)
            for line in lines:
                print(line, flush=True)
            line = _progress(store, alert["id"], clock, start)
            if line.split("]", 1)[1] != last:  # print when coverage moved
                stats = world_stats(world, seen)
                seen = stats["actions"]
                print(f"{line} | 居民行动滞后 ≤ {stats['recent_max_s']:.0f} 秒", flush=True)
                last = line.split("]", 1)[1]
            await asyncio.sleep(POLL_S)
        lines, after = narrate(store, alert["id"], start, after)
        for line in lines:
            print(line)
        print(_progress(store, alert["id"], clock, start))
        print("\n" + escalation.summary_text(store, alerts_data.get(store, alert["id"])))
        print(summary_legend(store, alert["id"], counts))
        # the second chapter: the community's own loops, on the same world and register
        await demo_loops.play(app, world, secretary)
        clock.stop()  # the story is over: nothing new fires, the pages show where it ended
        print(f"\nsends: {app.outbox.counts()}; {_world_counts(world_stats(world))}")
        print(texts.render("demo/setup.j2", step="stopped"))
        if not exit_at_end:
            print("\nstill running — open the URLs above; Ctrl-C to stop", flush=True)
            await _until_signal()
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
