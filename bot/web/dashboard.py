"""The staff dashboard: login, alerts (list, live page, update / lift), exports, the follow-up
board (followups_pages.py) and the warnings that did not go out (undelivered.py).

Server-rendered jinja2 (templates/web/), a little JS from bot/web/static/ for the live page and
the composer's preview. Every handler starts with `auth.require`, which also checks CSRF on
POST; what a user sees is cut to their area (auth.WebUser.scope). Requests and the register
browser are in requests_pages.py; the requests JSON API (bot/web/requests_api.py) is mounted
here with the dashboard's session auth; the alert composer is composer.py. Errors on these
routes are shown by `errors_middleware`: a Chinese page with a way back, or JSON on /api/.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from bot.core.resources import package_path
from bot.data import alerts as alert_rows
from bot.data import dashboard as queries
from bot.domain import alerts, drills, upward
from bot.domain.alerts import AlertError
from bot.domain.status import is_live
from bot.web import (
    alert_view,
    auth,
    claims_pages,
    composer,
    consult_pages,
    exports,
    followups_pages,
    requests_pages,
    scores_pages,
    undelivered,
)
from bot.web.alerts_api import add_alert_routes
from bot.web.render import APP_KEY, app_of, labels, page, render
from bot.web.requests_api import add_request_routes
from bot.web.sse import STREAMING, Streams

log = logging.getLogger("linli.web")
# package data of bot.web, found the same way from the checkout and from an installed wheel
STATIC = package_path("bot.web", "static")
OPTIONS = web.AppKey("linli_dashboard", object)
ROUTES = web.AppKey("linli_dashboard_routes", object)


@dataclass
class Options:
    streams: Streams
    live: object = None  # alert_view's LiveHub: one shared diff feed per (alert, viewer scope)


def add_dashboard_routes(wa: web.Application, app, *, poll_s: float = 1.0,
                         cap_receive=None) -> Options:
    """Mount the dashboard on Linli's aiohttp app. `poll_s`: how often live pages look for
    changes (wall seconds; tests may lower it via the returned Options). `cap_receive(app, body)`:
    what a CAP push is handed to (bot.transports.inbound.cap.receive, from the composition root)."""
    if APP_KEY not in wa:
        wa[APP_KEY] = app
    opts = Options(streams=Streams(poll_s=poll_s))
    wa[OPTIONS] = opts
    r = wa.router
    before = set(r.resources())
    r.add_static("/static/", STATIC, append_version=True)
    r.add_get("/favicon.ico", favicon)
    r.add_get("/login", login_page)
    r.add_post("/login", login_post)
    r.add_post("/logout", logout_post)
    r.add_get("/", home)
    r.add_get("/alerts/new", composer.form)
    r.add_get("/alerts/new/text", composer.template_text)
    r.add_post("/alerts/new", composer.submit)
    r.add_get(r"/alerts/{id:\d+}", alert_page)
    # the live alert page: /alerts/ID/events (small diffs, built off the event loop) and /more/…
    opts.live = alert_view.add_routes(wa)
    opts.live.poll_s = poll_s
    r.add_post(r"/alerts/{id:\d+}/{action:update|lift}", alert_follow_on)
    r.add_get(r"/alerts/{id:\d+}/report.{fmt:csv|xlsx}", alert_report)
    r.add_get(r"/alerts/{id:\d+}/after", after_action_page)
    r.add_get(r"/alerts/{id:\d+}/after.{fmt:csv|xlsx}", after_action_download)
    r.add_get(r"/alerts/{id:\d+}/office.xlsx", office_report)
    r.add_get(r"/reports/requests.{fmt:csv|xlsx}", requests_report)
    requests_pages.add_routes(wa, app)
    followups_pages.add_routes(wa)
    undelivered.add_routes(wa)
    consult_pages.add_routes(wa)
    claims_pages.add_routes(wa)
    scores_pages.add_routes(wa)

    async def api_auth(request: web.Request) -> dict:
        return (await auth.require(request, app, api=True)).person
    add_request_routes(wa, app, api_auth)
    add_alert_routes(wa, app, cap_receive=cap_receive)
    # the error pages cover what was mounted here (and paths nothing matched), not the platform
    # callbacks or the residents' ack links mounted by others
    wa[ROUTES] = frozenset(r.resources()) - before
    wa.middlewares.append(errors_middleware)

    async def on_startup(_):
        if app.settings.dashboard.password:
            auth.ensure_admin(app.store, app.settings.dashboard.password)
    wa.on_startup.append(on_startup)
    wa.on_shutdown.append(opts.streams.shutdown)
    return opts


# -- errors --------------------------------------------------------------------------------------
# what the generic statuses say when the handler did not give one of _labels.ERRORS' codes
STATUS_CODES = {400: "bad_request", 401: "login_required", 403: "forbidden", 404: "not_found",
                405: "bad_method", 409: "conflict", 413: "too_large", 500: "server_error"}


def error_code(status: int, text: str | None) -> str:
    """The _labels.ERRORS code for an error: the handler's own (`raise HTTPForbidden(text=code)`)
    when it is a known one, else the status's generic one."""
    known = labels().ERRORS
    if text and text in known:
        return text
    return STATUS_CODES.get(status, "server_error" if status >= 500 else "bad_request")


