"""流动小红旗 on the dashboard: a month's ranking (rank, building with grid and compound, total, each
part's points, the cross-evaluation average), the 互评 form for compound leads and staff, staff's
发布 button, and the ranking as CSV/XLSX.

A viewer sees the rows of their area (bot.domain.areas, as everywhere): the ranks stay the
community's. Every act is a bot.domain.scores function (enter_peer_scores, publish); no SQL here.
"""
from __future__ import annotations

from aiohttp import web

from bot.core import texts
from bot.domain import scores
from bot.domain.scores import PARTS, ScoreError
from bot.web import auth, exports
from bot.web.render import app_of, render

MAX_FIELD = 40


def add_routes(wa: web.Application) -> None:
    wa.router.add_get("/scores", scores_page)
    wa.router.add_get(r"/scores.{fmt:csv|xlsx}", scores_export)
    wa.router.add_post("/scores/peer", peer_post)
    wa.router.add_post("/scores/publish", publish_post)


def _labels():
    return texts.env().get_template("messages/scores/_labels.j2").module


def _month(app, value: str | None) -> str:
    if not value:
        return scores.current_month(app.clock.now(), app.settings.timezone)
    try:
        return scores.check_month(value)
    except ScoreError:
        raise web.HTTPBadRequest(text="bad_month") from None


def _within(user):
    return None if user.scope is None else user.scope


async def _show(request: web.Request, app, user, month: str, *, status: int = 200, error: str = "",
                saved: str = "") -> web.Response:
    board = scores.month_scores(app, month, within=_within(user))
    choices = scores.peer_choices(app.store, user.person) if not board.published else []
    current = scores.current_month(app.clock.now(), app.settings.timezone)
    resp = render(request, user, "scores.html", board=board, month=month, month_zh=scores.month_zh(month),
                  prev=scores.shift(month, -1), next=scores.shift(month, 1) if month < current else "",
                  parts=[p for p in PARTS if p in board.weights], choices=choices,
                  may_publish=user.is_staff and not board.published and month <= current and not board.empty,
                  top_n=app.settings.scores.top_n, error=error, saved=saved)
    resp.set_status(status)
    return resp


async def scores_page(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    month = _month(app, request.query.get("month"))
    saved = request.query.get("saved", "")
    return await _show(request, app, user, month, saved=saved if saved in ("peer", "published") else "")


def _error_text(e: ScoreError) -> str:
    return texts.render("messages/scores/error.j2", code=e.code, **e.params)


async def peer_post(request: web.Request) -> web.Response:
    """A 互评 from the form: the building (id) and 0..10 for any of 安全 / 卫生 / 文明 (blank: not
    given). A refusal (own compound, published month …) shows the page again with the reason."""
    app = app_of(request)
    user = await auth.require(request, app)
    form = await request.post()
    month = _month(app, str(form.get("month", ""))[:MAX_FIELD])
    building = str(form.get("building", ""))[:MAX_FIELD]
    given = {c: str(form.get(c, "")).strip()[:MAX_FIELD] for c in scores.CATEGORIES}
    try:
        if not (building.isascii() and building.isdigit()):
            raise ScoreError("no_building")
        scores.enter_peer_scores(app, user.person, int(building), month, {c: v for c, v in given.items() if v})
    except ScoreError as e:
        status = 403 if e.code in ("not_allowed", "own_compound") else 409 if e.code == "month_published" else 400
        return await _show(request, app, user, month, status=status, error=_error_text(e))
    raise web.HTTPSeeOther(f"/scores?month={month}&saved=peer#peer")


async def publish_post(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    form = await request.post()
    month = _month(app, str(form.get("month", ""))[:MAX_FIELD])
    try:
        scores.publish(app, user.person, month)
    except ScoreError as e:
        return await _show(request, app, user, month, status=409 if e.code == "already_published" else 400,
                           error=_error_text(e))
    raise web.HTTPSeeOther(f"/scores?month={month}&saved=published")


async def scores_export(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    month = _month(app, request.query.get("month"))
    fmt = request.match_info["fmt"]
    board = scores.month_scores(app, month, within=_within(user))
    body = exports.table_bytes(scores.table_rows(board, app.settings), fmt, _labels().SHEET)
    return exports.download(body, fmt, f"scores-{month}.{fmt}")
