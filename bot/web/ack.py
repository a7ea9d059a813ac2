"""Per-household ack links: a signed token -> a small page with the household's answer buttons.

GET shows the page (opening a link is not an ack: link previews and scanners open links too);
POST records the answer through bot.domain.acks.acknowledge — the act chat replies use — so
"需要帮助" opens the same urgent request here as in chat, and an answer can be changed here or
there. A lifted or expired warning's link says it has ended and records nothing.
"""
from __future__ import annotations

from aiohttp import web

from bot.core import texts
from bot.domain import acks, alerts, consult, links
from bot.domain.wording import ANSWER_ZH

KINDS = {"ok": "ok", "safe": "safe", "help": "help"}


def add_ack_routes(web_app: web.Application, deps) -> None:
    async def page(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        parsed = links.read_token(deps.settings.server.link_secret, token)
        if parsed is None:
            return _html(texts.render("web/ack.html", state="invalid"), status=404)
        alert_id, household_id = parsed
        alert = alerts.find(deps.store, alert_id)
        household = acks.household(deps, household_id)
        if alert is None or household is None:
            return _html(texts.render("web/ack.html", state="invalid"), status=404)
        carried = consult.by_alert(deps, alert_id)
        if carried is not None:  # a consultation's notice: its link opens the household's vote page
            raise web.HTTPSeeOther(f"/vote/{consult.vote_token(deps, carried['id'], household_id)}")
        common = dict(household=household["label"], poll=bool(alert["poll"]), token=token,
                      title=f"{alert['type']}预警")
        refused, outcome = None, None
        if request.method == "POST":
            form = await request.post()
            kind = KINDS.get(str(form.get("answer", "")), "ok")
            outcome = acks.acknowledge(deps, household_id=household_id, door="link", kind=kind,
                                       alert_id=alert_id, raw=f"link:{kind}",
                                       request_key=f"link:{alert_id}:{household_id}:{kind}")
            refused = outcome.refused
        elif not alerts.is_live(alert, deps.clock.now()):
            refused = "ended"
        elif not acks.covers(deps, alert_id, household_id):
            refused = "out_of_scope"
        if refused:
            return _html(texts.render("web/ack.html", state=refused, **common), status=410 if refused == "ended" else 404)
        current = acks.household_answer(deps, alert_id, household_id)
        return _html(texts.render(
            "web/ack.html", state="done" if current else "ask", **common,
            answer=ANSWER_ZH.get(current["answer"]) if current else None,
            request_id=outcome.request_id if outcome else None,
            changed=bool(outcome and outcome.changed)))

    web_app.router.add_get("/ack/{token}", page)
    web_app.router.add_post("/ack/{token}", page)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})
