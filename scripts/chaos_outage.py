"""Chaos: a warning goes out while one platform endpoint is down, in real time.

Runs the real thing on the embedded default: the Dalong register imported into a temporary
SQLite file, the local WeChat world serving the platform APIs over localhost HTTP, Linli (the
App with its outbox worker, senders and relay) on the wall clock. A yellow thunderstorm warning
is issued to the whole community; after `--after` calls to the broken endpoint the world answers
every call to it with HTTP `--status` for `--outage-s` real seconds, then recovers.

It waits until no send of the warning is pending or in flight (or `--timeout`), then reports:
rows by state and channel, dead rows, duplicates (a person or group that got the same message
more than once, by the world's own record), API calls to the broken endpoint during the outage,
the breaker's events and the staff notices.

    .venv/bin/python scripts/chaos_outage.py [--outage-s 20] [--path /cgi-bin/message/template/send]

People stay silent (nobody forwards or answers), so what is measured is the outbox alone.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REGISTER = ROOT / "data" / "dalong_register.csv"
GROUPS = ROOT / "data" / "dalong_register_groups.csv"


async def chaos(args) -> dict:
    from bot.app import App
    from bot.core.clock import Clock
    from bot.core.config import load
    from bot.data.store import Store
    from bot.domain import alerts
    from bot.domain.register import import_register
    from bot.world.sim import World

    with tempfile.TemporaryDirectory() as tmp:
        s = load(str(ROOT / "config.toml"), env={})
        s = dataclasses.replace(
            s, store=dataclasses.replace(s.store, path=str(Path(tmp) / "linli.db")),
            world=dataclasses.replace(s.world, resident_reply_probability=0.0,
                                      lead_forward_probability=0.0),
            # nobody forwards, so every hop escalates down to direct notices to the households;
            # short deadlines get there in seconds instead of minutes
            relay=dataclasses.replace(s.relay, grid_deadline_min=args.deadline_min,
                                      compound_deadline_min=args.deadline_min,
                                      building_deadline_min=args.deadline_min))
        store = Store(s.store.path)
        # without its groups file Linli knows no chat groups, so the relay sends every household
        # its direct notice at once (OA service notices, WeCom app messages): a burst that
        # does not wait on escalation timers
        import_register(store, REGISTER, groups_path=GROUPS if args.with_groups else None,
                        now=time.time())
        clock = Clock()
        world = World(s, REGISTER, groups=GROUPS, clock=clock)
        url = await world.start()
        await world.connect("http://127.0.0.1:9")  # people stay silent
        s = dataclasses.replace(s, wecom=dataclasses.replace(s.wecom, api_base=url),
                                oa=dataclasses.replace(s.oa, api_base=url))
        app = App(s, store=store, clock=clock)
        await app.start()
        try:
            return await _run(args, app, world, alerts)
        finally:
            await app.close()
            await world.close()


async def _run(args, app, world, alerts) -> dict:
    store, state = app.store, world.state
    fault = state.inject(args.path, status=args.status, after=args.after, times=None)
    t0 = time.monotonic()
    from bot.data import org

    grids = [n for n in org.nodes(store) if n["kind"] == "grid"]
    scope = [n["id"] for n in grids if n["name"] in args.scope.split(",")] if args.scope else []
    if args.scope and not scope:
        raise SystemExit(f"no grid named {args.scope!r}; grids: {[g['name'] for g in grids]}")
    alert_id = alerts.issue(app, alerts.Draft(type="雷雨大风", colour="yellow", scope=scope))
    calls_at_start = state.calls[args.path]
    outage_started = outage_ended = None
    failed_calls = 0
    last_print = t0
    deadline = t0 + args.timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if outage_started is None and fault.after <= 0:
            outage_started = time.monotonic()
            print(f"[{outage_started - t0:6.1f}s] outage begins: {args.path} answers HTTP {args.status}",
                  flush=True)
        if outage_started and outage_ended is None and time.monotonic() - outage_started >= args.outage_s:
            state.clear_faults(args.path)
            outage_ended = time.monotonic()
            # every call past the first `after` ones, until now, was answered with the fault
            failed_calls = state.calls[args.path] - calls_at_start - args.after
            print(f"[{outage_ended - t0:6.1f}s] outage ends after {args.outage_s:g}s "
                  f"({failed_calls} calls refused)", flush=True)
        if args.progress and time.monotonic() - last_print >= args.progress:
            last_print = time.monotonic()
            print(f"[{last_print - t0:6.1f}s] sends {app.outbox.counts()} breakers "
                  f"{ {c: b.state for c, b in getattr(app.outbox, '_breakers', {}).items() if b.paused} }", flush=True)
        busy = store.scalar("SELECT count(*) FROM sends WHERE state IN ('pending','sending') "
                            "AND alert_id=?", (alert_id,))
        if outage_ended and not busy and time.monotonic() - t0 > args.settle_s:
            break
    took = time.monotonic() - t0
    by_state = {r["state"]: r["n"] for r in store.q(
        "SELECT state, count(*) n FROM sends WHERE alert_id=? GROUP BY state", (alert_id,))}
    by_channel = {f"{r['channel']}/{r['state']}": r["n"] for r in store.q(
        "SELECT channel, state, count(*) n FROM sends WHERE alert_id=? GROUP BY channel, state",
        (alert_id,))}
    # duplicates by the world's ground truth: the same text to the same person or group twice
    seen = collections.Counter((d.user or d.chat_id, d.text) for d in state.deliveries)
    dupes = {k: n for k, n in seen.items() if n > 1}
    health = store.q("SELECT * FROM sends WHERE purpose='channel_health' ORDER BY id")
    events = collections.Counter(r["kind"] for r in store.q(
        "SELECT kind FROM events WHERE kind LIKE 'channel.%' OR kind LIKE 'send.%'"))
    return dict(alert_id=alert_id, seconds=round(took, 1), sends=sum(by_state.values()),
                by_state=by_state, by_channel=by_channel, dead=by_state.get("dead", 0),
                duplicates=len(dupes), duplicate_examples=[f"{k[0]}: {n}x" for k, n in list(dupes.items())[:5]],
                refused_calls=failed_calls, calls_total=state.calls[args.path] - calls_at_start,
                staff_notices=[(h["channel"], h["target"], h["state"], json.loads(h["payload"])["text"][:24])
                               for h in health],
                events=dict(events))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--path", default="/cgi-bin/message/template/send", help="endpoint to break")
    p.add_argument("--status", type=int, default=502)
    p.add_argument("--outage-s", type=float, default=20.0, help="real seconds the endpoint is down")
    p.add_argument("--after", type=int, default=25, help="calls answered before the outage")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--deadline-min", type=float, default=0.1,
                   help="every hop's deadline (minutes) before it escalates")
    p.add_argument("--scope", default="第一网格", help="grid name(s), comma-separated ('' = all)")
    p.add_argument("--with-groups", action="store_true",
                   help="import the groups file too (the relay then posts and asks, and direct "
                        "notices wait for escalation timers)")
    p.add_argument("--settle-s", type=float, default=0.0,
                   help="run at least this long (the relay escalates in steps)")
    p.add_argument("--progress", type=float, default=5.0, help="print progress every N s (0: never)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    r = asyncio.run(chaos(args))
    print(json.dumps(r, ensure_ascii=False, indent=2))
    ok = r["dead"] == 0 and r["duplicates"] == 0 and not r["by_state"].get("pending")
    print("RESULT:", "every send delivered once" if ok else "NOT every send delivered once")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
