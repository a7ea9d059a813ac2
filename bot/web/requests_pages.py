"""Dashboard pages for residents' requests (queue, detail with history) and the register browser.

Reading and permissions go through bot.domain.requests (the same rules as in chat); the action buttons
on the detail page call the JSON API in requests_api.py, so there is one write path. No SQL here.
"""
from __future__ import annotations

import json

from aiohttp import web

from bot.domain import requests as R
from bot.web import auth
from bot.web.render import app_of, render

SEARCH_LIMIT = 50
STATES = ("filed", "accepted", "assigned", "in_progress", "resolved", "rated", "closed")


def add_routes(wa: web.Application, app) -> None:
    wa.router.add_get("/requests", queue)
    wa.router.add_get(r"/requests/{id:\d+}", detail)
    wa.router.add_get("/register", register)
    wa.router.add_get(r"/register/households/{id:\d+}", household)


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


async def queue(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    q = request.query
    filters = {k: q.get(k) or None for k in ("state", "category", "urgency")}
    filters["building"] = _int(q.get("building"))
    rows = R.list_requests(app.store, user.person, limit=R.LIST_MAX, **filters)
    categories = [*app.settings.requests.categories, "other"]
    return render(request, user, "requests.html", requests=[R.view(app, r) for r in rows],
                  filters=filters, categories=categories, states=STATES,
                  buildings=R.buildings_for(app.store, user.scope))


async def detail(request: web.Request) -> web.Response:
    app = app_of(request)
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
    can = {"manage": R.can_manage(app.store, user.person, req),
           "work": R.can_work(app.store, user.person, req)}
    return render(request, user, "request.html", r=R.view(app, req), history=history,
                  filer=R.filer_of(app.store, req), helpers=R.helper_names(app.store, user.scope),
                  can=can, media=R.media(app.store, rid), transitions=R.TRANSITIONS,
                  claims_result=request.query.get("claims", ""))


async def register(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    term = request.query.get("q", "").strip()
    people, homes = R.search_register(app.store, user.scope, term)
    return render(request, user, "register.html", term=term, people=people[:SEARCH_LIMIT],
                  homes=homes[:SEARCH_LIMIT], more=max(len(people), len(homes)) > SEARCH_LIMIT)


async def household(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    try:
        found = R.household_page(app, user.scope, int(request.match_info["id"]))
    except R.NotFound:
        raise web.HTTPNotFound(text="no such household") from None
    except R.Forbidden:
        raise web.HTTPForbidden(text="outside your area") from None
    return render(request, user, "household.html", **found)
