"""三单制 / 微心愿 on the web (mounted from bot.web.dashboard).

Dashboard (login, CSRF on every POST): /claims — what is open for claiming and who claimed what,
in the viewer's area, with a form to write down a resident's wish; POST /claims/open/ID (the
button on a request's page) opens a request for claiming; /volunteers?month=YYYY-MM — per
volunteer the month's completed claims, hours and average rating, /volunteers.csv|xlsx.

The volunteer's own page, no login: /claims/<token> (a signed token naming the volunteer, see
bot.domain.claims.link_token; chat's 心愿单 sends it): the open items of their area with a 认领
button each, and their claimed ones with 完成 (hours, a note) and 放弃. The token is the
credential, as on the residents' ack links. Every act is bot.domain.claims. No SQL here.
"""
from __future__ import annotations

import re
from urllib.parse import urlencode

from aiohttp import web

from bot.core import texts
from bot.domain import claims
from bot.domain import requests as R
from bot.web import auth, exports
from bot.web.render import app_of, render

TOKEN = r"{token:[0-9]{1,12}\.[0-9]{1,12}\.[A-Za-z0-9_-]{16}}"
NOTE_MAX = 500


def add_routes(wa: web.Application) -> None:
    wa.router.add_get("/claims", board_page)
    wa.router.add_post(r"/claims/open/{id:\d+}", open_post)
    wa.router.add_post("/claims/wish", wish_post)
    wa.router.add_get("/volunteers", volunteers_page)
    wa.router.add_get(r"/volunteers.{fmt:csv|xlsx}", volunteers_export)
    wa.router.add_get(f"/claims/{TOKEN}", volunteer_page)
    wa.router.add_post(f"/claims/{TOKEN}", volunteer_post)


def labels():
    return texts.env().get_template("web/claims_labels.html").module


# -- dashboard ---------------------------------------------------------------------------------
async def board_page(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    found = claims.board(app, user.person)
    q = request.query
    return render(request, user, "claims.html", open=found[claims.OPEN],
                  claimed=found[claims.CLAIMED], done=q.get("done", ""),
                  error=q.get("error", ""), text=q.get("text", ""), room=q.get("room", ""))


async def open_post(request: web.Request) -> web.Response:
    """Open a request for claiming (the button on /requests/ID); back to its page, saying how
    it went."""
    app = app_of(request)
    user = await auth.require(request, app)
    rid = int(request.match_info["id"])
    try:
        claims.open_for_claims(app, user.person, rid)
    except R.NotFound:
        raise web.HTTPNotFound(text="not_found") from None
    except R.Forbidden:
        raise web.HTTPForbidden(text="forbidden") from None
    except R.RequestError as e:
        raise web.HTTPSeeOther(f"/requests/{rid}?" + urlencode({"claims": e.code})) from None
    raise web.HTTPSeeOther(f"/requests/{rid}?claims=opened")


async def wish_post(request: web.Request) -> web.Response:
    """Write down a resident's wish for a household ("3栋502") and open it for claiming."""
    app = app_of(request)
    user = await auth.require(request, app)
    form = await request.post()
    room = str(form.get("room", "")).strip()[:40]
    text = str(form.get("text", "")).strip()[:NOTE_MAX]
    found = claims.find_household(app, user.person, room) if room else []
    if not text or len(found) != 1:
        code = "text" if not text else ("many" if found else "household")
        raise web.HTTPSeeOther("/claims?" + urlencode({"error": code, "room": room, "text": text}))
    try:
        req = claims.file_wish(app, user.person, text, household_id=found[0]["id"])
    except R.RequestError as e:
        raise web.HTTPSeeOther("/claims?" + urlencode({"error": e.code, "room": room,
                                                       "text": text})) from None
    raise web.HTTPSeeOther(f"/claims?done={req['id']}#claim-{req['id']}")


def _month(request: web.Request) -> str | None:
    month = request.query.get("month", "").strip()
    if month and not re.fullmatch(r"\d{4}-\d{2}", month):
        raise web.HTTPBadRequest(text="bad_request")
    return month or None


def _figures(app, user, request: web.Request) -> dict:
    try:
        return claims.month_figures(app, user.person, _month(request))
    except R.BadInput:
        raise web.HTTPBadRequest(text="bad_request") from None


async def volunteers_page(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    return render(request, user, "volunteers.html", f=_figures(app, user, request))


def volunteer_rows(figures: dict) -> list[list]:
    """Header + one row per volunteer for the month's download."""
    L = labels()
    out = [[L.VOLUNTEER_COLUMNS[c] for c in L.VOLUNTEER_ORDER]]
    for r in figures["rows"]:
        out.append([figures["month"], r["name"], r["household"] or "", r["phone"] or "",
                    r["completed"], r["hours"], r["rating"] if r["rating"] is not None else "",
                    r["rated"], r["holding"]])
    return out


async def volunteers_export(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    figures = _figures(app, user, request)
    fmt = request.match_info["fmt"]
    body = exports.table_bytes(volunteer_rows(figures), fmt, labels().VOLUNTEER_SHEET)
    return exports.download(body, fmt, f"volunteers-{figures['month']}.{fmt}")


# -- the volunteer's own page --------------------------------------------------------------------
def _volunteer_of(request: web.Request):
    app = app_of(request)
    return app, claims.person_of_token(app, request.match_info["token"])


def _volunteer_html(request: web.Request, app, person, *, status: int = 200, **context
                    ) -> web.Response:
    resp = render(request, None, "claims_volunteer.html", person=person,
                  rows=claims.open_list(app, person) if person else [],
                  holding=claims.holding(app, person) if person else [],
                  token=request.match_info["token"], **context)
    resp.set_status(status)
    resp.headers["Referrer-Policy"] = "no-referrer"  # the token is in the address
    return resp


async def volunteer_page(request: web.Request) -> web.Response:
    app, person = _volunteer_of(request)
    if person is None:
        return _volunteer_html(request, app, None, status=404, outcome="invalid", rid=None)
    q = request.query
    return _volunteer_html(request, app, person, outcome=q.get("done", ""),
                           rid=int(q["id"]) if q.get("id", "").isdigit() else None)


async def volunteer_post(request: web.Request) -> web.Response:
    """认领 / 完成 / 放弃 from the page; afterwards back to the page (a reload posts nothing)."""
    app, person = _volunteer_of(request)
    if person is None:
        return _volunteer_html(request, app, None, status=404, outcome="invalid", rid=None)
    form = await request.post()
    action, rid = str(form.get("action", "")), str(form.get("id", ""))
    if not (rid.isascii() and rid.isdigit()) or action not in ("claim", "complete", "release"):
        raise web.HTTPBadRequest(text="bad_request")
    rid_n = int(rid)
    try:
        if action == "claim":
            claims.claim(app, person, rid_n)
        elif action == "release":
            claims.release(app, person, rid_n)
        else:
            claims.complete(app, person, rid_n, claims.parse_hours(str(form.get("hours", ""))),
                            str(form.get("note", ""))[:NOTE_MAX])
    except R.RequestError as e:
        return _volunteer_html(request, app, person, status=409, outcome=e.code, rid=rid_n,
                               info={"mine": False, "what": "", **e.info})
    token = request.match_info["token"]
    raise web.HTTPSeeOther(f"/claims/{token}?" + urlencode({"done": action, "id": rid_n}))
