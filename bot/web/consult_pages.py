"""议事 on the dashboard, and the residents' vote page.

/consultations            the list (a lead: those with voters in their area)
/consultations/new        the form (staff, and grid / compound leads within their area)
/consultations/{id}       the live tally per building (turnout; choices when the consultation is 记名),
                          the households, a proxy vote form, close early (staff); while open,
                          static/consult.js swaps in the live parts every POLL_S seconds
/consultations/{id}/tally the live parts alone (an HTML fragment, same login, area and secrecy)
/consultations/{id}.csv|xlsx   the filing: household, vote (only 已投 when 不记名), how, when
/vote/{token}             public: a household's signed link (its own namespace, never an ack token);
                          the question, the household's current choice, buttons (owners only: the
                          voter picks which registered owner of the household votes, names masked);
                          after closing the result and HTTP 410

Every act is a bot.domain.consult function (the same ones chat calls). No SQL here.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.core.tables import natural_key
from bot.domain import consult
from bot.domain.consult import ConsultDraft, ConsultError
from bot.web import auth, exports
from bot.web.composer import scope_tree
from bot.web.render import app_of, page, render

THRESHOLDS = {"1/2": (1, 2), "2/3": (2, 3), "3/4": (3, 4), "0/1": (0, 1)}
POLL_S = 5.0  # how often an open consultation's page fetches its live parts (tests lower it)


def add_routes(wa: web.Application) -> None:
    wa.router.add_get("/consultations", list_page)
    wa.router.add_get("/consultations/new", new_page)
    wa.router.add_post("/consultations/new", new_post)
    wa.router.add_get(r"/consultations/{id:\d+}", detail_page)
    wa.router.add_get(r"/consultations/{id:\d+}/tally", tally_fragment)
    wa.router.add_get(r"/consultations/{id:\d+}.{fmt:csv|xlsx}", export)
    wa.router.add_post(r"/consultations/{id:\d+}/proxy", proxy_post)
    wa.router.add_post(r"/consultations/{id:\d+}/close", close_post)
    wa.router.add_get("/vote/{token}", vote_page)
    wa.router.add_post("/vote/{token}", vote_page)


# -- the dashboard ------------------------------------------------------------------------------------
async def list_page(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    rows = [{"c": c, "t": consult.tally(app, c["id"])} for c in consult.listing(app, user.person)]
    return render(request, user, "consult_list.html", rows=rows, may_open=consult.may_open(app.store, user.person))


def _form_values(posted) -> dict:
    return {k: str(posted.get(k, "")).strip() for k in
            ("question", "options", "electorate", "threshold", "basis", "closes", "secrecy", "unit")}


async def new_page(request: web.Request, *, values: dict | None = None, scope: list[int] | None = None,
                   error: str = "", status: int = 200) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    if not consult.may_open(app.store, user.person):
        raise web.HTTPForbidden(text="forbidden")
    default_close = datetime.fromtimestamp(app.clock.now() + app.settings.consult.default_days * 86400,
                                           ZoneInfo(app.settings.timezone)).strftime("%Y-%m-%dT%H:%M")
    values = values or {"question": "", "options": "同意/不同意/弃权", "electorate": "households",
                        "threshold": "2/3", "basis": "households", "closes": default_close, "secrecy": "names",
                        "unit": ""}
    return render(request, user, "consult_new.html", status=status, values=values, error=error,
                  tree=scope_tree(app.store, user.scope), checked=set(scope or []))


def _closes_at(app, words: str) -> float:
    try:
        local = datetime.fromisoformat(words)
    except ValueError:
        raise ConsultError("bad_time", value=words) from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=ZoneInfo(app.settings.timezone))
    return local.timestamp()


async def new_post(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    posted = await request.post()
    values = _form_values(posted)
    scope = [int(v) for v in posted.getall("scope", []) if str(v).isascii() and str(v).isdigit()]
    try:
        options = consult.parse_options(values["options"] or "同意/不同意/弃权")
        if values["threshold"] not in THRESHOLDS:
            raise ConsultError("bad_threshold", value=values["threshold"])
        if values["basis"] not in consult.BASES or values["electorate"] not in consult.ELECTORATES \
                or values["secrecy"] not in consult.SECRECY:
            raise ConsultError("bad_field")
        if not scope and user.scope is not None:
            raise ConsultError("need_scope")
        draft = ConsultDraft(question=values["question"], closes_at=_closes_at(app, values["closes"]),
                             options=options, kind=consult.kind_for(options), electorate=values["electorate"],
                             basis=values["basis"], threshold=THRESHOLDS[values["threshold"]],
                             secrecy=values["secrecy"], scope=scope, opened_by=user.person.get("id"),
                             unit=consult.parse_unit(values["unit"]))
        cid = consult.open(app, draft, user.person)
    except ConsultError as e:
        return await new_page(request, values=values, scope=scope, error=e.text(), status=400)
    raise web.HTTPSeeOther(f"/consultations/{cid}")


def _visible(app, user, cid: int) -> tuple[dict, list[dict]]:
    """The consultation and its households this viewer may see (404 when none)."""
    try:
        c = consult.get(app, cid)
    except ConsultError:
        raise web.HTTPNotFound(text="not_found") from None
    rows = consult.ballots(app, cid)
    if user.scope is not None:
        rows = [r for r in rows if r["building_id"] in user.scope]
        if not rows:
            raise web.HTTPNotFound(text="not_found")
    return c, rows


def shows_choices(user, c: dict) -> bool:
    """Each household's choice: to staff, and only for a 记名 consultation (leads are residents too:
    they see who voted, never what)."""
    return user.is_staff and c["secrecy"] == "names"


def how_code(row: dict) -> str:
    """'self' | 'link' | 'proxy' | 'dashboard' | '' (not voted): how a household's vote came."""
    if row["channel"] is None:
        return ""
    if row["channel"] in ("wecom", "oa"):
        return "self"
    return row["channel"]


