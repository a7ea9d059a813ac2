"""JSON API for warnings: list, preview/issue, coverage, update, lift.

Same session and CSRF rules as the dashboard pages (bot.web.auth): reading needs a login (a lead
sees only their buildings' figures), issuing, updating and lifting need staff.
"""
from __future__ import annotations

from aiohttp import web

from bot.domain import alerts as alerts_mod
from bot.domain import escalation
from bot.domain.acks import coverage
from bot.domain.alerts import AlertError, Draft
from bot.web import auth
from bot.web.alert_view import prune


def _bad(e: AlertError) -> web.Response:
    return web.json_response({"error": e.code, **{k: str(v) for k, v in e.params.items()}}, status=400)


async def _json(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def add_alert_routes(wa: web.Application, app) -> None:
    store = app.store

    async def list_(request: web.Request) -> web.Response:
        user = await auth.require(request, app, api=True)
        out = []
        for a in store.q("SELECT * FROM alerts ORDER BY id DESC LIMIT 200"):
            if user.scope is not None and not store.scalar(
                    f"SELECT 1 FROM alert_scope WHERE alert_id=? AND building_id IN "
                    f"({','.join('?' * len(user.scope)) or 'NULL'}) LIMIT 1", (a["id"], *user.scope)):
                continue
            out.append({k: a[k] for k in ("id", "type", "colour", "action", "state", "poll", "created_at",
                                          "expires_at", "supersedes_id")})
        return web.json_response({"alerts": out})

    async def detail(request: web.Request) -> web.Response:
        user = await auth.require(request, app, api=True)
        alert_id = int(request.match_info["id"])
        if store.q1("SELECT id FROM alerts WHERE id=?", (alert_id,)) is None:
            raise web.HTTPNotFound(text="no such alert")
        cov = coverage(store, alert_id)
        if user.scope is not None:
            cov["tree"] = prune(cov["tree"], user.scope)
            if not cov["tree"]:
                raise web.HTTPForbidden(text="outside your area")
            for k in ("households", "reached", "acked"):
                cov[k] = sum(r[k] for r in cov["tree"])
            cov["pct"] = round(100.0 * cov["acked"] / cov["households"], 1) if cov["households"] else 0.0
            cov["time_to"] = {}  # community-wide timing is not a lead's figure
        hops = store.q("SELECT h.id, h.node_id, h.method, h.state, h.escalation_level, h.done_at, g.name AS grp "
                       "FROM hops h LEFT JOIN chat_groups g ON g.id=h.group_id WHERE h.alert_id=? ORDER BY h.id",
                       (alert_id,))
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
        escalation.rearm(app)
        return web.json_response({"id": alert_id}, status=201)

    async def follow_on(request: web.Request) -> web.Response:
        user = await auth.require(request, app, api=True, staff=True)
        body = await _json(request)
        action = request.match_info["action"]
        try:
            colour = alerts_mod.parse_colour(str(body.get("colour", ""))) if action == "update" else None
            alert_id = alerts_mod.follow_on(app, int(request.match_info["id"]), action, colour=colour,
                                            text=str(body.get("text") or ""),
                                            issuer_id=(user.person or {}).get("id"))
        except AlertError as e:
            return _bad(e)
        escalation.rearm(app)
        return web.json_response({"id": alert_id}, status=201)

    async def cap_feed(request: web.Request) -> web.Response:
        """A weather service pushes CAP 1.2 XML here with `Authorization: Bearer <feed_token>`."""
        import hmac

        from bot.transports.inbound import cap

        token = app.settings.server.feed_token
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPUnauthorized(text="feed token required")
        body = await request.content.read(cap.MAX_BYTES + 1)
        try:
            alert_id = cap.ingest(app, body)
        except AlertError as e:
            return _bad(e)
        if alert_id is None:
            return web.json_response({"duplicate": True})
        escalation.rearm(app)
        return web.json_response({"id": alert_id}, status=201)

    wa.router.add_post("/api/alerts/cap", cap_feed)
    wa.router.add_get("/api/alerts", list_)
    wa.router.add_post("/api/alerts", create)
    wa.router.add_get(r"/api/alerts/{id:\d+}", detail)
    wa.router.add_post(r"/api/alerts/{id:\d+}/{action:update|lift}", follow_on)
