"""Long-running processes and the CLI commands that act on a running deployment.

- serve: Linli's HTTP server (callbacks, ack links, dashboard), its outbox worker and timers;
- run_world: the local WeChat world (platform APIs + simulated people) for the embedded default;
- alert_command / report_command: what `linli alert …` and `linli report …` do.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys

from aiohttp import web

from bot.app import App
from bot.core.clock import Clock, hhmm
from bot.data.store import Store

log = logging.getLogger("linli.server")
REARM_EVERY_S = 15  # pick up alerts written by another process (the CLI) within this time


async def start_app(app: App, host: str, port: int, *, reuse_port: bool = False) -> web.AppRunner:
    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    return runner


async def _periodic_rearm(app: App) -> None:
    while True:
        await asyncio.sleep(REARM_EVERY_S)
        try:
            app.timers.rearm()
            app.outbox.kick()
        except Exception:
            log.exception("re-arming timers failed")


async def _until_stopped(children: list | None = None) -> None:
    """Until SIGINT/SIGTERM (or, with children, until one of them dies: then stop them all)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    while not stop.is_set():
        if children and any(c.poll() is not None for c in children):
            log.error("a front process exited; stopping")
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass


def use_uvloop() -> None:
    """uvloop's event loop roughly halves aiohttp's per-request overhead; optional."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(settings, *, config_path: str = "config.toml", fronts: int = 0) -> int:
    """fronts=0: one process does everything. fronts=N: N front processes share the port
    (SO_REUSEPORT) and only record callbacks and answer; this process is the worker that
    handles what they recorded, sends, and keeps the timers. Exactly-once holds either way:
    the `inbound` table is the hand-over."""
    host, port = settings.server.host, settings.server.port
    if fronts <= 0:
        app = App(settings)
        runner = await start_app(app, host, port)
        workers = []
    else:
        app = App(settings, role="worker")
        await app.start()
        runner = None
        cmd = [sys.executable, "-m", "bot", "serve", "--role", "front", "--config", config_path]
        # a front compares its parent with this pid: one that starts after the worker died (and was
        # re-parented at once) notices as surely as one whose worker dies later
        env = dict(os.environ, LINLI_WORKER_PID=str(os.getpid()))
        workers = [subprocess.Popen(cmd, env=env) for _ in range(fronts)]
        if settings.server.worker_nice:
            os.nice(settings.server.worker_nice)  # after the fork: the fronts keep normal priority
    rearm = asyncio.create_task(_periodic_rearm(app))
    log.info("Linli serving on http://%s:%s (callbacks: /wecom/callback, /oa/callback)", host, port)
    print(f"linli: serving on http://{host}:{port} (dashboard /, callbacks /wecom/callback and /oa/callback)"
          + (f"; {fronts} front process(es) + this worker" if fronts else ""), flush=True)
    try:
        await _until_stopped(children=workers)
    finally:
        rearm.cancel()
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()
        if runner is not None:
            await runner.cleanup()
        else:
            await app.close()
    return 0


async def serve_front(settings) -> int:
    """One front process: HTTP only, sharing the port with its siblings. It exits when its
    parent (the worker) is gone, so a killed `linli serve` leaves no orphan on the port."""
    app = App(settings, role="front")
    # a WAL checkpoint (with its fsync) would run inside whichever commit crosses the threshold;
    # leave them to the worker so a front's answer never waits for one
    app.store.leave_checkpoints_to_others()
    # callbacks are recorded on a connection of their own that never blocks: it waits for the
    # write lock in inbox.Recorder (group commits, yielding to other requests), not in SQLite's busy
    # handler, which would put the whole event loop to sleep. Dashboard writes keep the normal
    # connection and its busy timeout.
    app.record_conn = app.store.record_connection()
    parent = int(os.environ.get("LINLI_WORKER_PID") or os.getppid())
    if os.getppid() != parent:
        log.error("front: the worker (pid %s) is already gone; not starting", parent)
        return 1
    runner = await start_app(app, settings.server.host, settings.server.port, reuse_port=True)

    async def orphaned() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(0.5)

    try:
        stopped = asyncio.create_task(_until_stopped())
        await asyncio.wait([stopped, asyncio.create_task(orphaned())], return_when=asyncio.FIRST_COMPLETED)
    finally:
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
    world = World(settings, clock=Clock())
    url = await world.start(w.host, w.port)
    linli_url = f"http://{settings.server.host}:{settings.server.port}"
    await world.connect(linli_url)
    print(f"world: platform APIs on {url}; delivering callbacks to {linli_url}; "
          f"{len(world.people.person)} people, {len(world.state.groups)} groups; chat window {url}/chat",
          flush=True)
    runner = asyncio.create_task(world.run_forever())
    try:
        await _until_stopped()
    finally:
        runner.cancel()
        await world.close()
    return 0


def _print_status(app: App, alert_id: int) -> None:
    from bot.domain import alerts
    from bot.domain.coverage import coverage

    cov = coverage(app.store, alert_id)
    print(f"#{alert_id}: {cov['acked']}/{cov['households']} households acknowledged ({cov['pct']}%), "
          f"{cov['reached']} reached")
    for root in cov["tree"]:
        for g in (root["children"] if root["kind"] == "community" else [root]):
            print(f"  {g['name']}: {g['acked']}/{g['households']} ({g['pct']}%)")
    print("  hops: " + ", ".join(f"{k}={v}" for k, v in alerts.hop_states(app.store, alert_id).items()))


def _refusal(e) -> str:
    """The same plain sentence the chat gives, for the operator."""
    from bot.core import texts

    return texts.render("messages/alert_command_error.j2", code=e.code, **e.params).strip()


async def alert_command(settings, args) -> int:
    from bot.domain import alerts, escalation
    from bot.domain.alerts import AlertError, Draft

    app = App(settings)
    store = app.store
    try:
        if args.action == "list":
            for a in alerts.all_alerts(store):
                print(f"#{a['id']} {hhmm(a['created_at'], settings.timezone)} {a['type']} {a['colour']} "
                      f"{a['action']} {a['state']}")
            return 0
        if args.action in ("status", "summary"):
            alert = alerts.find(store, args.id)
            if alert is None:
                print(f"no alert #{args.id}", file=sys.stderr)
                return 1
            if args.action == "status":
                _print_status(app, args.id)
            else:
                print(escalation.summary_text(store, alert, settings=settings))
            return 0
        if args.action == "ingest":
            from bot.transports.inbound import cap

            try:
                with open(args.file, "rb") as f:
                    xml = f.read()
            except OSError as e:
                print(f"cannot read {args.file}: {e.strerror}", file=sys.stderr)
                return 2
            out = cap.receive(app, xml)
            if out.alert_id is None or out.outcome not in ("relayed", "updated", "lifted"):
                print(f"{out.outcome}: {out.reason or 'nothing relayed'} (CAP message #{out.cap_id})")
                return 0
            alert_id = out.alert_id
        elif args.action == "cap-release":
            from bot.domain import feed

            out = feed.release(app, args.id, scope_words=[s for s in args.scope.split(",") if s.strip()])
            alert_id = out.alert_id
        elif args.action == "retry":
            n = app.outbox.retry([int(i) for i in args.ids] or None, alert_id=args.alert)
            print(f"{n} dead or failed sends put back in the outbox; a running `linli serve` sends them")
            return 0
        elif args.action == "send":
            issuer = alerts.issuer_named(store, args.issuer)
            if args.issuer and issuer is None:
                print(f"no active person named {args.issuer} in the register", file=sys.stderr)
                return 1
            scope = alerts.resolve_scope(store, [s for s in args.scope.split(",") if s.strip()])
            vulnerable = getattr(args, "vulnerable", None)
            audience = None if vulnerable is None else ([w for w in vulnerable.split(",") if w] or ["*"])
            type_ = alerts.parse_type(args.type)
            colour = "blue" if type_ == alerts.NOTICE and not args.colour else alerts.parse_colour(args.colour or "")
            alert_id = alerts.issue(app, Draft(type=type_, colour=colour, text=args.text,
                                               scope=scope, poll=args.poll, expires_h=args.expires_h,
                                               issuer_id=issuer["id"] if issuer else None, audience=audience,
                                               status="exercise" if getattr(args, "drill", False) else "actual"))
        else:
            colour = alerts.parse_colour(args.colour) if args.action == "update" else None
            alert_id = alerts.follow_on(app, args.id, args.action, colour=colour, text=args.text)
    except AlertError as e:
        print(f"refused: {_refusal(e)}", file=sys.stderr)
        return 1
    except ValueError as e:  # retry without ids or an alert
        print(f"refused: {e}", file=sys.stderr)
        return 2
    print(f"alert #{alert_id} {args.action}: {alerts.sends_count(store, alert_id)} sends queued; "
          "a running `linli serve` delivers them")
    return 0


def report_command(settings, args) -> int:
    from bot.domain import alerts

    store = Store(settings.store.path)
    if args.kind in ("requests", "scores", "volunteers"):
        ym = _month_arg(args.month)
        if ym is None:
            return 2
    if args.kind in ("scores", "volunteers", "consult"):
        return _loops_report(settings, store, args, ym if args.kind != "consult" else None)
    if args.kind == "requests":
        from bot.domain.reports import write_requests_report

        write_requests_report(store, *ym, args.out)
    else:
        from types import SimpleNamespace

        from bot.web.exports import delivery_rows, table_bytes

        if not args.alert or alerts.find(store, args.alert) is None:
            print("--alert ID of an existing alert is required", file=sys.stderr)
            return 2
        if args.kind == "office":
            from bot.domain import upward

            with open(args.out, "wb") as f:
                f.write(upward.alert_report(App(settings, store=store), args.alert))
            print(f"wrote {args.out}")
            return 0
        fmt = "xlsx" if args.out.lower().endswith(".xlsx") else "csv"
        rows = delivery_rows(SimpleNamespace(store=store, settings=settings), args.alert, None)
        with open(args.out, "wb") as f:
            f.write(table_bytes(rows, fmt, f"alert-{args.alert}"))
    print(f"wrote {args.out}")
    return 0


def _month_arg(value: str | None) -> tuple[int, int] | None:
    """(year, month) of a --month YYYY-MM, or None after saying what is wrong."""
    if not value:
        print("--month YYYY-MM is required", file=sys.stderr)
        return None
    try:
        year, month = (int(x) for x in value.split("-"))
        if not (1 <= month <= 12 and 2000 <= year <= 2100):
            raise ValueError
    except ValueError:
        print(f"--month must look like 2024-06, not {value!r}", file=sys.stderr)
        return None
    return year, month


def _loops_report(settings, store, args, ym: tuple[int, int] | None) -> int:
    """The community loops' files: a month's building scores (流动小红旗), a month's volunteer
    figures, a consultation's filing — the same rows as the dashboard's downloads."""
    from bot.web import exports

    app = App(settings, store=store)
    fmt = "xlsx" if args.out.lower().endswith(".xlsx") else "csv"
    if args.kind == "scores":
        from bot.domain import scores

        month = "%04d-%02d" % ym
        rows, sheet = scores.table_rows(scores.month_scores(app, month), settings), "流动小红旗"
        print(scores.ranking_text(app, month, staff=True))
    elif args.kind == "volunteers":
        from bot.domain import claims
        from bot.web.claims_pages import volunteer_rows

        month = "%04d-%02d" % ym
        rows, sheet = volunteer_rows(claims.month_figures(app, {"roles": "staff"}, month)), "志愿服务"
    else:
        from bot.domain import consult
        from bot.web.consult_pages import export_rows

        c = consult.by_id(app, args.consultation) if args.consultation else None
        if c is None:
            print("--consultation ID of an existing consultation is required", file=sys.stderr)
            return 2
        rows = export_rows(app, c, consult.ballots(app, c["id"]), names=c["secrecy"] == "names")
        sheet = "议事"
    with open(args.out, "wb") as f:
        f.write(exports.table_bytes(rows, fmt, sheet))
    print(f"wrote {args.out}")
    return 0


def schedule_command(settings, args) -> int:
    """`linli schedule …`: the same functions the chat's 定时 commands call."""
    from bot.core import texts
    from bot.domain import alerts, schedules
    from bot.domain.alerts import AlertError

    app = App(settings)
    try:
        if args.action == "list":
            rows = schedules.list_schedules(app, include_ended=args.all)
            for row in rows:
                print(f"#{row['id']} [{row['state']}] {schedules.describe(app, row)}")
            if not rows:
                print("no scheduled notices")
            return 0
        if args.action == "examples":
            made = schedules.seed_examples(app, issuer_id=(alerts.issuer_named(app.store, None) or {}).get("id"))
            print(f"{len(made)} example recurring notices created (paused): linli schedule list")
            return 0
        if args.action == "add":
            issuer = alerts.issuer_named(app.store, args.issuer)
            job = schedules.draft(app, when_words=args.when, type=args.type or alerts.NOTICE,
                                  colour=alerts.parse_colour(args.colour) if args.colour else "blue",
                                  text=args.text, scope_words=[s for s in args.scope.split(",") if s.strip()],
                                  missed=args.missed, issuer_id=issuer["id"] if issuer else None)
            new = schedules.create(app, job)
            print(f"schedule #{new}: {schedules.describe(app, schedules.get(app, new))}")
            return 0
        if args.action == "edit":
            schedules.edit(app, args.id, when_words=args.when, text=args.text, missed=args.missed,
                           scope_words=[s for s in args.scope.split(",") if s.strip()] if args.scope else None)
        else:
            getattr(schedules, args.action)(app, args.id)
        print(f"schedule #{args.id}: {schedules.describe(app, schedules.get(app, args.id))}")
        return 0
    except (AlertError, schedules.ScheduleError) as e:
        template = ("messages/alert_command_error.j2" if isinstance(e, AlertError)
                    else "messages/schedule_error.j2")
        print("refused: " + texts.render(template, code=e.code, **e.params).strip(), file=sys.stderr)
        return 1

