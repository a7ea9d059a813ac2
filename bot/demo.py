"""`linli demo`: the Dalong thunderstorm story on the embedded default.

One process runs the local WeChat world (platform APIs + the register's people) and Linli, on a
shared simulated clock running `speed` times faster than real time. Both are given the same
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


def _world_counts(world) -> str:
    """What the world's people did (its ground truth), next to Linli's figures."""
    truth = world.people.truth
    return (f"people: {len(truth['replies'])} replies, {len(truth['forwards'])} forwards by leads, "
            f"{len(truth['proxy'])} confirmations for neighbours, {len(truth['visits'])} visits by social workers")


async def run_demo(settings: Settings, *, speed: float = 30.0, exit_at_end: bool = False) -> int:
    from bot.server import _until_stopped, start_app
    from bot.world.sim import World

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
        start, last = alert["created_at"], ""
        while alerts_data.get(store, alert["id"])["summary_at"] is None:
            line = _progress(store, alert["id"], clock, start)
            if line.split("]", 1)[1] != last:  # print when coverage moved
                print(line, flush=True)
                last = line.split("]", 1)[1]
            await asyncio.sleep(POLL_S)
        print(_progress(store, alert["id"], clock, start))
        print("\n" + escalation.summary_text(store, alerts_data.get(store, alert["id"])))
        print(f"\nsends: {app.outbox.counts()}; {_world_counts(world)}")
        if not exit_at_end:
            print("\nstill running — open the URLs above; Ctrl-C to stop", flush=True)
            await _until_stopped()
    finally:
        people.cancel()
        await runner.cleanup()
        await world.close()
    return 0
