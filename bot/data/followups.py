"""One-to-one follow-ups of vulnerable residents: who, by whom, by when, at what level, what came of it."""
from __future__ import annotations

from bot.data.store import Store

_WITH_NAMES = ("SELECT f.*, r.name, r.phone, r.vulnerable, h.label AS room, h.room AS room_no, h.building_id, "
               "w.name AS worker FROM followups f JOIN residents r ON r.id=f.resident_id "
               "JOIN households h ON h.id=f.household_id LEFT JOIN residents w ON w.id=f.worker_id ")


def vulnerable_in_scope(store: Store, alert_id: int, *, unacked_only: bool) -> list[dict]:
    """Vulnerable residents in the alert's scope (only those whose household has not acknowledged,
    with unacked_only), with their social worker's accounts."""
    return store.q(
        f"""SELECT r.*, h.label AS room, h.building_id, w.id AS worker_id, w.name AS worker_name,
                  w.wecom_userid AS worker_userid, w.oa_openid AS worker_openid, w.active AS worker_active
           FROM residents r JOIN households h ON h.id = r.household_id AND h.active = 1
           JOIN alert_scope s ON s.building_id = h.building_id AND s.alert_id = ?
           LEFT JOIN residents w ON w.id = r.social_worker_id
           WHERE r.active = 1 AND r.vulnerable != ''
             {"AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.alert_id = s.alert_id AND a.household_id = h.id)"
              if unacked_only else ""}
           ORDER BY r.id""", (alert_id,))


def create(store: Store, *, alert_id: int, resident_id: int, household_id: int, worker_id: int | None, at: float,
           deadline_at: float | None, level: int, reason: str) -> int | None:
    cur = store.conn.execute(
        "INSERT OR IGNORE INTO followups (alert_id, resident_id, household_id, worker_id, created_at, deadline_at,"
        " level, reason) VALUES (?,?,?,?,?,?,?,?)",
        (alert_id, resident_id, household_id, worker_id, at, deadline_at, level, reason))
    return cur.lastrowid if cur.rowcount else None


def get(store: Store, followup_id: int) -> dict | None:
    return store.q1(_WITH_NAMES + "WHERE f.id=?", (followup_id,))


def open_for_alert(store: Store, alert_id: int) -> list[dict]:
    return store.q(_WITH_NAMES + "WHERE f.alert_id=? AND f.state='open' ORDER BY f.id", (alert_id,))


def open_of_worker(store: Store, worker_id: int) -> list[dict]:
    return store.q(_WITH_NAMES + "WHERE f.worker_id=? AND f.state='open' ORDER BY f.id", (worker_id,))


def open_escalated_to(store: Store, building_ids: list[int] | None, min_level: int) -> list[dict]:
    """Open tasks escalated to at least `min_level` within these buildings (all when None)."""
    sql = _WITH_NAMES + "WHERE f.state='open' AND f.level >= ?"
    params: list = [min_level]
    if building_ids is not None:
        if not building_ids:
            return []
        sql += f" AND h.building_id IN ({','.join('?' * len(building_ids))})"
        params += building_ids
    return store.q(sql + " ORDER BY f.id", params)


def due(store: Store, now: float) -> list[dict]:
    """Open tasks past their deadline, of warnings not lifted away (an expired one is still visited)."""
    return store.q(_WITH_NAMES + "WHERE f.state='open' AND f.deadline_at IS NOT NULL AND f.deadline_at <= ? "
                   "ORDER BY f.id", (now,))


def next_deadline(store: Store) -> float | None:
    return store.scalar("SELECT MIN(deadline_at) FROM followups WHERE state='open' AND deadline_at IS NOT NULL")


def raise_level(store: Store, followup_id: int, level: int, deadline_at: float | None, at: float) -> None:
    store.conn.execute("UPDATE followups SET level=?, deadline_at=?, asked_at=? WHERE id=?",
                       (level, deadline_at, at, followup_id))


def ask_again(store: Store, followup_id: int, deadline_at: float | None, at: float) -> None:
    store.conn.execute("UPDATE followups SET deadline_at=?, asked_at=? WHERE id=?", (deadline_at, at, followup_id))


def record_outcome(store: Store, followup_id: int, outcome: str, note: str, at: float, *, close: bool,
                   deadline_at: float | None = None) -> None:
    if close:
        store.conn.execute("UPDATE followups SET state='closed', closed_at=?, note=?, outcome=?, deadline_at=NULL "
                           "WHERE id=?", (at, note, outcome, followup_id))
    else:
        store.conn.execute("UPDATE followups SET note=?, outcome=?, deadline_at=?, asked_at=? WHERE id=?",
                           (note, outcome, deadline_at, at, followup_id))


def board(store: Store, building_ids: list[int] | None = None, alert_id: int | None = None) -> list[dict]:
    """Every task (open and closed), newest warning first: the follow-up board and its export."""
    sql = _WITH_NAMES + "WHERE 1=1"
    params: list = []
    if alert_id is not None:
        sql += " AND f.alert_id=?"
        params.append(alert_id)
    if building_ids is not None:
        if not building_ids:
            return []
        sql += f" AND h.building_id IN ({','.join('?' * len(building_ids))})"
        params += building_ids
    return store.q(sql + " ORDER BY f.alert_id DESC, w.name, f.id", params)