def _live_parts(app, user, c: dict, rows: list[dict]) -> dict:
    """What the page and its fragment show of the tally, cut to the viewer's area and secrecy."""
    t = consult.tally(app, c["id"])
    buildings = [b for b in t["buildings"] if user.scope is None or b["id"] in user.scope]
    rows = sorted(rows, key=lambda r: (natural_key(r["compound"] or ""), natural_key(r["building"]),
                                       natural_key(r["label"])))
    for r in rows:
        r["how"] = how_code(r)
    return dict(c=c, t=t, buildings=buildings, rows=rows, is_open=consult.is_open(app, c),
                names=shows_choices(user, c))


async def detail_page(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    c, rows = _visible(app, user, int(request.match_info["id"]))
    live = _live_parts(app, user, c, rows)
    proxyable = [r for r in live["rows"] if consult.may_proxy(app.store, user.person,
                                                              {"building_id": r["building_id"], "steward_id": None})]
    return render(request, user, "consult.html", proxyable=proxyable, poll_ms=int(POLL_S * 1000),
                  closes=consult.at_parts(app, c["closes_at"]), saved=request.query.get("saved", ""),
                  error=request.query.get("error", ""), **live)


async def tally_fragment(request: web.Request) -> web.Response:
    """GET /consultations/{id}/tally: the page's live parts (consult.js swaps them in by id)."""
    app = app_of(request)
    user = await auth.require(request, app)
    c, rows = _visible(app, user, int(request.match_info["id"]))
    return render(request, user, "consult_tally.html", fragment=True, **_live_parts(app, user, c, rows))


async def proxy_post(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    posted = await request.post()
    c, rows = _visible(app, user, int(request.match_info["id"]))
    hid, choice = str(posted.get("household", "")), str(posted.get("choice", ""))
    if not (hid.isascii() and hid.isdigit() and choice.isascii() and choice.isdigit()):
        raise web.HTTPBadRequest(text="bad_request")
    if int(hid) not in {r["household_id"] for r in rows}:
        raise web.HTTPNotFound(text="not_found")
    try:
        consult.proxy_vote(app, c["id"], int(hid), int(choice), actor=user.person, channel="dashboard")
    except ConsultError as e:
        return render(request, user, "consult_refused.html", status=409, c=c, message=e.text())
    raise web.HTTPSeeOther(f"/consultations/{c['id']}?saved={hid}#household-{hid}")


async def close_post(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    c, _ = _visible(app, user, int(request.match_info["id"]))
    try:
        consult.close(app, c["id"], actor_id=user.person.get("id"))
    except ConsultError:
        raise web.HTTPConflict(text="conflict") from None
    raise web.HTTPSeeOther(f"/consultations/{c['id']}")


def export_rows(app, c: dict, rows: list[dict], *, names: bool) -> list[list]:
    """Header + one row per household: the filing (without `names`, a vote says only 已投)."""
    tz = app.settings.timezone
    out = [["小区", "楼栋", "住户", "投票", "方式", "投票人", "时间"]]
    how_zh = {"self": "本人", "link": "链接", "proxy": "代投", "dashboard": "工作台代投", "": ""}
    for r in sorted(rows, key=lambda r: (natural_key(r["compound"] or ""), natural_key(r["building"]),
                                         natural_key(r["label"]))):
        how = how_code(r)
        if r["choice"] is None:
            vote = "未投"
        else:
            vote = c["options"][r["choice"]] if names else "已投"
        who = r["proxy_name"] or r["voter_name"] or ""
        when = datetime.fromtimestamp(r["at"], ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if r["at"] else ""
        channel = {"wecom": "（企业微信）", "oa": "（公众号）"}.get(r["channel"] or "", "")
        out.append([r["compound"] or "", r["building"], r["label"], vote, how_zh[how] + channel, who, when])
    return out


async def export(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    c, rows = _visible(app, user, int(request.match_info["id"]))
    fmt = request.match_info["fmt"]
    body = exports.table_bytes(export_rows(app, c, rows, names=shows_choices(user, c)), fmt, "议事")
    return exports.download(body, fmt, f"consultation-{c['id']}.{fmt}")


# -- the residents' vote page -------------------------------------------------------------------------------
def masked(name: str) -> str:
    """A name as the public vote page shows it: 张*三, 李*, 欧**锋 (first and last character kept)."""
    name = (name or "").strip()
    if len(name) <= 1:
        return name or "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


async def vote_page(request: web.Request) -> web.Response:
    app = app_of(request)
    parsed = consult.read_vote_token(app, request.match_info["token"])
    c = voter = None
    if parsed is not None:
        try:
            c = consult.get(app, parsed[0])
        except ConsultError:
            c = None
        voter = consult.household(app, parsed[1]) if c else None
    if c is None or voter is None or not consult.is_voter(app, c["id"], voter["id"]):
        return page("vote.html", status=404, state="invalid")
    common = dict(c=c, household=voter["label"], closes=consult.at_parts(app, c["closes_at"]))
    if not consult.is_open(app, c):
        return page("vote.html", status=410, state="closed", result=c["result"], **common)
    owners = None
    if c["electorate"] == "owners":  # the link is the household's: say which owner is voting
        owners = [{"id": r["id"], "name": masked(r["name"])} for r in consult.owners(app, voter["id"])]
        if not owners:
            return page("vote.html", status=403, state="refused", result=None,
                        message=ConsultError("no_owner_left", id=c["id"]).text(), **common)
    out = None
    if request.method == "POST":
        posted = await request.post()
        choice, rid = str(posted.get("choice", "")), str(posted.get("resident", ""))
        if not (choice.isascii() and choice.isdigit()) or (rid and not (rid.isascii() and rid.isdigit())):
            return page("vote.html", status=400, state="invalid")
        try:
            out = consult.link_vote(app, c["id"], voter["id"], int(choice), resident_id=int(rid) if rid else None)
        except ConsultError as e:
            status = 410 if e.code == "closed" else 400
            return page("vote.html", status=status, state="closed" if e.code == "closed" else "refused",
                        message=e.text(), result=None, **common)
    ballot = consult.current_ballot(app, c["id"], voter["id"])
    current = ballot["choice"] if ballot else None
    picked = ballot["resident_id"] if ballot else None
    if owners is not None and len(owners) == 1:
        picked = owners[0]["id"]
    voted_by = next((o["name"] for o in owners or [] if ballot and o["id"] == ballot["resident_id"]), "")
    return page("vote.html", state="ask", current=current, out=out, error="", owners=owners, picked=picked,
                voted_by=voted_by, **common)
