"""Benchmark: Linli against the manual chain, on the Dalong register, with the same seeded people.

Both runs play the same orange thunderstorm-gale warning on the local world (simulated time on a
FakeClock, nothing sleeps) with the same people, seeded per person: building leads who forward
in minutes, slow ones (15–60 min), absent ones (never); residents who answer within minutes,
slow ones, and ones who never read; social workers who work down their list one call (or visit)
at a time. Every decision is drawn from Random(f"{seed}:{who}:{what}"), so a lead who ignores
the warning in one run ignores it in the other.

- **manual chain** (no Linli): the secretary posts into the grid groups and tells the social
  workers; grid leads forward into their compounds' lead groups when they see it; building leads
  forward into their building group when they see it; nobody tracks or goes around anyone;
  social workers call down their list one by one.
- **Linli**: the tracked relay (posts where it can, asks each building lead, reminds, goes
  around a lead who misses the deadline to the backup, the grid lead, then messages the
  households directly), vulnerable-first follow-up tasks to the social workers, reminders to
  silent households with the list of them to each building lead.

Figures come from the world's ground truth (who really received, answered, was visited) by the
same function for both runs. A household counts as acknowledged when one of its people answered,
a lead confirmed for it (Linli's lead list) or its vulnerable resident was called or visited.

Part two shows how good Linli's prediction is: two past warnings build the history, then
`predict` replays the drill in a temporary store with people as the history describes them, then
the drill runs for real with the same seed; predicted vs observed time to 95% per grid.

    python -m bench drill [--seed 7] [--households 0] [--horizon-min 120] [--no-predict]
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import random
import tempfile
import time
from pathlib import Path

TYPE, COLOUR = "雷雨大风", "orange"
VISIT_WITHIN_S = 30 * 60


def seeded_behaviours(register, seed: int, *, absent_leads: float = 0.12, slow_leads: float = 0.25,
                      never_read: float = 0.15, slow_readers: float = 0.3):
    """Per-person behaviour drawn from Random(f"{seed}:behaviour:{account}")."""
    from bot.world.people import Behaviour, Behaviours, Delay

    b = Behaviours()
    for p in register.people:
        uid = p.uid
        if not uid:
            continue
        rng = random.Random(f"{seed}:behaviour:{uid}")
        roles = set(p.roles)
        if roles & {"building_lead", "grid_lead"}:
            roll = rng.random()
            if roll < absent_leads:
                fwd = Behaviour(forward_probability=0.0)
            elif roll < absent_leads + slow_leads:
                fwd = Behaviour(forward_probability=1.0, forward_delay=Delay(15 * 60, 60 * 60))
            else:
                fwd = Behaviour(forward_probability=1.0, forward_delay=Delay(60, 10 * 60))
            b.people[uid] = fwd
        elif "social_worker" in roles:
            # a phone call (most) or a walk to the door (no phone): minutes each, one at a time
            b.people[uid] = Behaviour(forward_probability=1.0, forward_delay=Delay(60, 5 * 60),
                                      task_s=Delay(3 * 60, 8 * 60))
        elif p.oa_openid:
            roll = rng.random()
            if roll < never_read:
                b.people[uid] = Behaviour(reply_probability=0.0)
            elif roll < never_read + slow_readers:
                b.people[uid] = Behaviour(reply_probability=1.0, reply_delay=Delay(10 * 60, 90 * 60))
            else:
                b.people[uid] = Behaviour(reply_probability=1.0, reply_delay=Delay(20, 10 * 60))
    return b


def outcome(world, register, marker: str, t0: float, horizon_s: float) -> dict:
    """The figures of one run from the world's ground truth."""
    people, truth = world.people, world.people.truth
    sent = {d.id: d for d in world.state.deliveries}
    households = {p.household for p in register.people if p.household}
    reached_at: dict[str, float] = {}
    for w, did in truth["received"]:
        d, hh = sent.get(did), people.person[w]["household"]
        if d is not None and hh and marker in d.text:
            reached_at[hh] = min(d.at, reached_at.get(hh, d.at))
    first: dict[str, float] = {}
    for _, hh, _, at in truth["replies"]:
        if hh:
            first[hh] = min(at, first.get(hh, at))
    for _, hh, at in truth["proxy"] + truth["visits"]:
        first[hh] = min(at, first.get(hh, at))
    visited: dict[str, float] = {}
    for _, room, at in truth["visits"]:
        visited[room] = min(at, visited.get(room, at))
    for hh, at in visited.items():  # a call or a visit reaches the household too
        reached_at[hh] = min(at, reached_at.get(hh, at))
    times = sorted(t - t0 for t in first.values())
    reach_times = sorted(t - t0 for t in reached_at.values())
    n = len(households)

    def t(pct, xs=times):
        need = -(-pct * n // 100)
        return xs[need - 1] if need <= len(xs) else None

    vulnerable = [p for p in register.people if p.vulnerable and p.household]
    late = [p for p in vulnerable if visited.get(p.household, float("inf")) - t0 > VISIT_WITHIN_S]
    # nobody knows how they are: no visit, and nobody of the household answered, within 30 min
    unknown = [p for p in late if first.get(p.household, float("inf")) - t0 > VISIT_WITHIN_S]
    return {"households": n, "acked": len(times), "t50": t(50), "t90": t(90), "t95": t(95),
            "never_reached": len(households - set(reached_at)), "reached_households": len(reached_at),
            "reach_t50": t(50, reach_times), "reach_t95": t(95, reach_times), "vulnerable": len(vulnerable),
            "vulnerable_late": len(late), "vulnerable_unknown": len(unknown), "horizon_s": horizon_s}


async def run_manual(settings, register_path, groups_path, behaviours, *, seed: int, text: str,
                     horizon_s: float, start: float) -> dict:
    """The chain as it is done by hand: the world alone, nobody tracking."""
    from bot.core.clock import FakeClock
    from bot.world.sim import World

    clock = FakeClock(start)
    s = dataclasses.replace(settings, world=dataclasses.replace(settings.world, seed=seed))
    world = World(s, register_path, groups=groups_path, clock=clock, behaviours=behaviours)
    people, rf = world.people, world.register
    people.manual = True
    groups = {g.name: people.groups_by_name[g.name] for g in rf.groups}
    by_place: dict[tuple, list] = {}
    for g in rf.groups:
        by_place.setdefault(tuple(g.place), []).append(g)
    # who feeds which groups by hand: a grid's lead its compounds' lead groups, a building's lead
    # (the owner of the building group) their building group
    for place, gs in by_place.items():
        if len(place) == 2:
            lead = next((p for p in rf.leads_of(place) if p.wecom_userid), None)
            below = [groups[g.name] for cp, cgs in by_place.items() if len(cp) == 3 and cp[:2] == place
                     for g in cgs]
            if lead:
                people.lead_below(lead.wecom_userid, below)
        elif len(place) == 4:
            for g in gs:
                owner = rf.owner_of(g)
                if owner:
                    people.lead_below(owner, [groups[g.name]])
    secretary = world.person_with_role("staff")
    for place, gs in by_place.items():
        if len(place) == 2:
            for g in gs:
                chat = world.state.groups[groups[g.name]]
                chat.members.add(secretary["uid"])
                world.state.human_post(chat.chat_id, secretary["uid"], text)
    for uid, row in people.person.items():
        if "social_worker" in row["roles"].split(","):
            world.state.deliver_to_user(uid, text, "human")  # the secretary rings them
    end = start + horizon_s
    while people.next_at() is not None and people.next_at() <= end:
        clock.t = max(clock.t, people.next_at())
        await people.run_until(clock.t)
    return outcome(world, rf, _marker(text), start, horizon_s)


def _marker(text: str) -> str:
    from bot.world.people import ALERT_RE

    m = ALERT_RE.search(text)
    return m.group("what") if m else text[:20]


async def run_linli(settings, register_path, groups_path, behaviours, *, seed: int, horizon_s: float,
                    start: float, workdir: Path) -> tuple[dict, str, dict]:
    from bot.demo import drive_warning, open_world_run
    from bot.domain import drills
    from bot.domain.alerts import Draft

    run = await open_world_run(settings, register_path, groups_path, seed=seed, behaviours=behaviours,
                               workdir=workdir, start=start)
    try:
        alert_id = await drive_warning(run, Draft(type=TYPE, colour=COLOUR, expires_h=horizon_s / 3600),
                                       seed=seed, horizon_s=horizon_s)
        group_text = next(d.text for d in run.world.state.deliveries if d.chat_id)
        rep = drills.after_action(run.store, alert_id, settings=run.settings, visit_within_s=VISIT_WITHIN_S)
        return outcome(run.world, run.world.register, _marker(group_text), start, horizon_s), group_text, rep
    finally:
        await run.close()


async def run_prediction(settings, register_path, groups_path, behaviours, *, seed: int, horizon_s: float,
                         workdir: Path) -> dict:
    """Two past warnings make the history; predict the drill; run it with the same seed."""
    from bot.demo import drive_warning, open_world_run, replay_with
    from bot.domain import drills
    from bot.domain.alerts import Draft

    run = await open_world_run(settings, register_path, groups_path, seed=seed, behaviours=behaviours,
                               workdir=workdir)
    try:
        for n, (type_, colour) in enumerate((("暴雨", "yellow"), ("台风", "orange"))):
            await drive_warning(run, Draft(type=type_, colour=colour, expires_h=horizon_s / 3600),
                                seed=seed + 100 + n, horizon_s=horizon_s + 60)
        draft = Draft(type=TYPE, colour=COLOUR, status="exercise", expires_h=horizon_s / 3600)
        t = time.perf_counter()
        predicted = await drills.predict(run.app, draft, seed,
                                         replay=replay_with(settings, register_path, groups_path,
                                                            horizon_s=horizon_s))
        predict_s = time.perf_counter() - t
        alert_id = await drive_warning(run, draft, seed=seed, horizon_s=horizon_s)
        observed = drills.summarise(drills.after_action(run.store, alert_id, settings=run.settings))
        return {"predicted": predicted, "observed": observed, "rows": drills.compare(predicted, observed),
                "predict_s": predict_s}
    finally:
        await run.close()


def _m(s) -> str:
    return "not reached" if s is None else f"{s / 60:.1f} min"


def _link(x: dict) -> str:
    took = "never forwarded" if x["forward_delay_s"] is None else f"forwarded after {x['forward_delay_s'] / 60:.1f} min"
    return f"{x['place']} (asked {'、'.join(x['asked']) or 'nobody'}: {took})"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--households", type=int, default=0,
                   help="a generated register of this size instead of data/dalong_register.csv")
    p.add_argument("--horizon-min", type=float, default=120.0)
    p.add_argument("--no-predict", action="store_true", help="skip the prediction part")


