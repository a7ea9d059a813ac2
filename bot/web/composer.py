"""The alert composer: type (a warning signal, or 通知 — a notice with no colour), colour, drill
(演练) or real, everyone or vulnerable households only (all of them, or chosen categories from the
register), scope picked from the tree, text prefilled from the template. A preview shows the
message exactly as residents will get it, what was chosen in words ("第一网格", not every
building under it) and how many households it reaches; only the confirm step issues, through the
same alerts.issue the chat uses. Staff only; the staff of one community in a multi-community
register pick and issue within their community.
"""
from __future__ import annotations

import re

from aiohttp import web

from bot.data import dashboard as queries
from bot.data import org
from bot.domain import alerts, signals
from bot.domain.alerts import AlertError, Draft
from bot.web import auth
from bot.web.render import app_of, labels, natural_key, render

# a marker no template text contains: where it lands in the rendering is where `text` goes
_MARK = "\x00LINLI-TEXT\x00"
ALL_VULNERABLE = "*"
_CATEGORY_SPLIT = re.compile(r"[、,，;；/\s]+")


def default_text(store, type_: str, colour: str) -> str:
    """The sentence the template uses when staff leave the text alone (from alerts/body.j2, so
    the form and the message cannot disagree)."""
    kind = "notice" if type_ == alerts.NOTICE else "warning"
    base = {"type": type_, "colour": colour, "action": "issue", "poll": False, "supersedes_id": None,
            "kind": kind}
    plain = alerts.render(store, {**base, "text": ""}, "alerts/body.j2")
    marked = alerts.render(store, {**base, "text": _MARK}, "alerts/body.j2")
    start = marked.index(_MARK)
    tail = len(marked) - start - len(_MARK)
    return plain[start:len(plain) - tail]


def scope_tree(store, scope=None) -> list[dict]:
    """Every node in natural path order with its depth and active households (for the scope
    picker); with a viewer's scope, only the nodes over their buildings."""
    counts = queries.household_counts(store)
    by_id = {n["id"]: {**{k: n[k] for k in ("id", "kind", "name", "parent_id", "path")},
                       "households": 0, "depth": n["path"].count("/"), "mine": scope is None}
             for n in org.nodes(store)}
    for bid, n in counts.items():
        node = by_id.get(bid)
        while node is not None:
            node["households"] += n
            node = by_id.get(node["parent_id"])
    if scope is not None:
        for bid in scope:
            node = by_id.get(bid)
            while node is not None:
                node["mine"] = True
                node = by_id.get(node["parent_id"])
    rows = [n for n in by_id.values() if n["mine"]]
    return sorted(rows, key=lambda n: natural_key(n["path"]))


def categories(store) -> list[str]:
    """The vulnerable categories the register uses, each once ("独居老人", "残疾" …)."""
    seen: dict[str, None] = {}
    for label in queries.vulnerable_labels(store):
        for c in _CATEGORY_SPLIT.split(label):
            if c:
                seen.setdefault(c, None)
    return sorted(seen, key=natural_key)


def scope_names(store, node_ids: list[int]) -> list[str]:
    """What the staff chose, in words: a grid or compound ticked with everything under it is its
    own name, not the list of its buildings; a building keeps its compound ("大龙一区 3栋")."""
    chosen = [n for n in (org.node(store, i) for i in node_ids) if n is not None]
    paths = {n["path"] for n in chosen}

    def covered(path: str) -> bool:  # an ancestor is also chosen
        parts = path.split("/")
        return any("/".join(parts[:k]) in paths for k in range(1, len(parts)))
    top = [n for n in chosen if not covered(n["path"])]
    out = []
    for n in sorted(top, key=lambda n: natural_key(n["path"])):
        if n["kind"] == "building" and n["parent_id"]:
            parent = org.node(store, n["parent_id"])
            out.append(f"{parent['name']} {n['name']}" if parent else n["name"])
        else:
            out.append(n["name"])
    return out


def _draft_from(posted, user) -> tuple[Draft, list[int]]:
    scope = sorted({int(v) for v in posted.getall("scope", []) if str(v).isascii() and str(v).isdigit()})
    type_ = str(posted.get("type", ""))
    colour = str(posted.get("colour", ""))
    if type_ == alerts.NOTICE:
        colour = "blue"  # a notice has no colour: stored for the column, never shown
    audience = None
    if posted.get("audience") == "vulnerable":
        cats = [str(c) for c in posted.getall("category", []) if str(c).strip()]
        audience = [ALL_VULNERABLE] if not cats or ALL_VULNERABLE in cats else sorted(set(cats))
    return Draft(type=type_, colour=colour, text=str(posted.get("text", "")).strip(), scope=scope,
                 issuer_id=user.person["id"], status="exercise" if posted.get("drill") else "actual",
                 audience=audience), scope


async def form(request: web.Request, *, draft: Draft | None = None, error: str = "",
               status: int = 200) -> web.Response:
    app = app_of(request)
    user = await auth.require(request, app, staff=True)
    draft = draft or Draft(type=alerts.TYPES[0], colour="yellow")
    text = draft.text or default_text(app.store, draft.type, draft.colour)
    return render(request, user, "compose.html", status=status, types=alerts.TYPES, notice=alerts.NOTICE,
                  type_colours={t: " ".join(signals.colours_of(t)) for t in alerts.TYPES},
                  colours=alerts.COLOURS, tree=scope_tree(app.store, user.scope), draft=draft, text=text,
                  checked=set(draft.scope), error=error, categories=categories(app.store),
                  chosen_categories=set(draft.audience or []))


async def template_text(request: web.Request) -> web.Response:
    app = app_of(request)
    await auth.require(request, app, staff=True)
    type_, colour = request.query.get("type", ""), request.query.get("colour", "")
    if type_ == alerts.NOTICE and colour not in alerts.COLOURS:
        colour = "blue"  # a notice is asked for without a colour
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
    if draft.type not in alerts.TYPES:
        return await form(request, draft=draft, error="unknown_type", status=400)
    if draft.colour not in alerts.COLOURS:
        return await form(request, draft=draft, error="unknown_colour", status=400)
    if not scope:
        return await form(request, draft=draft, error="empty_scope", status=400)
    if user.scope is not None and not set(alerts.scope_buildings(app.store, scope)) <= user.scope:
        raise web.HTTPForbidden(text="outside_area")  # another community's nodes, typed in by hand
    if draft.text == default_text(app.store, draft.type, draft.colour):
        draft.text = ""  # unchanged: keep the template's words (and any later fix to them)
    if posted.get("step") == "edit":
        return await form(request, draft=draft)
    try:
        alerts.check_colour(draft.type, draft.colour)
    except AlertError as e:
        return await form(request, draft=draft, error=e.code, status=400)
    shown = alerts.preview(app.store, draft, app.settings)
    if draft.audience and not shown["households"]:
        return await form(request, draft=draft, error="no_vulnerable", status=400)
    if posted.get("step") != "confirm":
        return render(request, user, "preview.html", draft=draft, scope=scope,
                      names=scope_names(app.store, scope), buildings=shown["buildings"],
                      households=shown["households"], message=shown["text"],
                      notice=draft.type == alerts.NOTICE)
    try:
        alert_id = alerts.issue(app, draft)
    except AlertError as e:
        return await form(request, draft=draft, error=e.code, status=400)
    raise web.HTTPSeeOther(f"/alerts/{alert_id}")
