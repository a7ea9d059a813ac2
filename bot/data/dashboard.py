"""Read-only queries that only the dashboard's pages, API and exports need.

`scope` everywhere is the viewer's building ids (a lead's area) or None for everything; the cut
is made in SQL so a lead's page never loads a neighbour's rows. Alerts by id, their scope and
the tree come from bot.data.alerts / bot.data.org.
"""
from __future__ import annotations

from bot.data.store import Store


def _in(scope, column: str) -> tuple[str, list]:
    """` AND column IN (...)` for a scope (nothing for None; an empty scope matches nothing)."""
    if scope is None:
        return "", []
    ids = sorted(scope)
    return f" AND {column} IN ({','.join('?' * len(ids)) or 'NULL'})", ids


# -- the alert list (its household totals: bot.data.alerts.households_in) ----------------------------------------------------------------------------------
def acked_in(store: Store, alert_id: int, building_ids) -> int:
    """Households in these buildings that acked the alert."""
    cond, params = _in(building_ids, "h.building_id")
    return store.scalar(
        "SELECT COUNT(DISTINCT a.household_id) FROM acks a JOIN households h ON h.id=a.household_id "
        f"WHERE a.alert_id=?{cond}", (alert_id, *params))


def superseded_by(store: Store, alert_id: int) -> dict | None:
    """The newest alert that updates or lifts this one (the page links to it)."""
    return store.q1("SELECT id FROM alerts WHERE supersedes_id=? ORDER BY id DESC LIMIT 1", (alert_id,))


# -- the composer -------------------------------------------------------------------------------------
def household_counts(store: Store) -> dict[int, int]:
    """Active households per building id."""
    return {r["building_id"]: r["n"] for r in store.q(
        "SELECT building_id, COUNT(*) AS n FROM households WHERE active=1 GROUP BY building_id")}


# -- the alert page -----------------------------------------------------------------------------------
def first_ack_times(store: Store, alert_id: int, scope) -> list[float]:
    """When each household (in scope) first acked, in order."""
    # ack_firsts is kept by a trigger: no GROUP BY over every ack on each live refresh
    cond, params = _in(scope, "building_id")
    return [r[0] for r in store.conn.execute(
        f"SELECT at FROM ack_firsts WHERE alert_id=?{cond} ORDER BY at", (alert_id, *params))]


def hops(store: Store, alert_id: int) -> list[dict]:
    """The alert's hops with their node, group, lead and who marked them done, in tree order."""
    return store.q(
        "SELECT h.*, n.name AS node, n.kind AS node_kind, n.path, g.name AS grp, g.kind AS gkind, "
        "l.name AS lead, d.name AS done_by_name FROM hops h JOIN nodes n ON n.id=h.node_id "
        "LEFT JOIN chat_groups g ON g.id=h.group_id LEFT JOIN residents l ON l.id=h.lead_id "
        "LEFT JOIN residents d ON d.id=h.done_by WHERE h.alert_id=? ORDER BY n.path, h.id",
        (alert_id,))


def unacked(store: Store, alert_id: int, scope) -> list[dict]:
    """Households in the alert's (and the viewer's) scope with no ack yet, by compound/building."""
    cond, params = _in(scope, "h.building_id")
    return store.q(
        "SELECT h.id, h.unit, h.room, b.id AS building_id, COALESCE(c.name, '') || b.name AS building, "
        "EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id=s.alert_id AND d.household_id=h.id) AS reached, "
        "(SELECT GROUP_CONCAT(r.vulnerable, '、') FROM residents r WHERE r.household_id=h.id "
        "AND r.active=1 AND r.vulnerable!='') AS vulnerable "
        "FROM alert_scope s JOIN households h ON h.building_id=s.building_id AND h.active=1 "
        "JOIN nodes b ON b.id=h.building_id LEFT JOIN nodes c ON c.id=b.parent_id "
        "WHERE s.alert_id=? AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.alert_id=s.alert_id "
        f"AND a.household_id=h.id){cond} ORDER BY c.name, b.id, h.id", (alert_id, *params))


def followups(store: Store, alert_id: int, scope) -> list[dict]:
    """One-to-one follow-ups of the alert in scope: open ones first."""
    cond, params = _in(scope, "h.building_id")
    return store.q(
        "SELECT f.*, r.name, r.vulnerable, h.label AS room, w.name AS worker FROM followups f "
        "JOIN residents r ON r.id=f.resident_id JOIN households h ON h.id=f.household_id "
        f"LEFT JOIN residents w ON w.id=f.worker_id WHERE f.alert_id=?{cond} "
        "ORDER BY f.state DESC, f.id", (alert_id, *params))


def fingerprint(store: Store, alert_id: int) -> tuple:
    """Cheap summary that changes whenever anything on the alert page would."""
    return tuple(store.conn.execute(
        """SELECT (SELECT COALESCE(MAX(id), 0) FROM acks WHERE alert_id=:a),
                  (SELECT COUNT(*) FROM deliveries WHERE alert_id=:a),
                  (SELECT COUNT(*) || ':' || COALESCE(SUM(escalation_level), 0) || ':' ||
                          COALESCE(MAX(done_at), 0) || ':' || COALESCE(GROUP_CONCAT(state), '')
                   FROM (SELECT state, escalation_level, done_at FROM hops
                         WHERE alert_id=:a ORDER BY id)),
                  (SELECT COUNT(*) || ':' || COALESCE(SUM(state='closed'), 0) FROM followups
                   WHERE alert_id=:a),
                  (SELECT state FROM alerts WHERE id=:a)""", {"a": alert_id}).fetchone())


# -- exports ------------------------------------------------------------------------------------------
def delivery_rows(store: Store, alert_id: int, scope) -> list[dict]:
    """One row per household in the alert's (and the viewer's) scope: how it was reached, its
    first ack (when, by whom, how), its vulnerable members and its follow-up."""
    cond, params = _in(scope, "h.building_id")
    return store.q(
        """SELECT c.name AS compound, b.name AS building, h.label AS household,
                  d.via, d.at AS reached_at, a.at AS acked_at, a.channel, a.answer,
                  COALESCE(p.name, r.name) AS acked_by,
                  (SELECT GROUP_CONCAT(v.vulnerable, '、') FROM residents v WHERE v.household_id = h.id
                   AND v.active = 1 AND v.vulnerable != '') AS vulnerable,
                  f.state AS followup, w.name AS worker
           FROM alert_scope s JOIN households h ON h.building_id = s.building_id AND h.active = 1
           JOIN nodes b ON b.id = h.building_id LEFT JOIN nodes c ON c.id = b.parent_id
           LEFT JOIN deliveries d ON d.alert_id = s.alert_id AND d.household_id = h.id
           -- the household's first ack: when it was covered, and by whom
           LEFT JOIN acks a ON a.id = (SELECT id FROM acks WHERE alert_id = s.alert_id
                                       AND household_id = h.id ORDER BY at, id LIMIT 1)
           LEFT JOIN residents r ON r.id = a.resident_id
           LEFT JOIN residents p ON p.id = a.by_proxy_id
           LEFT JOIN followups f ON f.id = (SELECT id FROM followups WHERE alert_id = s.alert_id
                                            AND household_id = h.id ORDER BY id LIMIT 1)
           LEFT JOIN residents w ON w.id = f.worker_id
           WHERE s.alert_id = ?""" + cond + " ORDER BY c.name, b.id, h.id", (alert_id, *params))
