"""The alert composer: type, colour, scope picked from the tree, text prefilled from the
template; a preview shows the message exactly as residents will get it and how many households
it reaches; only the confirm step issues. Staff only.
"""
from __future__ import annotations

from aiohttp import web

from bot.data import dashboard as queries
from bot.data import org
from bot.domain import alerts
from bot.domain.alerts import AlertError, Draft
from bot.web import auth
from bot.web.render import app_of, labels, render

# a marker no template text contains: where it lands in the rendering is where `text` goes
_MARK = "\x00LINLI-TEXT\x00"


def default_text(store, type_: str, colour: str) -> str:
    """The sentence the template uses when staff leave the text alone (from alerts/body.j2, so
    the form and the message cannot disagree)."""
    base = {"type": type_, "colour": colour, "action": "issue", "poll": False, "supersedes_id": None}
    plain = alerts.render(store, {**base, "text": ""}, "alerts/body.j2")
    marked = alerts.render(store, {**base, "text": _MARK}, "alerts/body.j2")
    start = marked.index(_MARK)
    tail = len(marked) - start - len(_MARK)
    return plain[start:len(plain) - tail]


def scope_tree(store) -> list[dict]:
    """Every node in path order with its depth and active households (for the scope picker)."""
    nodes = sorted(org.nodes(store), key=lambda n: n["path"])
    counts = queries.household_counts(store)
    by_id = {n["id"]: {**{k: n[k] for k in ("id", "kind", "name", "parent_id", "path")},
                       "households": 0, "depth": n["path"].count("/")} for n in nodes}
    for bid, n in counts.items():
        node = by_id.get(bid)
        while node is not None:
            node["households"] += n
            node = by_id.get(node["parent_id"])
    return [by_id[n["id"]] for n in nodes]


def _draft_from(posted, user) -> tuple[Draft, list[int]]:
    scope = sorted({int(v) for v in posted.getall("scope", []) if str(v).isdigit()})
    return Draft(type=str(posted.get("type", "")), colour=str(posted.get("colour", "")),
                 text=str(posted.get("text", "")).strip(), scope=scope,
                 issuer_id=user.person["id"]), scope


async def form(request: web.Request, *, draft: Draft | None = None, error: str = "",
                   status: int = 200) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    draft = draft or Draft(type=alerts.TYPES[0], colour="yellow")
    text = draft.text or default_text(app.store, draft.type, draft.colour)
    return render(request, user, "compose.html", status=status, types=alerts.TYPES,
                  colours=alerts.COLOURS, tree=scope_tree(app.store), draft=draft, text=text,
                  checked=set(draft.scope), error=error)


async def template_text(request: web.Request) -> web.Response:
    app = app_of(request)
    await auth.require(request, app, staff=True)
    type_, colour = request.query.get("type", ""), request.query.get("colour", "")
    if type_ not in alerts.TYPES or colour not in alerts.COLOURS:
        # compose.js fetches this: answer in JSON like the API does
        code = "unknown_type" if type_ not in alerts.TYPES else "unknown_colour"
        return web.json_response({"error": code, "message": labels().ERRORS[code]}, status=400)
    return web.json_response({"text": default_text(app.store, type_, colour)})


async def submit(request: web.Request) -> web.Response:
    """step=preview shows the message and the reach; step=confirm issues it."""
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    posted = await request.post()
    draft, scope = _draft_from(posted, user)
    if draft.type not in alerts.TYPES or draft.colour not in alerts.COLOURS:
        return await form(request, draft=draft, error="unknown_type", status=400)
    if not scope:
        return await form(request, draft=draft, error="empty_scope", status=400)
    if draft.text == default_text(app.store, draft.type, draft.colour):
        draft.text = ""  # unchanged: keep the template's words (and any later fix to them)
    if posted.get("step") == "edit":
        return await form(request, draft=draft)
    if posted.get("step") != "confirm":
        shown = alerts.preview(app.store, draft)
        names = sorted(n["path"] for n in (org.node(app.store, i) for i in scope) if n is not None)
        return render(request, user, "preview.html", draft=draft, scope=scope, names=names,
                      buildings=shown["buildings"], households=shown["households"], message=shown["text"])
    try:
        alert_id = alerts.issue(app, draft)
    except AlertError as e:
        return await form(request, draft=draft, error=e.code, status=400)
    raise web.HTTPSeeOther(f"/alerts/{alert_id}")


