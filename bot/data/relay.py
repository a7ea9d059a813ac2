"""Hops of the relay and the deliveries they made."""
from __future__ import annotations

from bot.data.store import Store


def hop(store: Store, hop_id: int) -> dict | None:
    return store.q1("SELECT * FROM hops WHERE id=?", (hop_id,))


def create_hop(store: Store, *, alert_id: int, node_id: int, group_id: int | None, method: str, state: str,
               lead_id: int | None = None, deadline_at: float | None = None, created_at: float,
               escalation_level: int = 0, done_at: float | None = None) -> int:
    return store.conn.execute(
        "INSERT INTO hops (alert_id, node_id, group_id, method, state, lead_id, escalation_level,"
        " deadline_at, created_at, done_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (alert_id, node_id, group_id, method, state, lead_id, escalation_level, deadline_at, created_at,
         done_at)).lastrowid


def set_deadline(store: Store, hop_id: int, at: float | None) -> None:
    store.conn.execute("UPDATE hops SET deadline_at=? WHERE id=?", (at, hop_id))


def mark_done(store: Store, hop_id: int, state: str, at: float, by: int | None) -> bool:
    """pending/asked -> state. True when this call moved it."""
    return store.conn.execute(
        "UPDATE hops SET state=?, done_at=?, done_by=?, deadline_at=NULL WHERE id=? "
        "AND state IN ('pending','asked')", (state, at, by, hop_id)).rowcount > 0


def mark_forwarded_late(store: Store, hop_id: int, at: float, by: int | None) -> bool:
    """A forward after the hop moved on (escalated, failed) still counts once."""
    return store.conn.execute("UPDATE hops SET done_at=?, done_by=? WHERE id=? AND done_by IS NULL",
                              (at, by, hop_id)).rowcount > 0


def ask_next(store: Store, hop_id: int, lead_id: int, level: int, deadline_at: float) -> None:
    store.conn.execute("UPDATE hops SET state='asked', lead_id=?, escalation_level=?, deadline_at=? "
                       "WHERE id=?", (lead_id, level, deadline_at, hop_id))


def give_up(store: Store, hop_id: int, state: str, level: int) -> None:
    store.conn.execute("UPDATE hops SET state=?, escalation_level=?, deadline_at=NULL WHERE id=?",
                       (state, level, hop_id))


def asked_people(store: Store, hop_id: int) -> set[int]:
    return {e["actor_id"] for e in store.q(
        "SELECT actor_id FROM events WHERE ref_type='hop' AND ref_id=? AND kind='hop.asked'", (hop_id,))}


def was_ever_asked(store: Store, resident_id: int) -> bool:
    return store.scalar("SELECT 1 FROM events WHERE kind='hop.asked' AND actor_id=? LIMIT 1", (resident_id,)) == 1


def open_asks_of(store: Store, resident_id: int) -> list[dict]:
    """Hops a person was asked to forward and nobody has done yet (group name included)."""
    return store.q(
        "SELECT h.*, g.name AS group_name FROM hops h LEFT JOIN chat_groups g ON g.id = h.group_id "
        "WHERE h.state IN ('asked','escalated','failed') AND h.done_by IS NULL AND (h.lead_id=? OR h.id IN "
        "(SELECT ref_id FROM events WHERE ref_type='hop' AND kind='hop.asked' AND actor_id=?)) ORDER BY h.id",
        (resident_id, resident_id))


def overdue(store: Store, now: float) -> list[dict]:
    """Asked hops past their deadline, of alerts still active."""
    return store.q("SELECT h.* FROM hops h JOIN alerts a ON a.id=h.alert_id WHERE h.state='asked' "
                   "AND h.deadline_at <= ? AND a.state='active' ORDER BY h.id", (now,))


def next_deadline(store: Store) -> float | None:
    return store.scalar("SELECT MIN(h.deadline_at) FROM hops h JOIN alerts a ON a.id=h.alert_id "
                        "WHERE h.state='asked' AND h.deadline_at IS NOT NULL AND a.state='active'")


def count(store: Store, alert_id: int) -> int:
    return store.scalar("SELECT COUNT(*) FROM hops WHERE alert_id=?", (alert_id,))


def counts_by_state(store: Store, alert_id: int) -> dict[str, int]:
    return {r["state"]: r["n"] for r in store.q(
        "SELECT state, COUNT(*) n FROM hops WHERE alert_id=? GROUP BY state ORDER BY state", (alert_id,))}


