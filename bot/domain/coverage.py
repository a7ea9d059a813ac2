"""Coverage of an alert: per building, rolled up to compound, grid and community, and the time to
50/90/100% of households acknowledged. One home for these figures: chat summaries, the dashboard,
the API, the CLI and reports all read them from here. Reads the trigger-maintained counters
(coverage_counts, ack_firsts), so it stays fast at 100k households.
"""
from __future__ import annotations

import math

from bot.data import acks as acks_db
from bot.data import alerts as alerts_db
from bot.data.store import Store

MILESTONES = (50, 90, 100)


def coverage(store: Store, alert_id: int, *, within: list[int] | None = None) -> dict:
    """`within` (building ids) limits the figures to what a lead may see."""
    alert = alerts_db.get(store, alert_id)
    per_building = acks_db.per_building_counts(store, alert_id)
    if within is not None:
        allowed = set(within)
        per_building = [row for row in per_building if row[0] in allowed]
    help_by_building = acks_db.help_by_building(store, alert_id)
    nodes = {n[0]: {"id": n[0], "kind": n[1], "name": n[2], "parent_id": n[3], "households": 0, "reached": 0,
                    "acked": 0, "help": 0, "children": []}
             for n in acks_db.tree_nodes(store)}
    touched = set()
    for b, households, reached, acked in per_building:
        node = nodes[b]
        counts = {"households": households, "reached": reached, "acked": acked, "help": help_by_building.get(b, 0)}
        while node is not None:
            for k, v in counts.items():
                node[k] += v
            touched.add(node["id"])
            node = nodes.get(node["parent_id"])
    for nid in sorted(touched):
        n = nodes[nid]
        n["pct"] = round(100.0 * n["acked"] / n["households"], 1) if n["households"] else 0.0
        if n["parent_id"] in nodes:
            nodes[n["parent_id"]]["children"].append(n)
    roots = [nodes[n] for n in sorted(touched) if nodes[n]["parent_id"] not in touched]
    total = sum(r["households"] for r in roots)
    acked = sum(r["acked"] for r in roots)
    time_to = {p: None for p in MILESTONES}
    if within is None:
        time_to = {p: time_to_fraction(store, alert_id, acked, total, p / 100, alert["created_at"])
                   for p in MILESTONES}
    return {"alert_id": alert_id, "households": total, "acked": acked,
            "reached": sum(r["reached"] for r in roots),
            "pct": round(100.0 * acked / total, 1) if total else 0.0,
            "time_to": time_to, "tree": roots}


def time_to_fraction(store: Store, alert_id: int, acked: int, total: int, frac: float, start: float) -> float | None:
    """Seconds from issue until `frac` of households had acknowledged (the k-th first ack)."""
    need = math.ceil(frac * total)
    if total == 0 or need > acked or need == 0:
        return None
    return acks_db.nth_first_ack_at(store, alert_id, need) - start