def error_json(status: int, code: str) -> web.Response:
    return web.json_response({"error": code, "message": labels().ERRORS.get(code, code)},
                             status=status, headers={"Cache-Control": "no-store"})


def error_page(request: web.Request, status: int, code: str) -> web.Response:
    try:
        user = auth.current_user(request, app_of(request))
    except Exception:  # the database may be why we are here: show the page without the user
        log.exception("looking up the user for an error page failed")
        user = None
    back = "/" if user else "/login"
    return render(request, user, "error.html", status=status, code=code, back=back,
                  status_code=status)


def _ours(request: web.Request) -> bool:
    """Routes mounted by the dashboard, and paths no route matched at all."""
    info = request.match_info
    if info.http_exception is not None:
        return True
    return info.route.resource in request.app.get(ROUTES, ())


@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Dashboard errors in plain Chinese: a styled page with a link back for pages, JSON with a
    Chinese `message` for /api/. Redirects pass; so do errors a JSON handler already shaped."""
    if not _ours(request):
        return await handler(request)
    api = request.path.startswith("/api/")
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if api and (e.content_type == "application/json"):
            raise
        code = error_code(e.status, e.text)
        if api:
            return error_json(e.status, code)
        resp = error_page(request, e.status, code)
        for name in ("Allow", "WWW-Authenticate"):  # 405 / 401 keep what the status promises
            if name in e.headers:
                resp.headers[name] = e.headers[name]
        return resp
    except Exception:
        if request.get(STREAMING):
            raise  # an event stream already sent its headers: nothing else can be sent
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_json(500, "server_error") if api else error_page(request, 500, "server_error")


# -- login ---------------------------------------------------------------------------------------
def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this site, or "/".

    Browsers read `/\\evil.example` as `//evil.example` and drop tabs and newlines from URLs
    (`/<TAB>/evil.example` becomes `//evil.example`): both leave the site. So only printable ASCII
    paths pass (require() sends the raw, percent-encoded path), never with a backslash, a scheme,
    a host, or a leading `//`."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    if any(not 0x21 <= ord(c) <= 0x7E or c == "\\" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _next(request: web.Request) -> str:
    return safe_next(request.query.get("next"))


async def login_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(24)
    resp = page("login.html", status=status, error=error, login_csrf=token, next=_next(request))
    resp.set_cookie(auth.LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/login",
                    secure=auth.served_over_https(request, app_of(request)))
    return resp


async def login_post(request: web.Request) -> web.Response:
    app = app_of(request)
    form = await request.post()
    cookie = request.cookies.get(auth.LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode("utf-8", "surrogateescape"),
                                             str(form.get("csrf", "")).encode("utf-8", "surrogateescape")):
        raise web.HTTPForbidden(text="csrf")
    result, token = await auth.login(app, str(form.get("username", "")), str(form.get("password", "")),
                                     request.remote or "")
    if result == "limited":
        return await login_page(request, error="limited", status=429)
    if result == "bad":
        return await login_page(request, error="bad", status=401)
    resp = _see_other(_next(request))
    auth.set_session_cookie(resp, token, app.settings.dashboard.session_hours * 3600,
                            secure=auth.served_over_https(request, app))
    resp.del_cookie(auth.LOGIN_COOKIE, path="/login")
    return resp


async def logout_post(request: web.Request) -> web.Response:
    app = app_of(request)
    await auth.require(request, app)
    auth.logout(app, request)
    resp = _see_other("/login")
    resp.del_cookie(auth.COOKIE, path="/")
    return resp


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


async def favicon(request: web.Request) -> web.FileResponse:
    """Browsers ask for /favicon.ico whatever the page links; answer without a login."""
    return web.FileResponse(STATIC / "favicon.ico", headers={"Cache-Control": "public, max-age=86400"})


# -- alerts ----------------------------------------------------------------------------------------
def alert_list(store, scope, limit: int = 50, now: float | None = None) -> list[dict]:
    """The newest alerts touching the viewer's area, with coverage counted over that area only.
    Each says whether it is live (`live`): an alert whose state is still 'active' but that is a
    lift, or past its expiry, is not — the list must not show it as 生效中."""
    out = []
    for a in alert_rows.recent(store, limit * 4):
        buildings = set(alert_rows.scope_buildings(store, a["id"]))
        if scope is not None:
            buildings &= scope
            if not buildings:
                continue
        total = queries.coverage_total(store, a["id"], buildings if scope is not None else None)
        acked = queries.acked_in(store, a["id"], buildings)
        live = now is None or is_live(a, now)
        shown = ("lift" if a["action"] == "lift" else a["state"] if a["state"] != "active" or live
                 else "expired")
        out.append(dict(a, households=total, acked=acked, live=live and a["action"] != "lift",
                        shown_state=shown, drill=a.get("status") == "exercise",
                        pct=round(100.0 * acked / total, 1) if total else 0.0))
        if len(out) >= limit:
            break
    return out


async def home(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    rows = alert_list(app.store, user.scope, now=app.clock.now())
    return render(request, user, "home.html", live=[a for a in rows if a["live"]],
                  ended=[a for a in rows if not a["live"]],
                  undelivered=queries.undelivered_count(app.store, user.scope) if user.is_staff else 0)


async def alert_page(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    alert = alert_view.load_alert(app.store, int(request.match_info["id"]), user.scope)
    snap = alert_view.snapshot(app, alert, user.scope)
    newer = queries.superseded_by(app.store, alert["id"])
    return render(request, user, "alert.html", alert=alert, snap=snap, newer=newer,
                  message=alerts.render(app.store, alert), colours=alerts.COLOURS)


async def alert_follow_on(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    form = await request.post()
    action, alert_id = request.match_info["action"], int(request.match_info["id"])
    # the route allows update|lift; only an update carries a colour
    colour = None if action == "lift" else str(form.get("colour") or "") or None
    try:
        new_id = alerts.follow_on(app, alert_id, action, colour=colour,
                                  text=str(form.get("text") or "").strip(), issuer_id=user.person["id"])
    except AlertError as e:
        return render(request, user, "error.html", status=409, code=e.code, back=f"/alerts/{alert_id}")
    raise web.HTTPSeeOther(f"/alerts/{new_id}")


# -- exports ---------------------------------------------------------------------------------------
async def alert_report(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    alert = alert_view.load_alert(app.store, int(request.match_info["id"]), user.scope)
    fmt = request.match_info["fmt"]
    rows = exports.delivery_rows(app, alert["id"], user.scope)  # natural order, answers named
    body = exports.table_bytes(rows, fmt, labels().DELIVERY_SHEET)
    return exports.download(body, fmt, f"alert-{alert['id']}-deliveries.{fmt}")


CURVE_W, CURVE_H = 600, 220


async def after_action_page(request: web.Request) -> web.Response:
    """After a drill or a warning: per grid, the curve of households acknowledged over time, and
    the report's figures (staff: the whole report; it names leads and residents)."""
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    alert = alert_view.load_alert(app.store, int(request.match_info["id"]), user.scope)
    rep = drills.after_action(app.store, alert["id"], settings=app.settings)
    curves = drills.curves(app.store, alert["id"])
    end = max([p[0] for pts in curves.values() for p in pts] + [60.0])
    lines = {name: " ".join(f"{CURVE_W * t / end:.1f},{CURVE_H * (1 - pct / 100):.1f}" for t, pct in pts)
             for name, pts in curves.items()}
    return render(request, user, "after.html", alert=alert, rep=rep, lines=lines, end_min=round(end / 60),
                  w=CURVE_W, h=CURVE_H)