def run(args) -> int:
    from bench.callbacks import machine
    from bot.core.config import DEMO_GROUPS, DEMO_REGISTER, load
    from bot.world.register_file import RegisterFile

    logging.basicConfig(level=logging.ERROR)
    if args.horizon_min <= 0:
        print("--horizon-min must be > 0")
        return 2
    out = asyncio.run(bench(args.seed, args.households, args.horizon_min * 60, not args.no_predict,
                            load("config.toml", env={}), DEMO_REGISTER, DEMO_GROUPS, RegisterFile))
    text = report(out, machine())
    print(text)
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/drill.md").write_text(text + "\n", encoding="utf-8")
    return 0


async def bench(seed: int, households: int, horizon_s: float, predict: bool, settings, register, groups,
                RegisterFile) -> dict:
    from bot.world.dalong import generate

    start = 1_717_200_000.0
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        if households:
            info = generate(d / "register.csv", households=households, seed=seed)
            register, groups = Path(info["register"]), Path(info["groups_file"])
        rf = RegisterFile.load(register, groups)
        behaviours = seeded_behaviours(rf, seed)
        t = time.perf_counter()
        (d / "linli").mkdir()
        linli, text, rep = await run_linli(settings, register, groups, behaviours, seed=seed, horizon_s=horizon_s,
                                           start=start, workdir=d / "linli")
        linli_s = time.perf_counter() - t
        t = time.perf_counter()
        manual = await run_manual(settings, register, groups, behaviours, seed=seed, text=text,
                                  horizon_s=horizon_s, start=start)
        manual_s = time.perf_counter() - t
        prediction = None
        if predict:
            (d / "predict").mkdir()
            prediction = await run_prediction(settings, register, groups, behaviours, seed=seed,
                                              horizon_s=horizon_s, workdir=d / "predict")
    return {"linli": linli, "manual": manual, "linli_s": linli_s, "manual_s": manual_s, "report": rep,
            "prediction": prediction, "seed": seed, "register": str(register), "horizon_s": horizon_s}


