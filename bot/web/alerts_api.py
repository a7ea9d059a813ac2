"""JSON API for warnings: list, preview/issue, coverage, update, lift, and the CAP push.

Same session and CSRF rules as the dashboard pages (bot.web.auth): reading needs a login (a lead
sees only their buildings' figures and hops, exactly as on the alert page), issuing, updating and
lifting need staff. Errors are JSON `{"error": code, "message": <Chinese>}` (the dashboard's
errors middleware shapes the raised ones).
"""
from __future__ import annotations

import hmac

from aiohttp import web

from bot.data import alerts as alert_rows
from bot.data import dashboard as queries
from bot.domain import alerts as alerts_mod
from bot.domain.alerts import AlertError, Draft
from bot.domain.coverage import coverage
from bot.web import auth
from bot.web.alert_view import load_alert, prune, visible, visible_hops
from bot.web.render import labels

# A CAP push larger than this is refused with 413 before it is parsed (the CAP parser's own limit
# is the same: bot.transports.inbound.cap.MAX_BYTES).
CAP_MAX_BYTES = 256 * 1024
_HOP_FIELDS = ("id", "node_id", "method", "state", "escalation_level", "done_at", "grp")


def _bad(e: AlertError, status: int = 400) -> web.Response:
    message = labels().ERRORS.get(e.code, e.code)
    return web.json_response({"error": e.code, "message": message,
                              **{k: str(v) for k, v in e.params.items()}}, status=status)


async def _json(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="bad_json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="bad_json")
    return body


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, however many pieces it arrives in; 413 past `limit` bytes.

    `request.content.read(n)` returns what has arrived so far, not n bytes: a body sent in two
    chunks was cut after the first one."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                            text="too_large")
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size, text="too_large")
        chunks.append(chunk)


def bearer_ok(header: str, token: str) -> bool:
    """Constant-time check of `Authorization: Bearer <token>`. Header values are text decoded by
    aiohttp (non-ASCII bytes become surrogates), so compare their bytes: hmac.compare_digest
    refuses non-ASCII str, which used to make a stray byte a 500 instead of a 401."""
    if not token:
        return False
    given = header.removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


# a CAP push that made (or changed) a warning is 201; every other decision is 200 with its outcome
_CREATED = ("relayed", "updated", "lifted")


def add_alert_routes(wa: web.Application, app, *, cap_receive=None) -> None:
    """`cap_receive(app, body) -> FeedOutcome` parses a pushed CAP document and acts on it (the
    inbound transport's `receive`, handed in by the composition root: bot.web does not import
    transports)."""
    store = app.store
    if cap_receive is None:
        raise ValueError("add_alert_routes needs cap_receive (the composition root hands in the CAP transport)")

    async def list_(request: web.Request) -> web.Response:
        user = await auth.require(request, app, api=True)
        out = [{k: a[k] for k in ("id", "type", "colour", "action", "state", "poll", "created_at",
                                  "expires_at", "supersedes_id")}
               for a in alert_rows.recent(store, 200) if visible(store, a["id"], user.scope)]
        return web.json_response({"alerts": out})

    async def detail(request: web.Request) -> web.Response:
        """Coverage and hops, cut to the viewer's area by the same rules as the alert page."""
        user = await auth.require(request, app, api=True)
        alert = load_alert(store, int(request.match_info["id"]), user.scope)  # 404 / 403
        cov = coverage(store, alert["id"])
        tree = prune(cov["tree"], user.scope)
        if user.scope is not None:
            cov["tree"] = tree
            for k in ("households", "reached", "acked"):
                cov[k] = sum(r[k] for r in tree)
            cov["pct"] = round(100.0 * cov["acked"] / cov["households"], 1) if cov["households"] else 0.0
            cov["time_to"] = {}  # community-wide timing is not a lead's figure
        hops = [{k: h[k] for k in _HOP_FIELDS}
                for h in visible_hops(queries.hops(store, alert["id"]), tree, user.scope)]
        hops.sort(key=lambda h: h["id"])
        return web.json_response({"coverage": cov, "hops": hops})

    async def create(request: web.Request) -> web.Response:
        user = await auth.require(request, app, api=True, staff=True)
        body = await _json(request)
        try:
            draft = Draft(type=alerts_mod.parse_type(str(body.get("type", ""))),
                          colour=alerts_mod.parse_colour(str(body.get("colour", ""))),
                          text=str(body.get("text") or ""), scope=alerts_mod.resolve_scope(store, body.get("scope") or []),
                          poll=body.get("poll"), expires_h=body.get("expires_h"),
                          issuer_id=(user.person or {}).get("id"))
            if body.get("preview"):
                shown = alerts_mod.preview(store, draft)
                return web.json_response({"text": shown["text"], "buildings": shown["buildings"]})
            alert_id = alerts_mod.issue(app, draft)
        except AlertError as e:
            return _bad(e)
        return web.json_response({"id": alert_id}, status=201)

    async def follow_on(request: web.Request) -> web.Response:
        user = await auth.require(request, app, api=True, staff=True)
        body = await _json(request)
        action = request.match_info["action"]
        try:
            # the route allows update|lift; only an update carries a colour
            colour = None if action == "lift" else alerts_mod.parse_colour(str(body.get("colour", "")))
            alert_id = alerts_mod.follow_on(app, int(request.match_info["id"]), action, colour=colour,
                                            text=str(body.get("text") or ""),
                                            issuer_id=(user.person or {}).get("id"))
        except AlertError as e:
            return _bad(e)
        return web.json_response({"id": alert_id}, status=201)

    async def cap_feed(request: web.Request) -> web.Response:
        """A weather service pushes CAP 1.2 XML here with `Authorization: Bearer <feed_token>`."""
        if not bearer_ok(request.headers.get("Authorization", ""), app.settings.server.feed_token):
            raise web.HTTPUnauthorized(text="feed_token")
        body = await read_body(request, CAP_MAX_BYTES)
        try:
            out = cap_receive(app, body)
        except AlertError as e:  # not CAP at all (bad XML, no <alert>, …)
            return _bad(e)
        created = out.outcome in _CREATED and out.alert_id is not None
        return web.json_response({"outcome": out.outcome, "id": out.alert_id, "reason": out.reason,
                                  "cap_id": out.cap_id}, status=201 if created else 200)

    wa.router.add_post("/api/alerts/cap", cap_feed)
    wa.router.add_get("/api/alerts", list_)
    wa.router.add_post("/api/alerts", create)
    wa.router.add_get(r"/api/alerts/{id:\d+}", detail)
    wa.router.add_post(r"/api/alerts/{id:\d+}/{action:update|lift}", follow_on)
