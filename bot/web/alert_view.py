"""What the alert page shows, limited to what the viewer may see, and bounded in size.

Built from the domain's own numbers (bot.domain.coverage) and then cut to the viewer's buildings:
a building lead sees their building(s), a grid lead their grid, staff everything. Totals of a
cut tree are re-added from the buildings kept, so a lead never sees a neighbour's numbers
hidden inside a compound total.

Bounded (issue #15): at 100k households the page used to carry every first ack as two curve
points, every building, hop and follow-up and fetch every un-acked household. Now the curve has at
most 2 × CURVE_BUCKETS + 2 points (first acks counted per time bucket in SQL), and each long list
shows one page with a "more" link (`/alerts/ID/more/<section>?offset=N`, an HTML fragment rendered
by the same macros). Live updates are small diffs computed once per (alert, viewer scope) by a
shared feed (bot/web/sse.LiveHub), off the event loop: see `live_state` and `diff`.
"""
from __future__ import annotations

import json
import math
import weakref

from aiohttp import web

from bot.core import texts
from bot.core.clock import hhmm
from bot.data import alerts as alert_rows
from bot.data import dashboard as queries
from bot.data.store import Store
from bot.domain.coverage import coverage
from bot.web import auth
from bot.web.render import APP_KEY, HEADERS, app_of
from bot.web.sse import LiveHub

UNACKED_PAGE = 100     # un-acked households per page (the delivery report has them all)
HOPS_PAGE = 50         # hops per page, unfinished first
FOLLOWUPS_PAGE = 50    # follow-ups per page, open first
BUILDINGS_INLINE = 60  # a view with at most this many buildings lists them all
BUILDINGS_PAGE = 12    # else each compound lists this many, then "more"
MORE_PAGE = 100        # rows a "more" request returns (buildings, hops, follow-ups)
CURVE_BUCKETS = 150    # time buckets of the curve: at most 2 per bucket + 2 points
MAX_IDS = 500          # a live update names at most this many households; more: the list is re-sent
SECTIONS = ("totals", "tree", "curve", "hops", "unacked", "followups")
_SUMS = ("households", "reached", "acked", "help")


def load_alert(store, alert_id: int, scope) -> dict:
    """The alert row, if it exists and touches the viewer's area (404 / 403 otherwise)."""
    alert = alert_rows.get(store, alert_id)
    if alert is None:
        raise web.HTTPNotFound(text="no_alert")
    if not visible(store, alert_id, scope):
        raise web.HTTPForbidden(text="outside_area")
    return alert


def visible(store, alert_id: int, scope) -> bool:
    """Whether the alert touches the viewer's area (staff: always)."""
    return scope is None or bool(set(scope) & set(alert_rows.scope_buildings(store, alert_id)))


def ended(alert: dict, now: float) -> bool:
    """A warning no longer live: lifted, superseded, expired, or past its expiry time (the expiry
    job may not have marked it yet). Its page shows 已结束 and opens no live stream."""
    return alert["state"] != "active" or now >= alert["expires_at"]


def prune(nodes: list[dict], scope) -> list[dict]:
    """Copy of the coverage tree keeping only buildings in scope (None = all) and the nodes
    above them, with totals recomputed. `full` marks nodes entirely inside the scope.
    For staff (None) the tree is the caller's own fresh one: marked in place, not copied."""
    if scope is None:
        stack = list(nodes)
        while stack:
            n = stack.pop()
            n["full"] = True
            stack.extend(n["children"])
        return nodes
    out = []
    for n in nodes:
        if n["kind"] == "building":
            if scope is None or n["id"] in scope:
                out.append(dict(n, children=[], full=True))
            continue
        kids = prune(n["children"], scope)
        if not kids:
            continue
        node = dict(n, children=kids, full=len(kids) == len(n["children"]) and all(k["full"] for k in kids))
        for k in _SUMS:
            node[k] = sum(c[k] for c in kids)
        node["pct"] = round(100.0 * node["acked"] / node["households"], 1) if node["households"] else 0.0
        out.append(node)
    return out