def report(out: dict, machine: str) -> str:
    m, li = out["manual"], out["linli"]
    rep = out["report"]
    lines = [
        f"# Linli against the manual chain\n\n{machine}\n",
        f"Register {out['register']}: {li['households']:,} households, {li['vulnerable']} vulnerable residents; "
        f"an orange {TYPE} warning; seed {out['seed']}; {out['horizon_s'] / 60:.0f} simulated minutes.\n",
        "| | manual chain | Linli |",
        "|---|---|---|",
        f"| time to 50% of households acknowledged | {_m(m['t50'])} | {_m(li['t50'])} |",
        f"| time to 90% | {_m(m['t90'])} | {_m(li['t90'])} |",
        f"| time to 95% | {_m(m['t95'])} | {_m(li['t95'])} |",
        f"| households acknowledged by the end | {m['acked']:,} | {li['acked']:,} |",
        f"| time to 95% of households reached | {_m(m['reach_t95'])} | {_m(li['reach_t95'])} |",
        f"| households never reached | {m['never_reached']:,} | {li['never_reached']:,} |",
        f"| vulnerable residents not visited within 30 min | {m['vulnerable_late']} of {m['vulnerable']} | "
        f"{li['vulnerable_late']} of {li['vulnerable']} |",
        f"| … of whom nobody had answered either (no news within 30 min) | {m['vulnerable_unknown']} | "
        f"{li['vulnerable_unknown']} |",
        "",
        f"- Linli's own after-action report of its run: {len(rep['missed'])} asks gone around "
        f"(leads who missed the deadline), {len(rep['never_reached'])} households never reached by Linli's "
        f"records, time to 95% {_m(rep['time_to'][95])}.",
        f"- simulation wall time: Linli {out['linli_s']:.1f} s, manual chain {out['manual_s']:.1f} s.",
    ]
    p = out["prediction"]
    if p:
        lines += ["", "## Prediction vs what happened (same seed)", "",
                  f"History: {p['predicted']['history_alerts']} past warnings, {p['predicted']['history_leads']} "
                  f"leads, {p['predicted']['history_buildings']} buildings, {p['predicted']['history_workers']} social "
                  f"workers; the replay took {p['predict_s']:.1f} s "
                  "in a temporary store.\n",
                  "| grid | predicted t50 | observed t50 | predicted t95 | observed t95 | error t95 |",
                  "|---|---|---|---|---|---|"]
        for r in p["rows"]:
            err = r["error_t95_s"]
            lines.append(f"| {r['grid']} | {_m(r['predicted_t50_s'])} | {_m(r['observed_t50_s'])} | "
                         f"{_m(r['predicted_t95_s'])} | {_m(r['observed_t95_s'])} | "
                         f"{'—' if err is None else f'{err / 60:+.1f} min'} |")
        lines += ["", "Predicted slowest links: " + "; ".join(_link(x) for x in p["predicted"]["slowest"]),
                  "", "Observed slowest links: " + "; ".join(_link(x) for x in p["observed"]["slowest"])]
    return "\n".join(lines)
