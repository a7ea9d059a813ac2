"""`linli` command line: every command takes --config PATH (default ./config.toml)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from bot.core import config as config_mod

COMMANDS = {}


def command(name: str, help: str):
    def deco(fn):
        COMMANDS[name] = (fn, help)
        return fn
    return deco


def _settings(args):
    return config_mod.load(args.config)


def _store(args):
    from bot.data.store import Store

    return Store(_settings(args).store.path)


@command("init", "write a commented config file if there is none, set up (or migrate) the SQLite store, "
                 "replace demo secrets in the config file")
def cmd_init(args, p):
    # a fresh copy of the shipped config.toml: the embedded local world's settings, every key
    # commented; it can go anywhere (--config), the store's relative path is taken from the
    # current directory like every other relative path Linli reads
    fresh = config_mod.write_default(args.config)
    if fresh:
        print(f"wrote a commented config file to {args.config} (the local demo world's settings: "
              "edit it for a real account; put secrets in LINLI_* environment variables)")
    store = _store(args)
    print(f"store {os.path.abspath(store.path)}: schema version {store.version}")
    # the file's own values (not the environment's): a secret set in LINLI_* is not in the file
    in_file = config_mod.load(args.config, env={})
    replace = {  # key -> (values to replace, what it is for)
        "link_secret": (config_mod.DEMO_VALUES[("server", "link_secret")],
                        "signs the ack links sent to households"),
        # empty turns the CAP push endpoint off; a strong token is as safe and ready for a feed
        "feed_token": (("",), "a weather feed sends it to POST /api/alerts/cap"),
    }
    for key, (demo, why) in replace.items():
        value = getattr(in_file.server, key)
        # a file written just now always gets its own secrets: whatever the shipped copy held
        # (the demo value, or a secret of the checkout the wheel was built from) is shared
        if not fresh and (f"LINLI_SERVER_{key.upper()}" in os.environ or value not in demo):
            continue
        config_mod.write_key(args.config, "server", key, config_mod.generate_secret())
        what = "shipped" if fresh else ("empty" if value == "" else "demo")
        print(f"wrote a new random [server] {key} into {args.config} ({why}); it replaces the {what} value")
    return 0


@command("import", "import a register file (CSV or XLSX)")
def cmd_import(args, p):
    from bot.core.clock import Clock
    from bot.domain import register

    settings = _settings(args)
    try:
        report = register.import_register(
            _store(args), args.file, groups_path=args.groups, skip_bad=args.skip_bad,
            now=Clock().now(), dry_run=args.dry_run, allow_shrink=args.allow_shrink,
            max_shrink=settings.register.max_shrink, max_rows=settings.register.max_rows)
    except register.BadRowsError as e:
        _print_bad(e.report, "")
        print(f"import refused: {e.report.bad_count} bad row(s), nothing imported "
              "(fix them in the file, or use --skip-bad to import the good rows)", file=sys.stderr)
        return 1
    except register.ShrinkRefused as e:
        print(f"import refused, nothing imported: {e}", file=sys.stderr)
        print(f"  (--dry-run lists what would change; if these {e.report.inactivated} people really "
              "left, import again with --allow-shrink)", file=sys.stderr)
        return 1
    except register.RegisterError as e:  # the file itself: missing, other type, empty, too big
        print(f"import refused, nothing imported: {e}", file=sys.stderr)
        return 1
    _print_bad(report, "skipped ")
    counts = (f"{report.residents} residents in {report.households} households, {report.groups} groups; "
              f"{report.added} added, {report.updated} updated, {report.inactivated} marked inactive; "
              f"households {report.households_added} added, {report.households_inactivated} inactive; "
              f"lead links changed: {report.leads_changed}; {report.bad_count} row(s) skipped")
    if report.without_worker:
        print(f"warning: {len(report.without_worker)} vulnerable resident(s) have no social worker "
              "(联系社工); in a warning their visits go to the grid lead at once:", file=sys.stderr)
        for p_ in report.without_worker[:20]:
            print(f"  {p_['label']} {p_['name']} ({p_['vulnerable']})", file=sys.stderr)
        if len(report.without_worker) > 20:
            print(f"  ... and {len(report.without_worker) - 20} more", file=sys.stderr)
    if report.stewarded:
        print(f"{report.stewarded} household(s) attached to a steward (党员中心户/红管家)")
    for s_ in report.stewards_overloaded[:20]:
        print(f"warning: steward {s_['label']} {s_['name']} looks after {s_['households']} households "
              f"(more than {s_['limit']}); the relay asks them for all of them", file=sys.stderr)
    if report.dry_run:
        print(f"dry run, nothing written. The import would leave {counts}")
        if report.refusal:
            print(f"the import itself would be refused: {report.refusal} (--allow-shrink to go ahead)")
    else:
        print(f"imported {counts}")
    return 0


def _print_bad(report, prefix: str) -> None:
    for bad in report.bad:
        print(f"  {prefix}{bad}", file=sys.stderr)
    if report.bad_count > len(report.bad):
        print(f"  ... and {report.bad_count - len(report.bad)} more", file=sys.stderr)


def _import_args(p):
    p.add_argument("file", help="register CSV/XLSX (one row per resident)")
    p.add_argument("--groups", help="groups CSV (for XLSX: the second sheet is used if omitted)")
    p.add_argument("--skip-bad", action="store_true", help="import the good rows, list the bad ones")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be added, updated, marked inactive; write nothing")
    p.add_argument("--allow-shrink", action="store_true",
                   help="allow marking more than [register] max_shrink of the residents inactive")


@command("roster", "print the community tree with counts")
def cmd_roster(args, p):
    from bot.domain.register import format_tree, tree_counts

    print(format_tree(tree_counts(_store(args))))


@command("demo-data", "write a Dalong-shaped demo register")
def cmd_demo_data(args, p):
    from bot.world.dalong import generate

    result = generate(args.out, households=args.households, seed=args.seed, building_groups=args.building_groups)
    print(f"wrote {result['register']} ({result['rows']} rows, {result['households']} households, "
          f"{result['buildings']} buildings) and {result['groups_file']} ({result['groups']} groups)")


def _demo_data_args(p):
    p.add_argument("--households", type=int, default=3300)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--out", default="data/dalong_register.csv")  # never into an installed package
    p.add_argument("--building-groups", choices=["mixed", "app_chat", "robot"], default="mixed",
                   help="mixed: personal WeChat + customer groups (Dalong); app_chat / robot: all bot-postable")


@command("demo", "load the demo register and play a warning on the embedded default")
def cmd_demo(args, p):
    from bot.demo import run_demo

    if args.config == "config.toml" and not os.path.exists(args.config):
        # an installed linli in an empty directory: the demo world's settings shipped with Linli
        from bot.core import resources

        args.config = str(resources.shipped("config.toml"))
    return asyncio.run(run_demo(_settings(args), speed=args.speed, exit_at_end=args.exit))


def _demo_args(p):
    p.add_argument("--speed", type=float, default=30.0, help="simulated seconds per real second")
    p.add_argument("--exit", action="store_true", help="run to the end and exit (non-interactive)")


@command("serve", "serve the WeCom / Official Account callbacks (and the dashboard)")
def cmd_serve(args, p):
    settings = _settings(args)
    problems = config_mod.deployment_problems(settings)
    if problems:
        print(f"refusing to serve: [server] public_url is {settings.server.public_url}, reachable "
              "beyond this machine, and these credentials are the public demo values:", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 2
    from bot.server import serve, serve_front, use_uvloop

    use_uvloop()
    if args.role == "front":
        return asyncio.run(serve_front(settings))
    fronts = args.fronts if args.fronts is not None else settings.server.fronts
    if fronts < 0:
        fronts = max(1, (os.cpu_count() or 2) - 1)
    return asyncio.run(serve(settings, config_path=args.config, fronts=fronts))


def _serve_args(p):
    p.add_argument("--fronts", type=int, default=None,
                   help="HTTP front processes sharing the port (default [server] fronts: cores - 1, "
                        "at least 1); 0 = everything in one process")
    p.add_argument("--role", choices=["front"], default=None, help=argparse.SUPPRESS)


@command("world", "run the local WeChat world (platform APIs + simulated people)")
def cmd_world(args, p):
    from bot.server import run_world

    return asyncio.run(run_world(_settings(args), speed=args.speed))


def _world_args(p):
    p.add_argument("--speed", type=float, default=1.0, help="people act this many times faster")


@command("alert", "issue, update, lift or inspect a warning")
def cmd_alert(args, p):
    from bot.server import alert_command

    return asyncio.run(alert_command(_settings(args), args))


def _alert_args(p):
    sub = p.add_subparsers(dest="action", required=True)
    send = sub.add_parser("send", help="issue a warning", parents=[COMMON])
    send.add_argument("--type", required=True,
                      help="a warning signal (暴雨, 台风, 高温, 雷雨大风 …, 其他) or 通知 for a notice")
    send.add_argument("--colour", "--color", default="",
                      help="blue/yellow/orange/red or 蓝色/黄色/橙色/红色 (not for 通知)")
    send.add_argument("--drill", action="store_true", help="a drill: every message headed 【演练】, counted apart")
    send.add_argument("--vulnerable", nargs="?", const="", default=None,
                      help="vulnerable households only: all of them, or these categories (独居老人,低保户)")
    send.add_argument("--scope", default="", help="grids/compounds/buildings separated by commas (default: all)")
    send.add_argument("--text", default="", help="override the template's wording")
    send.add_argument("--poll", action="store_true", default=None, help="ask 1 平安 / 2 需要帮助")
    send.add_argument("--expires-h", type=float, default=None)
    send.add_argument("--issuer", default=None, help="issuer's name in the register (default: first staff)")
    # a word list, not literals: tests/test_architecture.py reads a bare "update" string as SQL
    for name in "lift update".split():
        q = sub.add_parser(name, help=f"{name} a warning", parents=[COMMON])
        q.add_argument("id", type=int)
        if name != "lift":
            q.add_argument("--colour", "--color", required=True)
        q.add_argument("--text", default="")
    for name in ("status", "summary"):
        q = sub.add_parser(name, help=f"{name} of a warning", parents=[COMMON])
        q.add_argument("id", type=int)
    sub.add_parser("list", help="list warnings", parents=[COMMON])
    ingest = sub.add_parser("ingest", help="issue/update/lift from a weather service's CAP 1.2 XML file",
                            parents=[COMMON])
    ingest.add_argument("file")
    release = sub.add_parser("cap-release", help="relay a held CAP message (an area nobody mapped)",
                             parents=[COMMON])
    release.add_argument("id", type=int, help="the CAP message's number (from the notice or the dashboard)")
    release.add_argument("--scope", default="", help="grids/compounds/buildings (default: the whole community)")
    retry = sub.add_parser("retry", help="put dead sends back in the outbox", parents=[COMMON])
    retry.add_argument("ids", nargs="*", help="send ids (or --alert)")
    retry.add_argument("--alert", type=int, default=None, help="every dead send of this warning")


@command("drill", "a drill's (or warning's) after-action report, or a prediction before a drill")
def cmd_drill(args, p):
    return drill_command(_settings(args), args)


def _drill_args(p):
    sub = p.add_subparsers(dest="action", required=True)
    report = sub.add_parser("report", help="after-action report per grid, compound and building lead",
                            parents=[COMMON])
    report.add_argument("alert", type=int)
    report.add_argument("--out", required=True, help="output path ending in .csv or .xlsx")
    report.add_argument("--visit-within-min", type=float, default=None,
                        help="a visit later than this is late (default: the colour's follow-up deadline)")
    predict = sub.add_parser("predict", help="replay a warning on a temporary world with the people history "
                             "describes: time to 95% per grid and the slowest links", parents=[COMMON])
    predict.add_argument("--type", required=True)
    predict.add_argument("--colour", "--color", required=True)
    predict.add_argument("--scope", default="")
    predict.add_argument("--seed", type=int, default=7)
    predict.add_argument("--horizon-min", type=float, default=120)


@command("schedule", "scheduled and recurring notices: list, add, edit, pause, resume, cancel")
def cmd_schedule(args, p):
    from bot.server import schedule_command

    return schedule_command(_settings(args), args)


def _schedule_args(p):
    sub = p.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="the scheduled notices", parents=[COMMON])
    listing.add_argument("--all", action="store_true", help="also cancelled and finished ones")
    sub.add_parser("examples", help="create the example recurring notices (paused)", parents=[COMMON])
    add = sub.add_parser("add", help="schedule a notice or a warning", parents=[COMMON])
    add.add_argument("when", help='Chinese time words: "明天8点", "每月5号9点", "每周一 8点半"')
    add.add_argument("--text", default="", help="the notice's words, or a recurring template: 为老服务日, 月月谈, 党员活动日")
    add.add_argument("--type", default="", help="a warning signal instead of a notice (with --colour)")
    add.add_argument("--colour", "--color", default="")
    add.add_argument("--scope", default="", help="grids/compounds/buildings separated by commas (default: all)")
    add.add_argument("--missed", default=None, help="a run missed while Linli was down: 补发 (late) or 跳过 (skip)")
    add.add_argument("--issuer", default=None)
    edit = sub.add_parser("edit", help="change a scheduled notice", parents=[COMMON])
    edit.add_argument("id", type=int)
    edit.add_argument("--when", default=None)
    edit.add_argument("--text", default=None)
    edit.add_argument("--scope", default=None)
    edit.add_argument("--missed", default=None)
    for name in ("pause", "resume", "cancel"):
        q = sub.add_parser(name, help=f"{name} a scheduled notice", parents=[COMMON])
        q.add_argument("id", type=int)


@command("report", "monthly requests report, an alert's delivery report, the office's one-page summary, "
         "a month's building scores or volunteer figures, a consultation's filing")
def cmd_report(args, p):
    from bot.server import report_command

    return report_command(_settings(args), args)


def _report_args(p):
    p.add_argument("kind", choices=["requests", "alert", "office", "scores", "volunteers", "consult"])
    p.add_argument("--month", help="YYYY-MM (requests, scores, volunteers)")
    p.add_argument("--alert", type=int, help="alert id (alert, office)")
    p.add_argument("--consultation", type=int, help="consultation id (consult)")
    p.add_argument("--out", required=True, help="output path ending in .csv or .xlsx")


PASSWORD_ENV = "LINLI_USER_PASSWORD"


def _read_password(args) -> str | None:
    """From --password-stdin, $LINLI_USER_PASSWORD, or a prompt when there is a terminal."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        return None
    return getpass.getpass("password: ")