async def after_action_download(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    alert = alert_view.load_alert(app.store, int(request.match_info["id"]), user.scope)
    fmt = request.match_info["fmt"]
    body = drills.export(drills.after_action(app.store, alert["id"], settings=app.settings), fmt)
    return exports.download(body, fmt, f"alert-{alert['id']}-after-action.{fmt}")


async def office_report(request: web.Request) -> web.Response:
    """The one-page summary a street office files (bot.domain.upward.alert_report)."""
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    alert = alert_view.load_alert(app.store, int(request.match_info["id"]), user.scope)
    return exports.download(upward.alert_report(app, alert["id"]), "xlsx", f"alert-{alert['id']}-office.xlsx")


def parse_month(value: str) -> tuple[int, int]:
    """'2024-06' -> (2024, 6). ValueError for anything else, including years a date cannot hold
    ('99999-1' used to reach the report and fail there with a 500)."""
    year_s, sep, mon_s = value.partition("-")
    if not sep or not (year_s.isascii() and year_s.isdigit() and mon_s.isascii() and mon_s.isdigit()):
        raise ValueError(value)
    year, mon = int(year_s), int(mon_s)
    if not (len(year_s) == 4 and 1970 <= year <= 9998 and 1 <= mon <= 12):
        raise ValueError(value)
    return year, mon


async def requests_report(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    fmt = request.match_info["fmt"]
    try:
        year, mon = parse_month(request.query.get("month", ""))
    except ValueError:
        return render(request, user, "error.html", status=400, code="bad_month", back="/requests")
    body = exports.requests_report(app, year, mon, fmt)
    return exports.download(body, fmt, f"requests-{year}-{mon:02d}.{fmt}")
