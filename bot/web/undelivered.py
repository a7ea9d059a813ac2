"""Warnings that did not go out (未发出的预警): one staff page for everything that stopped on the
way — sends the outbox gave up on (dead: retries exhausted; failed: the platform refused) with
the platform's reason, and weather-service (CAP) messages that were not relayed (held for a
scope decision, refused, outside the community, recorded tests and drafts) with Linli's reason.

Two actions, each through the one function that owns it: "重发" puts a dead or failed send back
in the outbox (Outbox.retry, which logs `send.retried`); "发布到范围…" relays a held CAP message
to the scope staff name (bot.domain.feed.release, which issues through alerts.issue). Staff only;
staff of one community in a multi-community register see the sends of their community's
warnings (and sends that belong to no warning). No SQL here.
"""
from __future__ import annotations

import re

from aiohttp import web

from bot.data import alerts as alert_rows
from bot.data import dashboard as queries
from bot.domain import alerts, feed
from bot.domain.alerts import AlertError
from bot.web import auth
from bot.web.render import app_of, render

SCOPE_SPLIT = re.compile(r"[、,，;；\s]+")


def add_routes(wa: web.Application) -> None:
    wa.router.add_get("/undelivered", page)
    wa.router.add_post(r"/undelivered/sends/{id:\d+}/retry", retry_post)
    wa.router.add_post(r"/undelivered/cap/{id:\d+}/release", release_post)


async def page(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    return render(request, user, "undelivered.html", sends=queries.undelivered_sends(app.store, user.scope),
                  caps=feed.not_relayed(app), done=request.query.get("done", ""))


def _visible_send(store, user, send_id: int) -> dict:
    row = queries.send_state(store, send_id)
    if row is None:
        raise web.HTTPNotFound(text="no_send")
    if user.scope is not None and row["alert_id"] is not None \
            and not set(alert_rows.scope_buildings(store, row["alert_id"])) & user.scope:
        raise web.HTTPNotFound(text="no_send")  # another community's: not told it exists
    return row


async def retry_post(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    row = _visible_send(app.store, user, int(request.match_info["id"]))
    if row["state"] not in ("dead", "failed"):
        raise web.HTTPConflict(text="not_dead")
    moved = app.outbox.retry([row["id"]])
    if not moved:  # it changed state between the check and the retry
        raise web.HTTPConflict(text="not_dead")
    raise web.HTTPSeeOther("/undelivered?done=retried")


def scope_words(text: str) -> list[str]:
    """"第一网格、大龙一区" -> ["第一网格", "大龙一区"] (any of 、,，; or spaces between)."""
    return [w for w in SCOPE_SPLIT.split(text.strip()) if w]


async def release_post(request: web.Request) -> web.Response:
    """Relay a held CAP message to the scope staff typed (empty: the whole community — for the
    staff of one community, theirs)."""
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    form = await request.post()
    words = scope_words(str(form.get("scope", "")))
    if not words and user.scope is not None and user.person.get("node_id"):
        words = [str(user.person["node_id"])]  # "the whole community" means theirs, not every one
    try:
        if user.scope is not None:  # a community's staff release within their community only
            nodes = alerts.resolve_scope(app.store, words)
            if not set(alerts.scope_buildings(app.store, nodes)) <= user.scope:
                raise web.HTTPForbidden(text="outside_area")
        out = feed.release(app, int(request.match_info["id"]), scope_words=words,
                           issuer_id=user.person["id"])
    except AlertError as e:
        status = 409 if e.code == "not_held" else 400
        return render(request, user, "error.html", status=status, status_code=status, code=e.code,
                      back="/undelivered")
    raise web.HTTPSeeOther(f"/alerts/{out.alert_id}")