@command("user", "add a dashboard account (or reset its password)")
def cmd_user(args, p):
    from bot.domain.register import person_named
    from bot.web.auth import create_user

    store = _store(args)
    resident_id = None
    if args.resident:
        ids = person_named(store, args.resident)
        if len(ids) != 1:
            print(f"{args.resident!r} matches {len(ids)} active people in the register", file=sys.stderr)
            return 1
        resident_id = ids[0]
    password = _read_password(args)
    if password is None:
        print(f"no password given and no terminal to ask on: set {PASSWORD_ENV} or pipe it in with "
              "--password-stdin", file=sys.stderr)
        return 1
    if len(password) < 8:
        print("the password needs at least 8 characters", file=sys.stderr)
        return 1
    create_user(store, args.username, password, resident_id=resident_id)
    print(f"account {args.username} ready" + (f" (linked to {args.resident})" if args.resident else " (staff)"))
    return 0


def _user_args(p):
    p.add_argument("action", choices=["add"])
    p.add_argument("username")
    p.add_argument("--resident", help="link to a lead in the register: they see only their area")
    p.add_argument("--password-stdin", action="store_true",
                   help=f"read the password from the first line of standard input (or set {PASSWORD_ENV})")


EXTRA_ARGS = {"user": _user_args, "serve": _serve_args, "import": _import_args, "demo-data": _demo_data_args, "demo": _demo_args,
              "world": _world_args, "alert": _alert_args, "report": _report_args, "schedule": _schedule_args,
              "drill": _drill_args}


