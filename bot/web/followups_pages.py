"""The follow-up board (一对一上门): every task of the vulnerable residents the viewer may see,
grouped by social worker — open, overdue, done — with name, room, phone and the visit's outcome;
a visit is recorded from the page, and the board downloads as CSV/XLSX for the street office.

What a viewer sees is bot.domain.followups.board's cut (bot.domain.areas: a lead their area, staff
of one community theirs); a visit goes through followups.record_visit, the same act as the chat's
"已上门 3栋502 平安", so it closes the task, counts as the household's answer and (for 需要帮助)
opens the urgent request. No SQL here.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from bot.data import followups as followups_db
from bot.domain import followups
from bot.web import auth, exports
from bot.web.render import app_of, labels, natural_key, render

STATES = ("open", "overdue", "done")
NOTE_MAX = 500


def add_routes(wa: web.Application) -> None:
    wa.router.add_get("/followups", board_page)
    wa.router.add_get(r"/followups.{fmt:csv|xlsx}", board_export)
    wa.router.add_post(r"/followups/{id:\d+}/visit", visit_post)


def _id_filter(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise web.HTTPBadRequest(text="bad_request")
    return int(value)


def _alert_filter(request: web.Request) -> int | None:
    return _id_filter(request, "alert")


def tasks_for(app, user, alert_id: int | None) -> list[dict]:
    """The board's rows for this viewer, sorted for people: by worker, then state (overdue
    first), then building and room in natural order."""
    order = {"overdue": 0, "open": 1, "done": 2}
    rows = followups.board(app, user.person, alert_id)
    return sorted(rows, key=lambda r: (natural_key(r["worker"] or "\uffff"), order[r["board_state"]],
                                       natural_key(r["room"])))


def by_worker(rows: list[dict]) -> list[dict]:
    """[{worker, tasks, counts}] in the rows' order."""
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(r["worker"] or "", {"worker": r["worker"], "tasks": [],
                                                 "counts": dict.fromkeys(STATES, 0)})
        g["tasks"].append(r)
        g["counts"][r["board_state"]] += 1
    return list(groups.values())


async def board_page(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    alert_id = _alert_filter(request)
    state = request.query.get("state", "")
    worker_id = _id_filter(request, "worker")
    every = tasks_for(app, user, alert_id)
    workers = {r["worker_id"]: r["worker"] for r in every if r["worker_id"] is not None}
    rows = [r for r in every if r["worker_id"] == worker_id] if worker_id is not None else every
    totals = {s: sum(r["board_state"] == s for r in rows) for s in STATES}
    shown = [r for r in rows if r["board_state"] == state] if state in STATES else rows
    alerts_seen = sorted({r["alert_id"] for r in every}, reverse=True)
    return render(request, user, "followups.html", groups=by_worker(shown), totals=totals,
                  state=state if state in STATES else "", alert_id=alert_id, alerts_seen=alerts_seen,
                  worker_id=worker_id, workers=sorted(workers.items(), key=lambda kv: natural_key(kv[1])),
                  filters=board_query(alert_id, worker_id), outcomes=followups.OUTCOMES,
                  saved=request.query.get("saved", ""))


def board_query(alert_id: int | None, worker_id: int | None) -> str:
    """The board's own filters as a query string (links keep them)."""
    return urlencode([(k, v) for k, v in (("alert", alert_id), ("worker", worker_id)) if v is not None])


async def board_export(request: web.Request) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app)
    alert_id = _alert_filter(request)
    fmt = request.match_info["fmt"]
    body = exports.table_bytes(exports.followup_rows(app, tasks_for(app, user, alert_id)), fmt,
                               labels().FOLLOWUP_SHEET)
    name = f"followups-{alert_id}.{fmt}" if alert_id else f"followups.{fmt}"
    return exports.download(body, fmt, name)


async def visit_post(request: web.Request) -> web.Response:
    """Record a visit's outcome. 404 for a task the viewer may not see (no telling which exist),
    409 for one already done, 400 for an outcome that is not one of OUTCOMES."""
    app = app_of(request)
    user = await auth.require(request, app)
    form = await request.post()
    fid = int(request.match_info["id"])
    task = followups_db.get(app.store, fid)
    if task is None or (user.scope is not None and task["building_id"] not in user.scope):
        raise web.HTTPNotFound(text="no_followup")
    if task["state"] == "closed":
        raise web.HTTPConflict(text="followup_closed")
    outcome = str(form.get("outcome", ""))
    if outcome not in followups.OUTCOMES:
        raise web.HTTPBadRequest(text="bad_outcome")
    note = str(form.get("note", "")).strip()[:NOTE_MAX]
    followups.record_visit(app, task, user.person, outcome, note, raw=note or followups.OUTCOMES[outcome],
                           request_key=f"web-visit:{fid}:{user.id}:{int(app.clock.now())}")
    raise web.HTTPSeeOther(back_to(str(form.get("back", "")), fid))


def back_to(back: str, fid: int) -> str:
    """The board the form was on (its own filters only: alert, worker, state), marked with what was saved."""
    query = [(k, v) for k, v in parse_qsl(urlsplit(back).query) if k in ("alert", "worker", "state")
             and v.isascii() and v.isalnum()]
    return "/followups?" + urlencode(query + [("saved", str(fid))]) + f"#task-{fid}"
