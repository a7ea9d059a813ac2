"""Dashboard pages for residents' requests (queue, detail with history) and the register browser.

Reading and permissions go through bot.domain.requests (the same rules as in chat); the action buttons
on the detail page call the JSON API in requests_api.py, so there is one write path.
"""
from __future__ import annotations

import json

from aiohttp import web

from bot.domain import requests as R
from bot.domain.requests.access import can_manage, can_work, view
from bot.domain.requests.lifecycle import HELPER_ROLES
from bot.web import auth
from bot.web.dashboard import _app, render

SEARCH_LIMIT = 50
STATES = ("filed", "accepted", "assigned", "in_progress", "resolved", "rated", "closed")


def add_routes(wa: web.Application, app) -> None:
    wa.router.add_get("/requests", queue)
    wa.router.add_get(r"/requests/{id:\d+}", detail)
    wa.router.add_get("/register", register)
    wa.router.add_get(r"/register/households/{id:\d+}", household)


def _buildings(store, scope) -> list[dict]:
    rows = store.q("SELECT b.id, c.name || b.name AS name FROM nodes b LEFT JOIN nodes c "
                   "ON c.id=b.parent_id WHERE b.kind='building' ORDER BY c.path, b.id")
    return [b for b in rows if scope is None or b["id"] in scope]


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


async def queue(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app)
    q = request.query
    filters = {k: q.get(k) or None for k in ("state", "category", "urgency")}
    filters["building"] = _int(q.get("building"))
    rows = R.list_requests(app.store, user.person, limit=500, **filters)
    categories = [*app.settings.requests.categories, "other"]
    return render(request, user, "requests.html", requests=[view(app, r) for r in rows],
                  filters=filters, categories=categories, states=STATES,
                  buildings=_buildings(app.store, user.scope))


async def detail(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app)
    rid = int(request.match_info["id"])
    try:
        req = R.load(app.store, user.person, rid)
    except R.NotFound:
        raise web.HTTPNotFound(text="no such request") from None
    except R.Forbidden:
        raise web.HTTPForbidden(text="outside your area") from None
    history = [dict(e, data=json.loads(e["data"]) if e["data"] else {})
               for e in R.history(app.store, rid)]
    filer = app.store.q1("SELECT name, phone FROM residents WHERE id=?", (req["resident_id"],))
    helpers = _helpers(app.store, user.scope)
    can = {"manage": can_manage(app.store, user.person, req),
           "work": can_work(app.store, user.person, req)}
    media = app.store.q("SELECT kind, media_id, at FROM request_media WHERE request_id=? ORDER BY id", (rid,))
    return render(request, user, "request.html", r=view(app, req), history=history, filer=filer,
                  helpers=helpers, can=can, media=media, transitions=R.TRANSITIONS)


def _helpers(store, scope) -> list[str]:
    """Names offered for 派单: helpers registered in the viewer's area (or without a home)."""
    rows = store.q("SELECT r.name, r.roles, h.building_id FROM residents r LEFT JOIN households h "
                   "ON h.id=r.household_id WHERE r.active=1 ORDER BY r.name")
    return sorted({r["name"] for r in rows
                   if set(HELPER_ROLES) & set((r["roles"] or "").split(","))
                   and (scope is None or r["building_id"] is None or r["building_id"] in scope)})


async def register(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app)
    term = request.query.get("q", "").strip()
    people, homes = [], []
    if term:
        like = f"%{term}%"
        people = app.store.q(
            "SELECT r.id, r.name, r.roles, r.vulnerable, r.phone, r.household_id, h.label, "
            "h.building_id FROM residents r LEFT JOIN households h ON h.id=r.household_id "
            "WHERE r.active=1 AND (r.name LIKE ? OR r.phone LIKE ?) ORDER BY r.name", (like, like))
        homes = app.store.q(
            "SELECT h.id, h.label, h.building_id, (SELECT COUNT(*) FROM residents r WHERE "
            "r.household_id=h.id AND r.active=1) AS people FROM households h WHERE h.active=1 "
            "AND h.label LIKE ? ORDER BY h.label", (like,))
        if user.scope is not None:  # a lead looks up their own buildings only
            people = [p for p in people if p["building_id"] in user.scope]
            homes = [h for h in homes if h["building_id"] in user.scope]
    return render(request, user, "register.html", term=term, people=people[:SEARCH_LIMIT],
                  homes=homes[:SEARCH_LIMIT], more=max(len(people), len(homes)) > SEARCH_LIMIT)


async def household(request: web.Request) -> web.Response:
    app = _app(request)
    user = await auth.require(request, app)
    hid = int(request.match_info["id"])
    home = app.store.q1("SELECT h.*, b.name AS building, c.name AS compound FROM households h "
                        "JOIN nodes b ON b.id=h.building_id LEFT JOIN nodes c ON c.id=b.parent_id "
                        "WHERE h.id=?", (hid,))
    if home is None:
        raise web.HTTPNotFound(text="no such household")
    if user.scope is not None and home["building_id"] not in user.scope:
        raise web.HTTPForbidden(text="outside your area")
    people = app.store.q("SELECT * FROM residents WHERE household_id=? ORDER BY active DESC, id", (hid,))
    acks = app.store.q(
        "SELECT k.*, a.type, a.colour, a.action, a.created_at AS alert_at, r.name AS who, "
        "p.name AS proxy FROM acks k JOIN alerts a ON a.id=k.alert_id "
        "LEFT JOIN residents r ON r.id=k.resident_id LEFT JOIN residents p ON p.id=k.by_proxy_id "
        "WHERE k.household_id=? ORDER BY k.at DESC", (hid,))
    reqs = [view(app, r) for r in app.store.q(
        "SELECT * FROM requests WHERE household_id=? ORDER BY id DESC", (hid,))]
    return render(request, user, "household.html", home=home, people=people, acks=acks, requests=reqs)
