"""After-action reports (复盘) of warnings and drills, and the drill prediction.

`after_action(store, alert_id)` is what the office reads after every warning and every drill:
per grid, compound and building lead the time to 50/90/95/100% of households acknowledged; each
hop's forward delay; the leads who missed their deadline and were gone around; the households
never reached; the vulnerable residents not visited in time. `export` turns it into CSV or XLSX
bytes; `curves` gives the per-grid acknowledgement curve for the dashboard.

`history(store)` reads what past warnings and drills say about people (each lead's forward
delays and how often they forwarded, each building's ack delays and how often households
answered). `predict(deps, draft, seed, replay=…)` hands that history to a `Replay` — the entry
layer's replay of the warning on the local world, in a temporary store, never the real one — and
sums up what it saw: time to 95% per grid and the slowest links. The domain never starts the
world itself (only the entry layer does; docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from typing import Protocol

from bot.core import texts
from bot.core.config import Settings
from bot.data import alerts as alerts_db
from bot.data import drills as drills_db
from bot.data import followups as followups_db
from bot.data.store import Store
from bot.domain import followups as followups_mod
from bot.domain.relay import _deadline_min

MILESTONES = (50, 90, 95, 100)
MAX_CURVE_POINTS = 200
EXPORT_FORMATS = ("csv", "xlsx")


class DrillError(ValueError):
    """A bad request for a report or a prediction (unknown alert, bad format, bad parameter)."""


# -- the after-action report ---------------------------------------------------------------------
def time_to(ack_times: list[float], total: int, pct: float, start: float) -> float | None:
    """Seconds from `start` until `pct`% of `total` households had acknowledged (sorted times)."""
    need = math.ceil(pct / 100 * total - 1e-9)
    if total <= 0 or need <= 0 or need > len(ack_times):
        return None
    return ack_times[need - 1] - start


def _area(kind: str, name: str, households: list[dict], start: float) -> dict:
    acked = sorted(h["acked_at"] for h in households if h["acked_at"] is not None)
    n = len(households)
    return {"kind": kind, "name": name, "households": n, "acked": len(acked),
            "reached": sum(1 for h in households if h["reached_at"] is not None),
            "pct": round(100.0 * len(acked) / n, 1) if n else 0.0,
            "time_to": {p: time_to(acked, n, p, start) for p in MILESTONES}}


def after_action(store: Store, alert_id: int, *, settings=None, visit_within_s: float | None = None) -> dict:
    """The after-action report of one warning or drill (see the module doc). A vulnerable
    resident counts as visited in time when their task was closed within `visit_within_s` of the
    issue (default: the follow-up deadline of the warning's colour)."""
    alert = alerts_db.get(store, alert_id)
    if alert is None:
        raise DrillError(f"no alert #{alert_id}")
    if visit_within_s is not None and visit_within_s <= 0:
        raise DrillError("visit_within_s must be > 0 seconds")
    start = alert["created_at"]
    if visit_within_s is None:
        visit_within_s = (followups_mod.deadline_for(settings, alert["colour"], 0.0) if settings is not None
                          else 60.0 * followups_mod.DEFAULT_DEADLINE_MIN.get(alert["colour"], 240))
    nodes = {n["id"]: n for n in drills_db.nodes(store)}
    households = drills_db.scope_households(store, alert_id)

    def ancestors(building_id: int):
        n = nodes.get(building_id)
        while n is not None:
            yield n
            n = nodes.get(n["parent_id"])

    by_node: dict[int, list[dict]] = {}
    for h in households:
        for n in ancestors(h["building_id"]):
            by_node.setdefault(n["id"], []).append(h)
    areas = [_area(n["kind"], n["name"], by_node[nid], start) for nid, n in nodes.items()
             if nid in by_node and n["kind"] in ("community", "grid", "compound")]
    by_building: dict[int, list[dict]] = {}
    for h in households:
        by_building.setdefault(h["building_id"], []).append(h)
    led: dict[int, dict] = {}
    for row in drills_db.building_leads(store):
        if row["rank"] == 0 and row["node_id"] in by_building:
            entry = led.setdefault(row["resident_id"], {"name": row["name"], "buildings": []})
            entry["buildings"].append(row["node_id"])
    for lead in led.values():
        name = f"{lead['name']}（{'、'.join(_place(nodes, b) for b in lead['buildings'])}）"
        areas.append(_area("lead", name, [h for b in lead["buildings"] for h in by_building[b]], start))

    hops, missed = _hops(store, alert_id, nodes, start, settings or Settings())
    never = [{"label": h["label"], "building": _place(nodes, h["building_id"])}
             for h in households if h["reached_at"] is None]
    vulnerable = _vulnerable(store, alert_id, start, visit_within_s, nodes)
    whole = next((a for a in areas if a["kind"] == "community"), None) or _area("community", "", households, start)
    return {"alert_id": alert_id, "type": alert["type"], "colour": alert["colour"],
            "drill": alert["status"] == "exercise", "created_at": start, "households": whole["households"],
            "acked": whole["acked"], "reached": whole["reached"], "time_to": whole["time_to"],
            "visit_within_s": visit_within_s, "areas": areas, "hops": hops, "missed": missed,
            "never_reached": never, "vulnerable_late": vulnerable}


def _place(nodes: dict, node_id: int) -> str:
    """A node's name with its compound ("大龙一区3栋"), as the office writes places."""
    n = nodes.get(node_id)
    if n is None:
        return ""
    parent = nodes.get(n["parent_id"])
    return (parent["name"] if n["kind"] == "building" and parent else "") + n["name"]


def _hops(store: Store, alert_id: int, nodes: dict, start: float, settings) -> tuple[list[dict], list[dict]]:
    asks: dict[int, list[dict]] = {}
    for a in drills_db.hop_asks(store, alert_id):
        data = json.loads(a["data"] or "{}")
        asks.setdefault(a["hop_id"], []).append(dict(a, level=data.get("level", 0)))
    out, missed = [], []
    for h in drills_db.hops(store, alert_id):
        delay = h["done_at"] - h["created_at"] if h["done_at"] is not None else None
        row = {"hop_id": h["id"], "place": _place(nodes, h["node_id"]), "node_kind": h["node_kind"],
               "group": h["group_name"] or "", "group_kind": h["group_kind"] or "", "method": h["method"],
               "state": h["state"], "level": h["escalation_level"], "done_by": h["done_by_name"] or "",
               "forward_delay_s": delay, "asked": [a["name"] for a in asks.get(h["id"], [])]}
        out.append(row)
        chain = asks.get(h["id"], [])
        for i, a in enumerate(chain):
            gone_around = i + 1 < len(chain) or h["state"] in ("escalated", "failed")
            if not gone_around:
                continue
            if i + 1 < len(chain):
                nxt = "backup" if chain[i + 1]["level"] == 1 else "grid"
            else:
                nxt = "direct" if h["state"] == "escalated" else "failed"
            late = h["done_at"] - start if h["done_by"] == a["actor_id"] and h["done_at"] is not None else None
            missed.append({"hop_id": h["id"], "place": row["place"], "group": row["group"], "lead": a["name"] or "",
                           "asked_s": a["at"] - start,
                           "deadline_s": a["at"] - start + 60 * _deadline_min(settings, h["node_kind"]),
                           "then": nxt, "forwarded_late_s": late})
    return out, missed


def _vulnerable(store: Store, alert_id: int, start: float, within_s: float, nodes: dict) -> list[dict]:
    tasks: dict[int, list[dict]] = {}
    for f in followups_db.board(store, None, alert_id):  # every task of this warning, any state
        tasks.setdefault(f["resident_id"], []).append(f)
    out = []
    for r in drills_db.vulnerable_in_scope(store, alert_id):
        mine = tasks.get(r["id"], [])
        visited = [f["closed_at"] for f in mine if f["state"] == "closed" and f["closed_at"] is not None]
        first_visit = min(visited) if visited else None
        acked_in_time = r["acked_at"] is not None and r["acked_at"] - start <= within_s
        if first_visit is not None and first_visit - start <= within_s:
            continue
        if not mine and acked_in_time:
            continue  # no task was needed: the household answered in time
        task = "none" if not mine else ("late" if first_visit is not None else "open")
        last = mine[-1] if mine else {}
        out.append({"name": r["name"], "vulnerable": r["vulnerable"], "room": r["room"],
                    "worker": last.get("worker") or "", "task": task,
                    "visited_s": first_visit - start if first_visit is not None else None,
                    "outcome": last.get("outcome") or "",
                    "acked_s": r["acked_at"] - start if r["acked_at"] is not None else None})
    return out


# -- the dashboard's curve -----------------------------------------------------------------------
def curves(store: Store, alert_id: int, *, max_points: int = MAX_CURVE_POINTS) -> dict[str, list[tuple[float, float]]]:
    """Per grid: (seconds since issue, % of the grid's households acknowledged), starting at
    (0, 0), one point per first ack, downsampled to at most `max_points` (the last point kept)."""
    if max_points < 2:
        raise DrillError("a curve needs at least 2 points")
    alert = alerts_db.get(store, alert_id)
    if alert is None:
        raise DrillError(f"no alert #{alert_id}")
    nodes = {n["id"]: n for n in drills_db.nodes(store)}
    grid_of: dict[int, dict] = {}
    for nid, n in nodes.items():
        m = n
        while m is not None and m["kind"] != "grid":
            m = nodes.get(m["parent_id"])
        if m is not None:
            grid_of[nid] = m
    per_grid: dict[str, list] = {}
    totals: dict[str, int] = {}
    for h in drills_db.scope_households(store, alert_id):
        g = grid_of.get(h["building_id"])
        name = g["name"] if g else ""
        totals[name] = totals.get(name, 0) + 1
        if h["acked_at"] is not None:
            per_grid.setdefault(name, []).append(h["acked_at"] - alert["created_at"])
    out = {}
    for name, total in totals.items():
        times = sorted(per_grid.get(name, []))
        points = [(0.0, 0.0)] + [(t, round(100.0 * (i + 1) / total, 2)) for i, t in enumerate(times)]
        out[name] = downsample(points, max_points)
    return out


def downsample(points: list, max_points: int) -> list:
    """At most `max_points`, evenly spread over the list, first and last always kept."""
    if len(points) <= max_points:
        return list(points)
    step = (len(points) - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]


# -- export ----------------------------------------------------------------------------------------
def _labels():
    return texts.env().get_template("messages/drills/_labels.j2").module


def _min(s: float | None) -> str | float:
    return "" if s is None else round(s / 60, 1)


def _sections(rep: dict) -> list[tuple[str, list[str], list[list]]]:
    L = _labels()
    R = L.REPORT
    summary = [[R["alert"], rep["alert_id"]], [R["what"], f"{rep['type']} {rep['colour']}"],
               [R["households"], rep["households"]], [R["reached"], rep["reached"]], [R["acked"], rep["acked"]]]
    summary += [[f"{p}%", _min(rep["time_to"][p])] for p in MILESTONES]
    areas = [[L.KIND.get(a["kind"], a["kind"]), a["name"], a["households"], a["reached"], a["acked"], a["pct"],
              *(_min(a["time_to"][p]) for p in MILESTONES)] for a in rep["areas"]]
    hops = [[h["hop_id"], h["place"], h["group"], h["group_kind"], L.METHOD.get(h["method"], h["method"]),
             L.STATE.get(h["state"], h["state"]), h["level"], h["done_by"], _min(h["forward_delay_s"])]
            for h in rep["hops"]]
    missed = [[m["hop_id"], m["place"], m["group"], m["lead"], _min(m["asked_s"]), _min(m["deadline_s"]),
               L.NEXT.get(m["then"], m["then"]), _min(m["forwarded_late_s"])] for m in rep["missed"]]
    never = [[n["label"], n["building"]] for n in rep["never_reached"]]
    vuln = [[v["name"], v["vulnerable"], v["room"], v["worker"], L.TASK.get(v["task"], v["task"]),
             _min(v["visited_s"]), L.OUTCOME.get(v["outcome"], v["outcome"]), _min(v["acked_s"])]
            for v in rep["vulnerable_late"]]
    title = R["drill_title"] if rep["drill"] else R["title"]
    return [(title, [R["summary"], ""], summary), (R["areas"], list(L.AREA_COLUMNS), areas),
            (R["hops"], list(L.HOP_COLUMNS), hops), (R["missed"], list(L.MISSED_COLUMNS), missed),
            (R["never"], list(L.NEVER_COLUMNS), never), (R["vulnerable"], list(L.VULNERABLE_COLUMNS), vuln)]


def export(rep: dict, fmt: str) -> bytes:
    """The report as CSV (one sheet, sections one after another; UTF-8 with a BOM so Excel reads
    the Chinese) or XLSX (one sheet per section) bytes."""
    fmt = (fmt or "").lower().lstrip(".")
    if fmt not in EXPORT_FORMATS:
        raise DrillError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    sections = _sections(rep)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        for title, header, rows in sections:
            w.writerows([[title], header, *rows, []])
        return buf.getvalue().encode("utf-8-sig")
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for n, (title, header, rows) in enumerate(sections):
        ws = wb.create_sheet(title[:31] if n else _labels().REPORT["summary"])
        ws.append(header if n else [title, ""])
        for row in rows:
            ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# -- history and prediction -----------------------------------------------------------------------
@dataclass
class Profile:
    """What history says about one lead or one building: observed delays (seconds) and how often
    they acted when asked/reached."""
    delays: list[float] = field(default_factory=list)
    asked: int = 0
    acted: int = 0

    @property
    def probability(self) -> float | None:
        return self.acted / self.asked if self.asked else None


@dataclass
class History:
    leads: dict[str, Profile] = field(default_factory=dict)       # account (WeCom userid / openid)
    buildings: dict[str, Profile] = field(default_factory=dict)   # building path "社区/网格/小区/楼栋"
    workers: dict[str, Profile] = field(default_factory=dict)     # account: time per follow-up task
    alerts: list[int] = field(default_factory=list)


def history(store: Store, *, before: float | None = None, alert_ids: list[int] | None = None) -> History:
    """What past warnings and drills say: per lead, the delay from being asked to forwarding
    (and how often they forwarded at all); per building, the delay from a resident's household
    being reached to their own answer (and how often residents answered); per social worker, the
    time each follow-up visit took. Acks after the alert ended count too:
    a slow answer is still the person's habit."""
    ids = alert_ids if alert_ids is not None else [a["id"] for a in drills_db.past_alerts(store, before)]
    h = History(alerts=list(ids))
    for r in drills_db.forward_delays(store, ids):
        account = r["wecom_userid"] or r["oa_openid"]
        if not account:
            continue
        p = h.leads.setdefault(account, Profile())
        p.asked += 1
        if r["done_at"] is not None:
            p.acted += 1
            p.delays.append(max(0.0, r["done_at"] - r["asked_at"]))
    for r in drills_db.ack_delays(store, ids):
        p = h.buildings.setdefault(r["building_path"], Profile())
        p.asked += 1
        if r["acked_at"] is not None:
            p.acted += 1
            p.delays.append(max(0.0, r["acked_at"] - r["reached_at"]))
    # a social worker's pace: one visit after another, so the time per task is the gap between
    # closing one task and the next (the first counted from when the tasks came)
    last: dict[tuple, float] = {}
    for r in drills_db.visit_times(store, ids):
        account = r["wecom_userid"] or r["oa_openid"]
        if not account:
            continue
        key = (r["alert_id"], account)
        start = max(last.get(key, r["created_at"]), r["created_at"])
        p = h.workers.setdefault(account, Profile())
        p.asked += 1
        p.acted += 1
        p.delays.append(max(0.0, r["closed_at"] - start))
        last[key] = r["closed_at"]
    return h


class Replay(Protocol):
    """The entry layer's replay of a warning on the local world, in a temporary store, with people
    who behave as `history` says; returns the after-action report of the replayed warning."""

    async def __call__(self, history: History, draft, seed: int) -> dict: ...


def summarise(rep: dict, *, slowest: int = 5) -> dict:
    """The figures a prediction (or a run) is judged by: per grid time to 50/90/95%, and the slowest
    links (hops with the longest forward delay, never-done ones first)."""
    grids = {a["name"]: {"households": a["households"], "pct": a["pct"],
                         **{f"t{p}_s": a["time_to"][p] for p in (50, 90, 95)}}
             for a in rep["areas"] if a["kind"] == "grid"}
    waited = [h for h in rep["hops"] if h["method"] in ("ask_lead", "customer")]
    waited.sort(key=lambda h: (h["forward_delay_s"] is not None, -(h["forward_delay_s"] or 0)))
    links = [{"place": h["place"], "group": h["group"], "asked": h["asked"], "state": h["state"],
              "forward_delay_s": h["forward_delay_s"]} for h in waited[:slowest]]
    return {"grids": grids, "slowest": links, "t95_s": rep["time_to"][95], "acked": rep["acked"],
            "households": rep["households"]}


async def predict(deps, draft, seed: int, *, replay: Replay, before: float | None = None) -> dict:
    """Predict a warning before anyone is disturbed: replay it (on the world, in a temporary store)
    with the people history describes. Returns `summarise` of the replay plus the history's size."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DrillError("the seed must be an integer")
    paths = drills_db.node_paths(deps.store, [int(i) for i in draft.scope])
    if len(paths) != len(draft.scope):
        raise DrillError(f"unknown place in the scope {draft.scope}")
    # the replay runs on its own store, where ids differ: places travel by path, nobody issues it
    draft = dataclasses.replace(draft, scope=paths, issuer_id=None, supersedes_id=None)
    h = history(deps.store, before=before)
    rep = await replay(h, draft, seed)
    out = summarise(rep)
    out.update(history_alerts=len(h.alerts), history_leads=len(h.leads), history_buildings=len(h.buildings),
               history_workers=len(h.workers), report=rep)
    return out


def compare(predicted: dict, observed: dict) -> list[dict]:
    """Per grid: predicted vs observed time to 95% (and 50/90%), and the error in minutes."""
    rows = []
    for grid in sorted(set(predicted["grids"]) | set(observed["grids"])):
        p, o = predicted["grids"].get(grid, {}), observed["grids"].get(grid, {})
        row = {"grid": grid}
        for k in ("t50_s", "t90_s", "t95_s"):
            row[f"predicted_{k}"], row[f"observed_{k}"] = p.get(k), o.get(k)
            row[f"error_{k}"] = (p[k] - o[k]) if p.get(k) is not None and o.get(k) is not None else None
        rows.append(row)
    return rows