def waiting_send(store: Store, key: str) -> int | None:
    return store.scalar("SELECT id FROM sends WHERE key=? AND state='waiting'", (key,))


# -- who a message reaches --------------------------------------------------------------------
def building_people(store: Store, building_id: int) -> list[dict]:
    """Active residents of a building's active households, with their accounts."""
    return store.q("SELECT r.id, r.household_id, r.wecom_userid, r.oa_openid FROM residents r "
                   "JOIN households h ON h.id = r.household_id "
                   "WHERE h.building_id=? AND h.active=1 AND r.active=1 ORDER BY r.id", (building_id,))


def reachable_households(store: Store, building_id: int) -> list[int]:
    """Households with at least one member on WeChat/WeCom: a group message can reach them."""
    return [r["id"] for r in store.q(
        "SELECT DISTINCT h.id FROM households h JOIN residents r ON r.household_id = h.id "
        "WHERE h.building_id=? AND h.active=1 AND r.active=1 "
        "AND (r.oa_openid IS NOT NULL OR r.wecom_userid IS NOT NULL)", (building_id,))]


def member_households(store: Store, node_id: int, kind: str) -> list[int]:
    """Households a group message on this node reaches, from the register: a building group holds
    the building's residents on WeChat; a compound group the leads of its buildings; a grid group
    its grid leads; the community group its staff."""
    if kind == "building":
        return reachable_households(store, node_id)
    if kind == "compound":
        sql = ("SELECT DISTINCT r.household_id AS id FROM node_leads l JOIN nodes b ON b.id=l.node_id "
               "JOIN residents r ON r.id=l.resident_id WHERE b.parent_id=? AND r.active=1 "
               "AND r.household_id IS NOT NULL AND r.wecom_userid IS NOT NULL")
    elif kind == "grid":
        sql = ("SELECT DISTINCT r.household_id AS id FROM node_leads l JOIN residents r ON r.id=l.resident_id "
               "WHERE l.node_id=? AND r.active=1 AND r.household_id IS NOT NULL AND r.wecom_userid IS NOT NULL")
    else:
        sql = ("SELECT DISTINCT household_id AS id FROM residents WHERE ? IS NOT NULL AND active=1 AND "
               "roles LIKE '%staff%' AND household_id IS NOT NULL AND wecom_userid IS NOT NULL")
    return [r["id"] for r in store.q(sql, (node_id,))]


def in_scope(store: Store, alert_id: int, household_ids: list[int]) -> list[int]:
    out = []
    for i in range(0, len(household_ids), 500):
        chunk = household_ids[i:i + 500]
        out += [r["id"] for r in store.q(
            f"SELECT id FROM households WHERE id IN ({','.join('?' * len(chunk))}) AND building_id IN "
            "(SELECT building_id FROM alert_scope WHERE alert_id=?)", (*chunk, alert_id))]
    return out


def households_of_accounts(store: Store, alert_id: int, column: str, targets: list[str]) -> list[int]:
    """Households (in the alert's scope) of the people with these account ids."""
    assert column in ("wecom_userid", "oa_openid")
    out = []
    for i in range(0, len(targets), 500):
        chunk = targets[i:i + 500]
        out += [r["id"] for r in store.q(
            f"SELECT DISTINCT r.household_id AS id FROM residents r JOIN households h ON h.id=r.household_id "
            f"JOIN alert_scope s ON s.building_id=h.building_id AND s.alert_id=? "
            f"WHERE r.{column} IN ({','.join('?' * len(chunk))})", (alert_id, *chunk))]
    return out


def deliver(store: Store, alert_id: int, household_ids: list[int], via: str, at: float) -> int:
    store.conn.executemany("INSERT OR IGNORE INTO deliveries (alert_id, household_id, via, at) VALUES (?,?,?,?)",
                           [(alert_id, h, via, at) for h in household_ids])
    return len(household_ids)


def pending_posts_already_sent(store: Store) -> list[dict]:
    return store.q("SELECT h.* FROM hops h JOIN sends s ON s.key = 'hop:' || h.id || ':post' "
                   "WHERE h.state='pending' AND h.method='post' AND s.state='sent' ORDER BY h.id")


def households_of_building(store: Store, building_id: int) -> list[int]:
    return [r["id"] for r in store.q("SELECT id FROM households WHERE building_id=? AND active=1", (building_id,))]
