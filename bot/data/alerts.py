"""Alerts (warnings) and their scope."""
from __future__ import annotations

import json

from bot.data.store import Store


def get(store: Store, alert_id: int) -> dict | None:
    return store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))


def recent(store: Store, limit: int = 50) -> list[dict]:
    return store.q("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,))


def scope_buildings(store: Store, alert_id: int) -> list[int]:
    return [r["building_id"] for r in store.q(
        "SELECT building_id FROM alert_scope WHERE alert_id=? ORDER BY building_id", (alert_id,))]


def create(store: Store, *, type: str, colour: str, action: str, text: str, scope: list[int], poll: bool,
           issuer_id: int | None, supersedes_id: int | None, created_at: float, expires_at: float,
           buildings: list[int], kind: str = "warning", status: str = "actual",
           audience: list[str] | None = None, carries: str = "") -> int:
    """Insert the alert, its scope and coverage denominators (inside the caller's transaction).
    `audience` (vulnerable categories, ["*"] for all) limits it to vulnerable households."""
    conn = store.conn
    audience_col = json.dumps(audience, ensure_ascii=False) if audience else ""
    alert_id = conn.execute(
        "INSERT INTO alerts (type, colour, action, text, scope, poll, issuer_id, supersedes_id,"
        " created_at, expires_at, kind, status, audience, carries) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (type, colour, action, text, json.dumps(scope), int(poll), issuer_id, supersedes_id,
         created_at, expires_at, kind, status, audience_col, carries)).lastrowid
    conn.executemany("INSERT INTO alert_scope (alert_id, building_id) VALUES (?,?)",
                     [(alert_id, b) for b in buildings])
    if audience:
        conn.executemany("INSERT OR IGNORE INTO alert_targets (alert_id, household_id) VALUES (?,?)",
                         [(alert_id, h) for h in vulnerable_households(store, buildings, audience)])
        conn.execute("INSERT INTO coverage_counts (alert_id, building_id, households) "
                     "SELECT s.alert_id, s.building_id, COUNT(t.household_id) FROM alert_scope s "
                     "LEFT JOIN households h ON h.building_id = s.building_id AND h.active = 1 "
                     "LEFT JOIN alert_targets t ON t.alert_id = s.alert_id AND t.household_id = h.id "
                     "WHERE s.alert_id = ? GROUP BY s.building_id", (alert_id,))
        return alert_id
    # the households each building had when the warning went out: coverage's denominator
    conn.execute("INSERT INTO coverage_counts (alert_id, building_id, households) "
                 "SELECT s.alert_id, s.building_id, COUNT(h.id) FROM alert_scope s LEFT JOIN households h "
                 "ON h.building_id = s.building_id AND h.active = 1 WHERE s.alert_id = ? "
                 "GROUP BY s.building_id", (alert_id,))
    return alert_id


def vulnerable_households(store: Store, buildings: list[int], categories: list[str]) -> list[int]:
    """Active households in these buildings with an active vulnerable resident of these categories
    (any category with ["*"])."""
    out: set[int] = set()
    for i in range(0, len(buildings), 500):
        chunk = buildings[i:i + 500]
        for r in store.q(f"SELECT r.household_id, r.vulnerable FROM residents r JOIN households h ON h.id=r.household_id "
                         f"WHERE h.active=1 AND r.active=1 AND r.vulnerable != '' AND h.building_id IN "
                         f"({','.join('?' * len(chunk))})", chunk):
            cats = {c for c in r["vulnerable"].replace("，", "、").replace(",", "、").split("、") if c}
            if "*" in categories or cats & set(categories):
                out.add(r["household_id"])
    return sorted(out)


def targets(store: Store, alert_id: int) -> set[int] | None:
    """The households a vulnerable-only alert targets; None for an alert to everyone in scope."""
    if not store.scalar("SELECT audience FROM alerts WHERE id=?", (alert_id,)):
        return None
    return {r["household_id"] for r in store.q("SELECT household_id FROM alert_targets WHERE alert_id=?",
                                                (alert_id,))}


def mark_stages_done(store: Store, alert_id: int, at: float) -> None:
    """Nothing left to remind, follow up or sum up (a lift)."""
    store.conn.execute("UPDATE alerts SET reminded_at=?, followups_at=?, summary_at=? WHERE id=?",
                       (at, at, at, alert_id))


