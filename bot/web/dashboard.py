"""The staff dashboard: login, alerts (list, live page, update / lift) and exports.

Server-rendered jinja2 (templates/web/), a little JS from bot/web/static/ for the live page and
the composer's preview. Every handler starts with `auth.require`, which also checks CSRF on
POST; what a user sees is cut to their area (auth.WebUser.scope). Requests and the register
browser are in requests_pages.py; the requests JSON API (bot/web/requests_api.py) is mounted
here with the dashboard's session auth; the alert composer is composer.py.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bot.domain import alerts
from bot.domain import escalation
from bot.domain.alerts import AlertError
from bot.web import alert_view, auth, exports
from bot.web.render import formatters, page
from bot.web.sse import Streams

STATIC = Path(__file__).resolve().parent / "static"
OPTIONS = web.AppKey("linli_dashboard", object)


@dataclass
class Options:
    streams: Streams


def add_dashboard_routes(wa: web.Application, app, *, poll_s: float = 1.0) -> Options:
    """Mount the dashboard on Linli's aiohttp app. `poll_s`: how often live pages look for
    changes (wall seconds; tests may lower it via the returned Options)."""
    from bot.web import composer, requests_pages
    from bot.web.alerts_api import add_alert_routes
    from bot.web.requests_api import add_request_routes

    opts = Options(streams=Streams(poll_s=poll_s))
    wa[OPTIONS] = opts
    r = wa.router
    r.add_static("/static/", STATIC, append_version=True)
    r.add_get("/login", login_page)
    r.add_post("/login", login_post)
    r.add_post("/logout", logout_post)
    r.add_get("/", home)
    r.add_get("/alerts/new", composer.form)
    r.add_get("/alerts/new/text", composer.template_text)
    r.add_post("/alerts/new", composer.submit)
    r.add_get(r"/alerts/{id:\d+}", alert_page)
    r.add_get(r"/alerts/{id:\d+}/events", alert_events)
    r.add_post(r"/alerts/{id:\d+}/{action:update|lift}", alert_follow_on)
    r.add_get(r"/alerts/{id:\d+}/report.{fmt:csv|xlsx}", alert_report)
    r.add_get(r"/reports/requests.{fmt:csv|xlsx}", requests_report)
    requests_pages.add_routes(wa, app)

    async def api_auth(request: web.Request) -> dict:
        return (await auth.require(request, app, api=True)).person
    add_request_routes(wa, app, api_auth)
    add_alert_routes(wa, app)

    async def on_startup(_):
        if app.settings.dashboard.password:
            auth.ensure_admin(app.store, app.settings.dashboard.password)
    wa.on_startup.append(on_startup)
    wa.on_shutdown.append(opts.streams.shutdown)
    return opts


def _app(request: web.Request):
    from bot.app import APP_KEY

    return request.app[APP_KEY]


def render(request: web.Request, user, template: str, **context) -> web.Response:
    app = _app(request)
    return page(template, user=user, csrf=user.csrf if user else "", path=request.path,
                **formatters(app.settings.timezone), **context)


# -- login ---------------------------------------------------------------------------------------
def _next(request: web.Request) -> str:
    nxt = request.query.get("next", "/")
    return nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"  # no open redirect


async def login_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(24)
    resp = page("login.html", status=status, error=error, login_csrf=token, next=_next(request))
    resp.set_cookie(auth.LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/login")
    return resp


async def login_post(request: web.Request) -> web.Response:
    app = _app(request)
    form = await request.post()
    cookie = request.cookies.get(auth.LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text="CSRF token missing or wrong")
    result, token = await auth.login(app, str(form.get("username", "")), str(form.get("password", "")),
                                     request.remote or "")
    if result == "limited":
        return await login_page(request, error="limited", status=429)
    if result == "bad":
        return await login_page(request, error="bad", status=401)
    resp = _see_other(_next(request))
    auth.set_session_cookie(resp, token, app.settings.dashboard.session_hours * 3600)
    resp.del_cookie(auth.LOGIN_COOKIE, path="/login")
    return resp


async def logout_post(request: web.Request) -> web.Response:
    app = _app(request)
    await auth.require(request, app)
    auth.logout(app, request)
    resp = _see_other("/login")
    resp.del_cookie(auth.COOKIE, path="/")
    return resp


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


# -- alerts ----------------------------------------------------------------------------------------
def alert_list(store, scope, limit: int = 50) -> list[dict]:
    out = []
    for a in store.q("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit * 4,)):
        buildings = set(alert_view.alert_buildings(store, a["id"]))
        if scope is not None:
            buildings &= scope
            if not buildings:
                continue
        ids = sorted(buildings)
        marks = ",".join("?" * len(ids)) or "NULL"
        total = store.scalar(f"SELECT COUNT(*) FROM households WHERE active=1 AND building_id IN ({marks})", ids)
        acked = store.scalar(
            f"SELECT COUNT(DISTINCT a.household_id) FROM acks a JOIN households h ON h.id=a.household_id "
            f"WHERE a.alert_id=? AND h.building_id IN ({marks})", (a["id"], *ids))
        out.append(dict(a, households=total, acked=acked,
                        pct=round(100.0 * acked / total, 1) if total else 0.0))
        if len(out) >= limit:
            break
    return out


async def home(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app)
    return render(request, user, "home.html", alerts=alert_list(app.store, user.scope))


async def alert_page(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app)
    alert = alert_view.load_alert(app.store, int(request.match_info["id"]), user.scope)
    snap = alert_view.snapshot(app, alert, user.scope)
    newer = app.store.q1("SELECT id FROM alerts WHERE supersedes_id=? ORDER BY id DESC LIMIT 1", (alert["id"],))
    return render(request, user, "alert.html", alert=alert, snap=snap, newer=newer,
                  message=alerts.render(app.store, alert), colours=alerts.COLOURS)


async def alert_events(request: web.Request) -> web.StreamResponse:
    app = _app(request)
    user = await auth.require(request, app)
    alert = alert_view.load_alert(app.store, int(request.match_info["id"]), user.scope)
    streams = request.app[OPTIONS].streams

    def build() -> dict:
        snap = alert_view.snapshot(app, alert, user.scope)
        fresh = app.store.q1("SELECT state FROM alerts WHERE id=?", (alert["id"],))
        return {"alert_id": alert["id"], "state": fresh["state"], "pct": snap["pct"],
                "acked": snap["acked"], "households": snap["households"],
                "buildings": {n["id"]: n["acked"] for n in _buildings(snap["tree"])},
                "html": alert_view.live_html(snap)}
    return await streams.serve(request, lambda: alert_view.fingerprint(app.store, alert["id"]), build)


def _buildings(tree: list[dict]):
    for n in tree:
        if n["kind"] == "building":
            yield n
        yield from _buildings(n["children"])


async def alert_follow_on(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app, staff=True)
    form = await request.post()
    action, alert_id = request.match_info["action"], int(request.match_info["id"])
    colour = str(form.get("colour") or "") or None if action == "update" else None
    try:
        new_id = alerts.follow_on(app, alert_id, action, colour=colour,
                                  text=str(form.get("text") or "").strip(), issuer_id=user.person["id"])
    except AlertError as e:
        return render(request, user, "error.html", status=409, code=e.code, back=f"/alerts/{alert_id}")
    escalation.rearm(app)
    raise web.HTTPSeeOther(f"/alerts/{new_id}")


# -- exports ---------------------------------------------------------------------------------------
async def alert_report(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app)
    alert = alert_view.load_alert(app.store, int(request.match_info["id"]), user.scope)
    fmt = request.match_info["fmt"]
    rows = exports.delivery_rows(app, alert["id"], user.scope)
    body = exports.table_bytes(rows, fmt, exports._labels().DELIVERY_SHEET)
    return exports.download(body, fmt, f"alert-{alert['id']}-deliveries.{fmt}")


async def requests_report(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app, staff=True)
    fmt, month = request.match_info["fmt"], request.query.get("month", "")
    try:
        year, mon = (int(x) for x in month.split("-"))
        if not 1 <= mon <= 12:
            raise ValueError(month)
    except ValueError:
        return render(request, user, "error.html", status=400, code="bad_month", back="/requests")
    body = exports.requests_report(app, year, mon, fmt)
    return exports.download(body, fmt, f"requests-{year}-{mon:02d}.{fmt}")