def shade(pct: float) -> int:
    """Colour step 0..10 for a coverage percentage (CSS classes cov0..cov10, red to green)."""
    return max(0, min(10, int(pct // 10)))


def walk(nodes: list[dict]) -> list[dict]:
    """Every node of a tree, parents before children (iterative: 100k households have ~3,500
    buildings and a recursive generator costs a frame per level per node)."""
    out, stack = [], list(reversed(nodes))
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(n["children"]))
    return out


def full_node_ids(tree: list[dict]) -> set[int]:
    """Ids of the nodes of a pruned tree that lie entirely inside the viewer's area."""
    return {n["id"] for n in walk(tree) if n["full"]}


def visible_hops(hops: list[dict], tree: list[dict], scope) -> list[dict]:
    """The hops a viewer may see: all for staff; for a lead only the hops of nodes wholly in
    their area (a grid's hop reaches buildings the building lead does not lead). The page and
    the JSON API both use this, so they cannot disagree."""
    if scope is None:
        return hops
    full = full_node_ids(tree)
    return [h for h in hops if h["node_id"] in full]


def hop_nodes(tree: list[dict], scope) -> set[int] | None:
    """The node ids whose hops the viewer may see (None: all), the rule of `visible_hops`."""
    return None if scope is None else full_node_ids(tree)


def bound_tree(tree: list[dict]) -> None:
    """Cut long building lists in place: when the view has more than BUILDINGS_INLINE buildings,
    a node lists its first BUILDINGS_PAGE buildings and says how many more there are."""
    nodes = walk(tree)
    for n in nodes:
        n["more"] = 0
    if sum(1 for n in nodes if n["kind"] == "building") <= BUILDINGS_INLINE:
        return
    for n in nodes:
        kids = n["children"]
        if len(kids) > BUILDINGS_PAGE and all(k["kind"] == "building" for k in kids):
            n["more"] = len(kids) - BUILDINGS_PAGE
            n["children"] = kids[:BUILDINGS_PAGE]


# -- the curve ---------------------------------------------------------------------------------------
def curve_frame(end: float, width: int = 640, height: int = 200) -> dict:
    """Axes of the time-to-coverage chart for `end` seconds since issue (at least 10 minutes)."""
    left, bottom, top, right = 40, height - 24, 10, width - 10
    span = max(600.0, end)
    step = next((s for s in (60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
                 if span / s <= 8), math.ceil(span / 8))
    span = math.ceil(span / step) * step
    return {"width": width, "height": height, "left": left, "right": right, "top": top,
            "bottom": bottom, "span": span, "step": step}


def curve_svg(buckets: list[tuple], total: int, start: float, end: float, *, width: int = 640,
              height: int = 200) -> dict:
    """Coordinates for the time-to-coverage step chart (drawn by the template as inline SVG).

    `buckets`: (bucket, count, first at, last at) of first acks per time bucket, in time order
    (bot.data.dashboard.first_ack_buckets). Each bucket gives at most two points — the flat line up
    to its first ack, and its last ack at the new level — so a storm of 100k acks is drawn with a
    few hundred points and the same shape at screen resolution. The line starts at (0, 0%) and
    stops at `end` (seconds since issue): the chart never draws the future."""
    f = curve_frame(end, width, height)
    left, right, top, bottom, span = f["left"], f["right"], f["top"], f["bottom"], f["span"]

    def x(t): return round(left + (right - left) * max(0.0, t) / span, 1)
    def y(n): return round(bottom - (bottom - top) * (n / total if total else 0.0), 1)
    pts, done = [(x(0), y(0))], 0
    for _b, count, first, last in buckets:
        flat = (x(first - start), y(done))
        if flat != pts[-1]:
            pts.append(flat)
        done += count
        pts.append((x(last - start), y(done)))
    if (x(end), y(done)) != pts[-1]:
        pts.append((x(end), y(done)))
    return dict(f, points=" ".join(f"{a:g},{b:g}" for a, b in pts), count=len(pts),
                xticks=[(x(t), int(t // 60)) for t in range(0, int(span) + 1, f["step"])],
                yticks=[(y(total * p / 100), p) for p in (0, 25, 50, 75, 100)] if total else
                [(round(bottom - (bottom - top) * p / 100, 1), p) for p in (0, 25, 50, 75, 100)])


def curve(store, alert: dict, scope, total: int, now: float) -> dict:
    """The viewer's curve: first acks counted in SQL in CURVE_BUCKETS buckets over the chart."""
    last = queries.last_first_ack(store, alert["id"], scope)
    end = max(0.0, min(now, alert["expires_at"]) - alert["created_at"],
              (last - alert["created_at"]) if last is not None else 0.0)
    span = curve_frame(end)["span"]
    buckets = [] if last is None else queries.first_ack_buckets(
        store, alert["id"], scope, alert["created_at"], span / CURVE_BUCKETS, CURVE_BUCKETS)
    return curve_svg(buckets, total, alert["created_at"], end)


def _time_to(store, alert: dict, scope, cov: dict, total: int, acked: int) -> dict:
    if scope is None:
        return cov["time_to"]
    out = {}
    for p in (50, 90, 100):
        need = math.ceil(p / 100 * total)
        at = queries.nth_first_ack(store, alert["id"], scope, need) if total and 0 < need <= acked else None
        out[p] = None if at is None else at - alert["created_at"]
    return out


# -- the page --------------------------------------------------------------------------------------
def figures(app, alert: dict, scope) -> dict:
    """The numbers at the top of the page and the tree: coverage cut to the viewer, time to
    50/90/100%, the curve. Cheap at 100k: counters and an aggregate, no per-household rows."""
    store = app.store
    cov = coverage(store, alert["id"])
    tree = prune(cov["tree"], scope)
    for n in walk(tree):
        n["shade"] = max(0, min(10, int(n["pct"] // 10)))  # shade(), inlined: once per building
    total = sum(n["households"] for n in tree)
    acked = sum(n["acked"] for n in tree)
    now = app.clock.now()
    return {"alert_id": alert["id"], "households": total, "acked": acked,
            "reached": sum(n["reached"] for n in tree),
            "pct": round(100.0 * acked / total, 1) if total else 0.0,
            "unacked_total": total - acked, "tree": tree,
            "time_to": _time_to(store, alert, scope, cov, total, acked),
            "curve": curve(store, alert, scope, total, now), "ended": ended(alert, now),
            "state": alert["state"]}


def snapshot(app, alert: dict, scope) -> dict:
    """Everything the page shows, as plain data: the figures and the first page of each list."""
    store, tz = app.store, app.settings.timezone
    snap = figures(app, alert, scope)
    nodes = hop_nodes(snap["tree"], scope)
    bound_tree(snap["tree"])
    hops = hop_rows(app, queries.hops_page(store, alert["id"], nodes, 0, HOPS_PAGE))
    unacked = queries.unacked_page(store, alert["id"], scope, 0, UNACKED_PAGE)
    fu_total, fu_open, _ = queries.followup_counts(store, alert["id"], scope)
    followups = followup_rows(tz, queries.followups_page(store, alert["id"], scope, 0, FOLLOWUPS_PAGE))
    hops_total = len(hops) if len(hops) < HOPS_PAGE else queries.hops_count(store, alert["id"], nodes)
    return dict(snap, hops=hops, hops_total=hops_total, unacked=by_building(unacked),
                unacked_shown=len(unacked), unacked_last=unacked[-1]["id"] if unacked else 0,
                unacked_more=len(unacked) == UNACKED_PAGE, followups=followups,
                followups_total=fu_total, followups_open=fu_open, version=_version(app, alert["id"], scope))


def _version(app, alert_id: int, scope) -> int:
    """The live feed's version this page matches (0: no feed runs; the stream starts afresh)."""
    hub = _HUBS.get(app) if not isinstance(app, _Reader) else None
    return hub.version_of((alert_id, scope_key(scope))) if hub else 0


def hop_rows(app, rows: list[dict]) -> list[dict]:
    tz = app.settings.timezone
    return [dict(h, done=hhmm(h["done_at"], tz), deadline=hhmm(h["deadline_at"], tz),
                 created=hhmm(h["created_at"], tz)) for h in rows]


def followup_rows(tz: str, rows: list[dict]) -> list[dict]:
    return [dict(f, created=hhmm(f["created_at"], tz), closed=hhmm(f["closed_at"], tz)) for f in rows]


def by_building(rows: list[dict]) -> list[dict]:
    groups: dict[int, dict] = {}
    for r in rows:
        groups.setdefault(r["building_id"], {"building": r["building"], "building_id": r["building_id"],
                                             "households": []})["households"].append(r)
    return list(groups.values())


def fingerprint(store, alert_id: int) -> tuple:
    """Cheap summary that changes whenever anything on the alert page would."""
    return queries.fingerprint(store, alert_id)


def live_fingerprint(app, alert_id: int) -> tuple:
    """What the live feed polls: the data's summary and the minute (the curve's time axis moves
    on, and a warning passes its expiry, without any row changing)."""
    return (*queries.live_fingerprint(app.store, alert_id), int(app.clock.now() // 60))


def _macros():
    return texts.env().get_template("web/_alert_live.html").module


def live_html(snap: dict) -> dict:
    """The page's live sections rendered by the same macros the page itself uses."""
    live = _macros()
    return {name: str(getattr(live, name)(snap)).strip() for name in SECTIONS}


# -- live updates: state and diffs -----------------------------------------------------------------
def scope_key(scope):
    return None if scope is None else tuple(sorted(scope))


def live_state(app, alert: dict, scope, prev: dict | None = None) -> dict:
    """What a live update compares: the figures' HTML, each node's counters, each visible hop's
    marks, the follow-ups' counts, and the households acked / reached since `prev` (by rowid).
    Plain data, so one computation serves every viewer with the same scope."""
    store = app.store
    fresh = alert_rows.get(store, alert["id"]) or alert
    marks = queries.live_marks(store) if prev is None else (prev["ack_rowid"], prev["dl_rowid"])
    snap = figures(app, fresh, scope)
    live = _macros()
    nodes = hop_nodes(snap["tree"], scope)
    new_acked = queries.first_acks_since(store, alert["id"], scope, marks[0], MAX_IDS + 1) if prev else []
    new_reached = queries.deliveries_since(store, alert["id"], scope, marks[1], MAX_IDS + 1) if prev else []
    return {
        "state": fresh["state"], "ended": snap["ended"], "acked": snap["acked"], "pct": snap["pct"],
        "households": snap["households"],
        "totals": str(live.totals(snap)).strip(), "curve": str(live.curve(snap)).strip(),
        "nodes": {n["id"]: [n["acked"], n["households"], n["reached"], n["help"], n["pct"], n["shade"]]
                  for n in walk(snap["tree"])},
        "hops": {h[0]: list(h[2:]) for h in queries.hop_marks(store, alert["id"]) if nodes is None or h[1] in nodes},
        "followups": list(queries.followup_counts(store, alert["id"], scope)),
        "ack_rowid": new_acked[-1][0] if new_acked else marks[0],
        "dl_rowid": new_reached[-1][0] if new_reached else marks[1],
        "new_acked": [r[1] for r in new_acked], "new_reached": [r[1] for r in new_reached],
    }


def diff(prev: dict, cur: dict, *, app=None, alert: dict | None = None, scope=None) -> dict | None:
    """The live update from `prev` to `cur`: only what changed (None: nothing did).

    Values are absolute (a node's counters, a row's HTML), so applying an update twice, or to a
    page rendered a little later than `prev`, gives the same page. With `app` and `alert` the
    changed hop rows are rendered; a list that changed too much to name row by row (more than
    MAX_IDS households, HOPS_PAGE hops) is re-sent as its first page instead."""
    out: dict = {}
    for k in ("state", "ended", "acked", "pct", "households"):
        if prev.get(k) != cur.get(k):
            out[k] = cur[k]
    html = {k: cur[k] for k in ("totals", "curve") if prev.get(k) != cur.get(k)}
    nodes = {str(i): v for i, v in cur["nodes"].items() if prev["nodes"].get(i) != v}
    if nodes:
        out["nodes"] = nodes
    hops = [i for i, v in cur["hops"].items() if prev["hops"].get(i) != v]
    relist = []
    if len(cur["new_acked"]) > MAX_IDS or len(cur["new_reached"]) > MAX_IDS:
        relist.append("unacked")
    else:
        if cur["new_acked"]:
            out["gone"] = cur["new_acked"]
        if cur["new_reached"]:
            out["reached"] = cur["new_reached"]
    if hops and (len(hops) > HOPS_PAGE or app is None):
        relist.append("hops")
    elif hops:
        live = _macros()
        out["hops"] = {str(h["id"]): str(live.hop_row(h)).strip()
                       for h in hop_rows(app, queries.hops_by_id(app.store, alert["id"], hops))}
    if prev["followups"] != cur["followups"]:
        relist.append("followups")
    if relist and app is not None:
        snap = snapshot(app, alert_rows.get(app.store, alert["id"]) or alert, scope)
        live = _macros()
        for name in relist:
            html[name] = str(getattr(live, name)(snap)).strip()
    elif relist:
        out["relist"] = relist
    if html:
        out["html"] = html
    return out or None


def encode(event: dict) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


# -- the shared feed ---------------------------------------------------------------------------------
_HUBS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hub_of(app) -> LiveHub:
    """The process's live hub for this App (one poller per watched (alert, scope), shared by all
    its viewers)."""
    hub = _HUBS.get(app)
    if hub is None:
        path = getattr(app.store, "path", ":memory:")
        # the feed reads through its own connection on its own thread, so building an update
        # never holds the event loop that answers callbacks; an in-memory store cannot be shared
        opener = None if path in ("", ":memory:") else (lambda: Store(path, migrate=False))
        hub = _HUBS[app] = LiveHub(open_reader=opener)
    return hub


class _Reader:
    """`app` as live_state needs it, reading through the hub's own connection (off the loop)."""

    def __init__(self, app, store):
        self.store, self.settings, self.clock = store, app.settings, app.clock


def _feed(app, alert: dict, scope):
    """The hub's callbacks for one (alert, scope): fingerprint, state, diff, first snapshot."""
    alert_id = alert["id"]

    def reader(store):
        return app if store is None else _Reader(app, store)

    def fp(store):
        return live_fingerprint(reader(store), alert_id)

    def state(store, prev):
        return live_state(reader(store), alert, scope, prev)

    def change(store, prev, cur):
        return diff(prev, cur, app=reader(store), alert=alert, scope=scope)

    def first(store):
        r = reader(store)
        fresh = alert_rows.get(r.store, alert_id) or alert
        snap = snapshot(r, fresh, scope)
        return {"state": snap["state"], "ended": snap["ended"], "acked": snap["acked"],
                "pct": snap["pct"], "households": snap["households"], "html": live_html(snap)}
    return fp, state, change, first


async def events(request: web.Request) -> web.StreamResponse:
    """GET /alerts/{id}/events: the live stream (text/event-stream). `?v=N`: the page was rendered
    at feed version N, so only the diffs after it are sent; else one `snapshot` first. An ended
    warning gets 204 (EventSource then stops reconnecting)."""
    app = app_of(request)
    user = await auth.require(request, app)
    alert = load_alert(app.store, int(request.match_info["id"]), user.scope)
    if ended(alert, app.clock.now()):
        return web.Response(status=204, headers={"Cache-Control": "no-store"})
    try:
        since = int(request.query.get("v", ""))
    except ValueError:
        since = None
    hub = hub_of(app)
    return await hub.serve(request, (alert["id"], scope_key(user.scope)), _feed(app, alert, user.scope),
                           since=since)


# -- "more": the next page of a long list ----------------------------------------------------------
def _offset(request: web.Request, name: str = "offset") -> int:
    raw = request.query.get(name, "0")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise web.HTTPBadRequest(text="bad_request")
    return int(raw)


async def more(request: web.Request) -> web.Response:
    """GET /alerts/{id}/more/{section}?offset=N (un-acked: ?after=household id; buildings:
    &node=ID): the next rows of a list as an HTML fragment, cut to the viewer's area like the page."""
    app = app_of(request)
    user = await auth.require(request, app)
    alert = load_alert(app.store, int(request.match_info["id"]), user.scope)
    section, store, scope = request.match_info["section"], app.store, user.scope
    live = _macros()
    if section == "unacked":
        after = _offset(request, "after")
        rows = queries.unacked_page(store, alert["id"], scope, after, UNACKED_PAGE)
        body = live.unacked_rows(by_building(rows), alert["id"], rows[-1]["id"] if rows else after,
                                 len(rows) == UNACKED_PAGE)
    elif section == "hops":
        offset = _offset(request)
        tree = prune(coverage(store, alert["id"])["tree"], scope) if scope is not None else []
        rows = hop_rows(app, queries.hops_page(store, alert["id"], hop_nodes(tree, scope), offset, MORE_PAGE))
        body = live.hop_more(rows, alert["id"], offset + len(rows), len(rows) == MORE_PAGE)
    elif section == "followups":
        offset = _offset(request)
        rows = followup_rows(app.settings.timezone, queries.followups_page(store, alert["id"], scope, offset, MORE_PAGE))
        body = live.followup_more(rows, alert["id"], offset + len(rows), len(rows) == MORE_PAGE)
    elif section == "buildings":
        offset, node_id = _offset(request), _offset(request, "node")
        snap = figures(app, alert, scope)
        parent = next((n for n in walk(snap["tree"]) if n["id"] == node_id), None)
        if parent is None:
            raise web.HTTPNotFound(text="not_found")
        kids = parent["children"][offset:offset + MORE_PAGE]
        end = offset + len(kids)
        body = live.building_more(kids, alert["id"], node_id, end, end < len(parent["children"]))
    else:
        raise web.HTTPNotFound(text="not_found")
    return web.Response(text=str(body).strip(), content_type="text/html", charset="utf-8", headers=HEADERS)


def add_routes(wa: web.Application, app=None) -> LiveHub:
    """Mount the alert page's live stream and "more" fragments (the dashboard mounts the page).
    Returns the hub (tests lower its poll_s); its streams end when the web app shuts down."""
    if app is not None and APP_KEY not in wa:
        wa[APP_KEY] = app
    wa.router.add_get(r"/alerts/{id:\d+}/events", events)
    wa.router.add_get(r"/alerts/{id:\d+}/more/{section:unacked|hops|followups|buildings}", more)
    hub = hub_of(wa[APP_KEY])
    wa.on_shutdown.append(hub.shutdown)
    return hub