def mark_chasing_done(store: Store, alert_id: int, at: float) -> None:
    """No reminders and no follow-ups (a notice); the summary still comes at expiry."""
    store.conn.execute("UPDATE alerts SET reminded_at=?, followups_at=? WHERE id=?", (at, at, alert_id))


def end(store: Store, alert_id: int, state: str, at: float, *, keep_summary: bool) -> None:
    """An active alert ends (superseded or lifted): no more reminders or follow-ups; its summary is
    either still to come (keep_summary) or considered given."""
    store.conn.execute("UPDATE alerts SET state=?, reminded_at=coalesce(reminded_at, ?), "
                       "followups_at=coalesce(followups_at, ?) WHERE id=? AND state='active'",
                       (state, at, at, alert_id))
    if not keep_summary:
        store.conn.execute("UPDATE alerts SET summary_at=coalesce(summary_at, ?) WHERE id=?", (at, alert_id))


def set_stage(store: Store, alert_id: int, column: str, at: float) -> None:
    assert column in ("reminded_at", "followups_at")
    store.conn.execute(f"UPDATE alerts SET {column}=? WHERE id=?", (at, alert_id))


def finish(store: Store, alert_id: int, at: float) -> None:
    """The summary went out: an alert still active is now expired."""
    store.conn.execute("UPDATE alerts SET summary_at=?, state=CASE WHEN state='active' THEN 'expired' "
                       "ELSE state END WHERE id=?", (at, alert_id))


def households_in(store: Store, buildings: list[int]) -> int:
    if not buildings:
        return 0
    return store.scalar(f"SELECT COUNT(*) FROM households WHERE active=1 AND building_id IN "
                        f"({','.join('?' * len(buildings))})", buildings)


def live_for_household(store: Store, household_id: int, now: float) -> list[dict]:
    """Active (issued or updated, not lifted) alerts covering this household and not past their
    expiry, newest first."""
    return store.q(
        """SELECT a.* FROM alerts a JOIN alert_scope s ON s.alert_id = a.id
           JOIN households h ON h.building_id = s.building_id
           WHERE h.id = ? AND a.state = 'active' AND a.action != 'lift' AND a.expires_at > ?
             AND (a.audience = '' OR EXISTS (SELECT 1 FROM alert_targets t WHERE t.alert_id = a.id
                                             AND t.household_id = h.id))
           ORDER BY a.created_at DESC, a.id DESC""", (household_id, now))


def covers(store: Store, alert_id: int, household_id: int) -> bool:
    return store.scalar("SELECT 1 FROM alert_scope s JOIN households h ON h.building_id=s.building_id "
                        "JOIN alerts a ON a.id=s.alert_id WHERE s.alert_id=? AND h.id=? AND (a.audience='' OR "
                        "EXISTS (SELECT 1 FROM alert_targets t WHERE t.alert_id=a.id AND t.household_id=h.id))",
                        (alert_id, household_id)) == 1


def latest(store: Store, *, include_lifts: bool = False) -> dict | None:
    sql = "SELECT * FROM alerts" + ("" if include_lifts else " WHERE action!='lift'") + " ORDER BY id DESC LIMIT 1"
    return store.q1(sql)


def all_alerts(store: Store) -> list[dict]:
    return store.q("SELECT * FROM alerts ORDER BY id")


def unsummarised(store: Store) -> list[dict]:
    return store.q("SELECT * FROM alerts WHERE summary_at IS NULL ORDER BY id")


def sends_count(store: Store, alert_id: int) -> int:
    return store.scalar("SELECT COUNT(*) FROM sends WHERE alert_id=?", (alert_id,))


def recently_ended_for_household(store: Store, household_id: int, now: float, within_s: float) -> dict | None:
    return store.q1(
        """SELECT a.* FROM alerts a JOIN alert_scope s ON s.alert_id = a.id
           JOIN households h ON h.building_id = s.building_id
           WHERE h.id = ? AND a.created_at > ? AND (a.state != 'active' OR a.expires_at <= ? OR a.action = 'lift')
           ORDER BY a.created_at DESC, a.id DESC LIMIT 1""", (household_id, now - within_s, now))


def successor(store: Store, alert_id: int) -> dict | None:
    return store.q1("SELECT * FROM alerts WHERE supersedes_id=? ORDER BY id DESC LIMIT 1", (alert_id,))
