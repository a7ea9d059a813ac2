"""Long-running processes and the CLI commands that act on a running deployment.

- serve: Linli's HTTP server (callbacks, ack links, dashboard), its outbox worker and timers;
- run_world: the local WeChat world (platform APIs + simulated people) for the embedded default;
- alert_command / report_command: what `linli alert …` and `linli report …` do.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import sys

from aiohttp import web

from bot.app import App
from bot.clock import Clock, hhmm
from bot.store import Store

log = logging.getLogger("linli.server")
REARM_EVERY_S = 15  # pick up alerts written by another process (the CLI) within this time


async def start_app(app: App, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def _periodic_rearm(app: App) -> None:
    from bot import escalation

    while True:
        await asyncio.sleep(REARM_EVERY_S)
        try:
            escalation.rearm(app)
            app.outbox.kick()
        except Exception:
            log.exception("re-arming timers failed")


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()


async def serve(settings) -> int:
    app = App(settings)
    runner = await start_app(app, settings.server.host, settings.server.port)
    rearm = asyncio.create_task(_periodic_rearm(app))
    log.info("Linli serving on http://%s:%s (callbacks: /wecom/callback, /oa/callback)",
             settings.server.host, settings.server.port)
    print(f"linli: serving on http://{settings.server.host}:{settings.server.port}", flush=True)
    try:
        await _until_stopped()
    finally:
        rearm.cancel()
        await runner.cleanup()
    return 0


async def run_world(settings, *, speed: float = 1.0) -> int:
    """The world as its own process. People's delays shrink by `speed`; timestamps stay real so
    Linli's freshness check holds."""
    from bot.world.sim import World

    w = settings.world
    scaled = dataclasses.replace(w, lead_delay_s=[x / speed for x in w.lead_delay_s],
                                 resident_delay_s=[x / speed for x in w.resident_delay_s])
    settings = dataclasses.replace(settings, world=scaled)
    world = World(settings, Store(settings.store.path), clock=Clock())
    url = await world.start(w.host, w.port)
    linli_url = f"http://{settings.server.host}:{settings.server.port}"
    await world.connect(linli_url)
    print(f"world: platform APIs on {url}; delivering callbacks to {linli_url}; "
          f"{len(world.people.person)} people, {len(world.state.groups)} groups", flush=True)
    runner = asyncio.create_task(world.run_forever())
    try:
        await _until_stopped()
    finally:
        runner.cancel()
        await world.close()
    return 0


def _print_status(store, alert_id: int) -> None:
    from bot.acks import coverage

    cov = coverage(store, alert_id)
    print(f"#{alert_id}: {cov['acked']}/{cov['households']} households acknowledged ({cov['pct']}%), "
          f"{cov['reached']} reached")
    for root in cov["tree"]:
        for g in (root["children"] if root["kind"] == "community" else [root]):
            print(f"  {g['name']}: {g['acked']}/{g['households']} ({g['pct']}%)")
    hops = store.q("SELECT state, COUNT(*) n FROM hops WHERE alert_id=? GROUP BY state", (alert_id,))
    print("  hops: " + ", ".join(f"{h['state']}={h['n']}" for h in hops))


async def alert_command(settings, args) -> int:
    from bot import alerts, escalation
    from bot.alerts import AlertError, Draft

    app = App(settings)
    store = app.store
    try:
        if args.action == "list":
            for a in store.q("SELECT * FROM alerts ORDER BY id"):
                print(f"#{a['id']} {hhmm(a['created_at'], settings.timezone)} {a['type']} {a['colour']} "
                      f"{a['action']} {a['state']}")
            return 0
        if args.action in ("status", "summary"):
            if store.q1("SELECT id FROM alerts WHERE id=?", (args.id,)) is None:
                print(f"no alert #{args.id}", file=sys.stderr)
                return 1
            if args.action == "status":
                _print_status(store, args.id)
            else:
                print(escalation.summary_text(store, store.q1("SELECT * FROM alerts WHERE id=?", (args.id,))))
            return 0
        if args.action == "ingest":
            from bot import cap

            with open(args.file, "rb") as f:
                alert_id = cap.ingest(app, f.read())
            if alert_id is None:
                print("already ingested; nothing to do")
                return 0
        elif args.action == "send":
            issuer = (store.q1("SELECT id FROM residents WHERE name=? AND active=1", (args.issuer,)) if args.issuer
                      else store.q1("SELECT id FROM residents WHERE roles LIKE '%staff%' AND active=1 ORDER BY id"))
            scope = alerts.resolve_scope(store, [s for s in args.scope.split(",") if s.strip()])
            alert_id = alerts.issue(app, Draft(type=alerts.parse_type(args.type),
                                               colour=alerts.parse_colour(args.colour), text=args.text,
                                               scope=scope, poll=args.poll, expires_h=args.expires_h,
                                               issuer_id=issuer["id"] if issuer else None))
        else:
            colour = alerts.parse_colour(args.colour) if args.action == "update" else None
            alert_id = alerts.follow_on(app, args.id, args.action, colour=colour, text=args.text)
    except AlertError as e:
        print(f"refused: {e.code} {json.dumps(e.params, ensure_ascii=False)}", file=sys.stderr)
        return 1
    sends = store.scalar("SELECT COUNT(*) FROM sends WHERE alert_id=?", (alert_id,))
    print(f"alert #{alert_id} {args.action}: {sends} sends queued; a running `linli serve` delivers them")
    escalation.rearm(app)
    return 0


def report_command(settings, args) -> int:
    store = Store(settings.store.path)
    if args.kind == "requests":
        from bot.reports import write_requests_report

        if not args.month:
            print("--month YYYY-MM is required", file=sys.stderr)
            return 2
        year, month = (int(x) for x in args.month.split("-"))
        write_requests_report(store, year, month, args.out)
    else:
        from types import SimpleNamespace

        from bot.web.exports import delivery_rows, table_bytes

        if not args.alert or store.q1("SELECT id FROM alerts WHERE id=?", (args.alert,)) is None:
            print("--alert ID of an existing alert is required", file=sys.stderr)
            return 2
        fmt = "xlsx" if args.out.lower().endswith(".xlsx") else "csv"
        rows = delivery_rows(SimpleNamespace(store=store, settings=settings), args.alert, None)
        with open(args.out, "wb") as f:
            f.write(table_bytes(rows, fmt, f"alert-{args.alert}"))
    print(f"wrote {args.out}")
    return 0
