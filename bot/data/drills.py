"""Rows behind a warning's after-action report and behind the drill prediction's history: when
each household first acknowledged, each hop's asks and outcome, households never reached, the
follow-ups of vulnerable residents, and the past delays of leads and buildings."""
from __future__ import annotations

from bot.data.store import Store


def scope_households(store: Store, alert_id: int) -> list[dict]:
    """Households the alert covers (its audience only, for a vulnerable-only warning), with their
    building, first ack time and first delivery time (None when never)."""
    return store.q(
        "SELECT h.id, h.label, h.building_id, f.at AS acked_at, d.at AS reached_at "
        "FROM alert_scope s JOIN alerts al ON al.id = s.alert_id "
        "JOIN households h ON h.building_id = s.building_id AND h.active = 1 "
        "LEFT JOIN ack_firsts f ON f.alert_id = s.alert_id AND f.household_id = h.id "
        "LEFT JOIN deliveries d ON d.alert_id = s.alert_id AND d.household_id = h.id "
        "WHERE s.alert_id = ? AND (al.audience = '' OR EXISTS (SELECT 1 FROM alert_targets t "
        "WHERE t.alert_id = s.alert_id AND t.household_id = h.id)) ORDER BY h.id", (alert_id,))


def nodes(store: Store) -> list[dict]:
    return store.q("SELECT id, kind, name, parent_id, path FROM nodes ORDER BY id")


def building_leads(store: Store) -> list[dict]:
    """Who leads which building (rank 0 = lead, 1 = backup)."""
    return store.q("SELECT l.node_id, l.rank, r.id AS resident_id, r.name FROM node_leads l "
                   "JOIN residents r ON r.id = l.resident_id JOIN nodes n ON n.id = l.node_id "
                   "WHERE n.kind = 'building' ORDER BY l.node_id, l.rank, r.id")


def hops(store: Store, alert_id: int) -> list[dict]:
    """Every hop of the alert with its node, group and the person who finally did it."""
    return store.q(
        "SELECT h.*, n.name AS node_name, n.kind AS node_kind, n.path AS node_path, g.name AS group_name, "
        "g.kind AS group_kind, d.name AS done_by_name FROM hops h JOIN nodes n ON n.id = h.node_id "
        "LEFT JOIN chat_groups g ON g.id = h.group_id LEFT JOIN residents d ON d.id = h.done_by "
        "WHERE h.alert_id = ? ORDER BY h.id", (alert_id,))


def hop_asks(store: Store, alert_id: int) -> list[dict]:
    """Every time someone was asked to forward a hop of this alert, in order, with who it was."""
    return store.q(
        "SELECT e.ref_id AS hop_id, e.at, e.actor_id, r.name, e.data FROM events e "
        "LEFT JOIN residents r ON r.id = e.actor_id JOIN hops h ON h.id = e.ref_id AND h.alert_id = ? "
        "WHERE e.kind = 'hop.asked' AND e.ref_type = 'hop' ORDER BY e.ref_id, e.at, e.id", (alert_id,))


def vulnerable_in_scope(store: Store, alert_id: int) -> list[dict]:
    """Vulnerable residents of the alert's scope, with their household's first ack time."""
    return store.q(
        "SELECT r.id, r.name, r.vulnerable, h.id AS household_id, h.label AS room, h.building_id, "
        "f.at AS acked_at FROM residents r JOIN households h ON h.id = r.household_id AND h.active = 1 "
        "JOIN alert_scope s ON s.building_id = h.building_id AND s.alert_id = ? "
        "LEFT JOIN ack_firsts f ON f.alert_id = s.alert_id AND f.household_id = h.id "
        "WHERE r.active = 1 AND r.vulnerable != '' ORDER BY r.id", (alert_id,))


# -- history: what past warnings and drills say about people -------------------------------------
def past_alerts(store: Store, before: float | None = None) -> list[dict]:
    """Issued (not lifted) warnings and drills, oldest first, optionally created before a time."""
    sql = "SELECT * FROM alerts WHERE action != 'lift'"
    params: tuple = ()
    if before is not None:
        sql += " AND created_at < ?"
        params = (before,)
    return store.q(sql + " ORDER BY id", params)


def forward_delays(store: Store, alert_ids: list[int]) -> list[dict]:
    """Each time a lead was asked to forward and (maybe) did: the lead's accounts, the group, when
    asked and when they forwarded (None: they never did, or somebody else did it first)."""
    if not alert_ids:
        return []
    marks = ",".join("?" * len(alert_ids))
    return store.q(
        f"SELECT e.actor_id AS lead_id, r.wecom_userid, r.oa_openid, g.name AS group_name, e.at AS asked_at, "
        f"CASE WHEN h.done_by = e.actor_id THEN h.done_at END AS done_at, h.alert_id "
        f"FROM events e JOIN hops h ON h.id = e.ref_id JOIN residents r ON r.id = e.actor_id "
        f"LEFT JOIN chat_groups g ON g.id = h.group_id "
        f"WHERE e.kind = 'hop.asked' AND e.ref_type = 'hop' AND h.alert_id IN ({marks}) ORDER BY e.id",
        tuple(alert_ids))


def ack_delays(store: Store, alert_ids: list[int]) -> list[dict]:
    """Each resident on the Official Account in a household a past alert reached: their building's
    path, when the household was reached and when they themselves first answered (None: never;
    a neighbour's or worker's confirmation for them does not count as their answer)."""
    if not alert_ids:
        return []
    marks = ",".join("?" * len(alert_ids))
    return store.q(
        f"SELECT d.alert_id, r.id AS resident_id, n.path AS building_path, d.at AS reached_at, "
        f"(SELECT MIN(a.at) FROM acks a WHERE a.alert_id = d.alert_id AND a.resident_id = r.id "
        f" AND a.by_proxy_id IS NULL) AS acked_at "
        f"FROM deliveries d JOIN households h ON h.id = d.household_id JOIN nodes n ON n.id = h.building_id "
        f"JOIN residents r ON r.household_id = h.id AND r.active = 1 AND r.oa_openid IS NOT NULL "
        f"WHERE d.alert_id IN ({marks}) ORDER BY d.alert_id, r.id", tuple(alert_ids))


def node_paths(store: Store, node_ids: list[int]) -> list[str]:
    """The paths of these nodes ("社区/网格/小区"), in the order given; unknown ids are left out."""
    paths = {r["id"]: r["path"] for r in store.q("SELECT id, path FROM nodes")}
    return [paths[i] for i in node_ids if i in paths]


def visit_times(store: Store, alert_ids: list[int]) -> list[dict]:
    """Follow-up tasks of past alerts closed by the worker they were given to: the worker's
    accounts, when the task was made and when it was closed, in closing order per worker."""
    if not alert_ids:
        return []
    marks = ",".join("?" * len(alert_ids))
    return store.q(
        f"SELECT f.alert_id, f.worker_id, w.wecom_userid, w.oa_openid, f.created_at, f.closed_at "
        f"FROM followups f JOIN residents w ON w.id = f.worker_id "
        f"WHERE f.alert_id IN ({marks}) AND f.state = 'closed' AND f.closed_at IS NOT NULL AND f.level = 0 "
        f"ORDER BY f.alert_id, f.worker_id, f.closed_at", tuple(alert_ids))
