"""What the alert page shows, limited to what the viewer may see.

Built from the domain's own numbers (bot.domain.acks.coverage) and then cut to the viewer's buildings:
a building lead sees their building(s), a grid lead their grid, staff everything. Totals of a
cut tree are re-added from the buildings kept, so a lead never sees a neighbour's numbers
hidden inside a compound total. The same snapshot feeds the first page render and every
live (SSE) update, so the two cannot drift apart.
"""
from __future__ import annotations

import math

from aiohttp import web

from bot.core import texts
from bot.core.clock import hhmm
from bot.data import alerts as alert_rows
from bot.data import dashboard as queries
from bot.domain.coverage import coverage

UNACKED_SHOWN = 300  # the page lists this many; the delivery report has them all
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


def prune(nodes: list[dict], scope) -> list[dict]:
    """Copy of the coverage tree keeping only buildings in scope (None = all) and the nodes
    above them, with totals recomputed. `full` marks nodes entirely inside the scope."""
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


def first_acks(store, alert: dict, scope) -> list[float]:
    """Seconds from issue to each household's first ack, in order."""
    return [at - alert["created_at"] for at in queries.first_ack_times(store, alert["id"], scope)]


def full_node_ids(tree: list[dict]) -> set[int]:
    """Ids of the nodes of a pruned tree that lie entirely inside the viewer's area."""
    out = set()
    for n in tree:
        if n["full"]:
            out.add(n["id"])
        out |= full_node_ids(n["children"])
    return out


def visible_hops(hops: list[dict], tree: list[dict], scope) -> list[dict]:
    """The hops a viewer may see: all for staff; for a lead only the hops of nodes wholly in
    their area (a grid's hop reaches buildings the building lead does not lead). The page and
    the JSON API both use this, so they cannot disagree."""
    if scope is None:
        return hops
    full = full_node_ids(tree)
    return [h for h in hops if h["node_id"] in full]


def curve_svg(firsts: list[float], total: int, elapsed: float, width: int = 640,
              height: int = 200) -> dict:
    """Coordinates for the time-to-coverage step chart (drawn by the template as inline SVG).
    The line stops at `elapsed` (seconds since issue): the chart must not draw the future."""
    left, bottom, top, right = 40, height - 24, 10, width - 10
    end = max([max(0.0, elapsed)] + firsts)
    span = max(600.0, end)
    step = next(s for s in (60, 120, 300, 600, 900, 1800, 3600, 7200, 21600) if span / s <= 8)
    span = math.ceil(span / step) * step
    def x(t): return round(left + (right - left) * t / span, 1)
    def y(p): return round(bottom - (bottom - top) * p / 100.0, 1)
    pts, pct = [(x(0), y(0))], 0.0
    for i, t in enumerate(firsts):
        pts.append((x(t), y(pct)))
        pct = 100.0 * (i + 1) / total if total else 0.0
        pts.append((x(t), y(pct)))
    pts.append((x(end), y(pct)))
    return {"width": width, "height": height, "left": left, "right": right, "top": top,
            "bottom": bottom, "points": " ".join(f"{a},{b}" for a, b in pts),
            "xticks": [(x(t), t // 60) for t in range(0, int(span) + 1, step)],
            "yticks": [(y(p), p) for p in (0, 25, 50, 75, 100)]}


def _time_to(firsts: list[float], total: int) -> dict:
    out = {}
    for p in (50, 90, 100):
        need = math.ceil(p / 100 * total)
        out[p] = firsts[need - 1] if total and 0 < need <= len(firsts) else None
    return out


def snapshot(app, alert: dict, scope) -> dict:
    """Everything the live part of the alert page shows, as plain data."""
    store, tz = app.store, app.settings.timezone
    cov = coverage(store, alert["id"])
    tree = prune(cov["tree"], scope)
    total = sum(n["households"] for n in tree)
    acked = sum(n["acked"] for n in tree)
    firsts = first_acks(store, alert, scope)
    elapsed = min(app.clock.now(), alert["expires_at"]) - alert["created_at"]

    def walk(nodes):
        for n in nodes:
            n["shade"] = shade(n["pct"])
            walk(n["children"])
    walk(tree)
    hops = [dict(h, done=hhmm(h["done_at"], tz), deadline=hhmm(h["deadline_at"], tz),
                 created=hhmm(h["created_at"], tz))
            for h in visible_hops(queries.hops(store, alert["id"]), tree, scope)]
    unacked = queries.unacked(store, alert["id"], scope)
    followups = [dict(f, created=hhmm(f["created_at"], tz), closed=hhmm(f["closed_at"], tz))
                 for f in queries.followups(store, alert["id"], scope)]
    return {"alert_id": alert["id"], "households": total, "acked": acked,
            "reached": sum(n["reached"] for n in tree),
            "pct": round(100.0 * acked / total, 1) if total else 0.0,
            "time_to": _time_to(firsts, total), "tree": tree, "hops": hops,
            "unacked": _by_building(unacked[:UNACKED_SHOWN]), "unacked_total": len(unacked),
            "unacked_shown": min(len(unacked), UNACKED_SHOWN),
            "followups": followups, "curve": curve_svg(firsts, total, elapsed)}


def _by_building(rows: list[dict]) -> list[dict]:
    groups: dict[int, dict] = {}
    for r in rows:
        groups.setdefault(r["building_id"], {"building": r["building"], "households": []})[
            "households"].append(r)
    return list(groups.values())


def fingerprint(store, alert_id: int) -> tuple:
    """Cheap summary that changes whenever anything on the alert page would."""
    return queries.fingerprint(store, alert_id)


def live_html(snap: dict) -> dict:
    """The page's live sections rendered by the same macros the page itself uses."""
    live = texts.env().get_template("web/_alert_live.html").module
    return {name: str(getattr(live, name)(snap)).strip()
            for name in ("totals", "tree", "curve", "hops", "unacked", "followups")}