# --config PATH works before or after any (sub)command; only the top level sets the default, so a
# subcommand's parser does not overwrite a value given earlier on the line
COMMON = argparse.ArgumentParser(add_help=False)
COMMON.add_argument("--config", default=argparse.SUPPRESS, help="path to config.toml (default ./config.toml)")
COMMON.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    common = COMMON
    parser = argparse.ArgumentParser(prog="linli", description="Linli (邻里) neighborhood warning relay",
                                     parents=[common])

    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, parents=[common])
        EXTRA_ARGS.get(name, lambda p: None)(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # not set_defaults: argparse shares option objects with the subparsers, so a default set on
    # the top level would be re-applied by the subparser over a value given before the command
    args.config = getattr(args, "config", "config.toml")
    args.verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # one line per timer run is noise at INFO
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        return args.func(args, parser) or 0
    except config_mod.ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def drill_command(settings, args) -> int:
    """`linli drill report|predict`: the after-action report of a drill or warning, and a prediction
    replayed on a temporary local world with the people the history describes."""
    from bot.core.config import DEMO_GROUPS, DEMO_REGISTER
    from bot.data.store import Store
    from bot.domain import alerts, drills
    from bot.domain.alerts import AlertError, Draft
    from bot.server import _refusal

    store = Store(settings.store.path)
    try:
        if args.action == "report":
            fmt = "xlsx" if args.out.lower().endswith(".xlsx") else "csv"
            within = args.visit_within_min * 60 if args.visit_within_min else None
            rep = drills.after_action(store, args.alert, settings=settings, visit_within_s=within)
            with open(args.out, "wb") as f:
                f.write(drills.export(rep, fmt))
            print(f"wrote {args.out}")
            return 0
        from types import SimpleNamespace

        from bot.demo import replay_with

        draft = Draft(type=alerts.parse_type(args.type), colour=alerts.parse_colour(args.colour),
                      scope=alerts.resolve_scope(store, [s for s in args.scope.split(",") if s.strip()]),
                      status="exercise")
        replay = replay_with(settings, settings.world.register or DEMO_REGISTER,
                             settings.world.groups or DEMO_GROUPS, horizon_s=args.horizon_min * 60)
        out = asyncio.run(drills.predict(SimpleNamespace(store=store), draft, args.seed, replay=replay))
        print(f"history: {out['history_alerts']} warnings, {out['history_leads']} leads, "
              f"{out['history_buildings']} buildings, {out['history_workers']} social workers")
        for name, g in out["grids"].items():
            t95 = f"{g['t95_s'] / 60:.1f} min" if g["t95_s"] is not None else "not reached"
            print(f"  {name}: 95% acknowledged in {t95} ({g['pct']}% at the end)")
        for link in out["slowest"]:
            delay = f"{link['forward_delay_s'] / 60:.1f} min" if link["forward_delay_s"] is not None else "never"
            print(f"  slow link: {link['place']} {link['group'] or ''} forwarded {delay}")
        return 0
    except AlertError as e:
        print(f"refused: {_refusal(e)}", file=sys.stderr)
        return 1
    except drills.DrillError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
