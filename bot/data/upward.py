"""Coverage reported upward: which report points were done per alert, and the figures the street
office's report reads (hops, deliveries, follow-ups, CAP origin)."""
from __future__ import annotations

from bot.data.store import Store


def candidates(store: Store, since: float) -> list[dict]:
    """Warnings (not lifts) issued since `since` whose final report has not been done."""
    return store.q(
        "SELECT a.*, (SELECT MIN(s.created_at) FROM alerts s WHERE s.supersedes_id = a.id) AS succeeded_at "
        "FROM alerts a WHERE a.created_at >= ? AND a.action != 'lift' "
        "AND NOT EXISTS (SELECT 1 FROM upward_reports u WHERE u.alert_id = a.id AND u.point = 'end') "
        "ORDER BY a.id", (since,))


def done_points(store: Store, alert_id: int) -> set[str]:
    return {r["point"] for r in store.q("SELECT point FROM upward_reports WHERE alert_id=?", (alert_id,))}


def record(store: Store, alert_id: int, point: str, due_at: float, done_at: float, outcome: str,
           sends: int = 0) -> bool:
    cur = store.conn.execute(
        "INSERT OR IGNORE INTO upward_reports (alert_id, point, due_at, done_at, outcome, sends) VALUES (?,?,?,?,?,?)",
        (alert_id, point, due_at, done_at, outcome, sends))
    return cur.rowcount == 1


def reports(store: Store, alert_id: int) -> list[dict]:
    return store.q("SELECT * FROM upward_reports WHERE alert_id=? ORDER BY due_at, point", (alert_id,))


def cap_origins(store: Store, alert_ids: list[int]) -> list[dict]:
    """The CAP messages that became these alerts (issue, update, lift), oldest first."""
    if not alert_ids:
        return []
    marks = ",".join("?" * len(alert_ids))
    return store.q(f"SELECT sender, identifier, sent, msg_type, status, alert_id FROM cap_messages "
                   f"WHERE alert_id IN ({marks}) AND outcome IN ('relayed','updated','lifted') ORDER BY id",
                   tuple(alert_ids))


def hops_of(store: Store, alert_id: int) -> list[dict]:
    """Every hop of the alert with its node, group and lead (the report judges which were late)."""
    return store.q(
        "SELECT h.id, h.method, h.state, h.escalation_level, h.deadline_at, h.done_at, h.created_at, "
        "n.name AS node, n.kind AS node_kind, g.name AS grp, r.name AS lead "
        "FROM hops h JOIN nodes n ON n.id = h.node_id LEFT JOIN chat_groups g ON g.id = h.group_id "
        "LEFT JOIN residents r ON r.id = h.lead_id WHERE h.alert_id=? ORDER BY h.id", (alert_id,))


def never_reached(store: Store, alert_id: int) -> list[dict]:
    """Households in the alert's scope (its targets when it has them) with no delivery and no ack."""
    return store.q(
        "SELECT h.id, h.label, b.name AS building, c.name AS compound, g.name AS grid "
        "FROM alert_scope s JOIN households h ON h.building_id = s.building_id AND h.active = 1 "
        "JOIN nodes b ON b.id = h.building_id LEFT JOIN nodes c ON c.id = b.parent_id "
        "LEFT JOIN nodes g ON g.id = c.parent_id "
        "WHERE s.alert_id = ? "
        "AND (NOT EXISTS (SELECT 1 FROM alert_targets t WHERE t.alert_id = s.alert_id) "
        "     OR EXISTS (SELECT 1 FROM alert_targets t WHERE t.alert_id = s.alert_id AND t.household_id = h.id)) "
        "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = s.alert_id AND d.household_id = h.id) "
        "AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.alert_id = s.alert_id AND a.household_id = h.id) "
        "ORDER BY g.name, c.name, b.name, h.label", (alert_id,))


def followups_of(store: Store, alert_id: int) -> list[dict]:
    """Every one-to-one follow-up of the alert, with the resident, room and worker."""
    return store.q(
        "SELECT f.id, f.state, f.created_at, f.closed_at, f.deadline_at, f.level, f.outcome, f.reason, "
        "r.name AS resident, r.vulnerable, h.label AS household, w.name AS worker "
        "FROM followups f JOIN residents r ON r.id = f.resident_id JOIN households h ON h.id = f.household_id "
        "LEFT JOIN residents w ON w.id = f.worker_id WHERE f.alert_id=? ORDER BY h.label, r.name", (alert_id,))

