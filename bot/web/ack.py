"""Per-household ack links: a signed token -> a small page with one button.

The token names the alert and the household and carries an HMAC, so a link cannot be altered to
acknowledge for someone else. GET shows the page (opening a link is not an ack: link previews
and scanners open links too); POST records the ack.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from aiohttp import web

from bot.core import texts


def make_token(secret: str, alert_id: int, household_id: int) -> str:
    body = f"{alert_id}.{household_id}"
    sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:12]
    return f"{body}.{base64.urlsafe_b64encode(sig).decode().rstrip('=')}"


def read_token(secret: str, token: str) -> tuple[int, int] | None:
    try:
        alert_s, household_s, _ = token.split(".")
        alert_id, household_id = int(alert_s), int(household_s)
    except ValueError:
        return None
    expected = make_token(secret, alert_id, household_id)
    return (alert_id, household_id) if hmac.compare_digest(expected, token) else None


def add_ack_routes(web_app: web.Application, app) -> None:
    async def page(request: web.Request) -> web.Response:
        parsed = read_token(app.settings.server.link_secret, request.match_info["token"])
        if parsed is None:
            return _html(texts.render("web/ack.html", state="invalid"), status=404)
        alert = app.store.q1("SELECT * FROM alerts WHERE id=?", (parsed[0],))
        household = app.store.q1("SELECT * FROM households WHERE id=?", (parsed[1],))
        if alert is None or household is None:
            return _html(texts.render("web/ack.html", state="invalid"), status=404)
        done = app.store.q1("SELECT at FROM acks WHERE alert_id=? AND household_id=? ORDER BY at LIMIT 1",
                            parsed)
        state = "done" if done else "ask"
        if request.method == "POST" and not done:
            from bot.domain.acks import record_ack

            form = await request.post()
            answer = "help" if form.get("answer") == "help" else "ok"
            record_ack(app, alert=alert, household_id=household["id"], resident_id=None,
                       channel="link", answer=answer, raw=f"link:{answer}")
            state = "done"
        elif request.method == "POST":
            state = "done"
        return _html(texts.render("web/ack.html", state=state, household=household["label"],
                                  poll=bool(alert["poll"]), token=request.match_info["token"],
                                  title=f"{alert['type']}预警"))

    web_app.router.add_get("/ack/{token}", page)
    web_app.router.add_post("/ack/{token}", page)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})
