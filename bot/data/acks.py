"""Acknowledgements, coverage counters (kept by triggers) and who has not answered."""
from __future__ import annotations

import re

from bot.data.store import Store


def get(store: Store, ack_id: int) -> dict | None:
    return store.q1("SELECT * FROM acks WHERE id=?", (ack_id,))


def last_of_resident(store: Store, alert_id: int, resident_id: int) -> dict | None:
    """The resident's newest answer to this alert (index acks_alert_resident: one seek)."""
    return store.q1("SELECT * FROM acks WHERE alert_id=? AND resident_id=? ORDER BY id DESC LIMIT 1",
                    (alert_id, resident_id))


def last_of_household(store: Store, alert_id: int, household_id: int) -> dict | None:
    return store.q1("SELECT * FROM acks WHERE alert_id=? AND household_id=? ORDER BY at DESC, id DESC LIMIT 1",
                    (alert_id, household_id))


def insert(store: Store, *, alert_id: int, household_id: int, resident_id: int | None, channel: str,
           proxy_id: int | None, answer: str, at: float, raw: str, request_id: int | None) -> int:
    return store.conn.execute(
        "INSERT INTO acks (alert_id, household_id, resident_id, channel, by_proxy_id, answer, at, raw,"
        " request_id) VALUES (?,?,?,?,?,?,?,?,?)",
        (alert_id, household_id, resident_id, channel, proxy_id, answer, at, raw, request_id)).lastrowid


def per_building_counts(store: Store, alert_id: int) -> list[tuple]:
    return store.conn.execute(
        "SELECT building_id, households, reached, acked FROM coverage_counts WHERE alert_id=?", (alert_id,)).fetchall()


def help_by_building(store: Store, alert_id: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for (b,) in store.conn.execute(
            "SELECT h.building_id FROM (SELECT DISTINCT household_id FROM acks WHERE alert_id=? AND answer='help') x "
            "JOIN households h ON h.id = x.household_id", (alert_id,)):
        out[b] = out.get(b, 0) + 1
    return out


def tree_nodes(store: Store) -> list[tuple]:
    return store.conn.execute("SELECT id, kind, name, parent_id FROM nodes").fetchall()


def nth_first_ack_at(store: Store, alert_id: int, n: int) -> float | None:
    """When the n-th household (1-based) first acknowledged."""
    return store.scalar("SELECT at FROM ack_firsts WHERE alert_id=? ORDER BY at LIMIT 1 OFFSET ?",
                        (alert_id, n - 1))


def first_ack_times(store: Store, alert_id: int) -> list[float]:
    return [r[0] for r in store.conn.execute("SELECT at FROM ack_firsts WHERE alert_id=? ORDER BY at", (alert_id,))]


def unacked_households(store: Store, alert_id: int, building_id: int | None = None,
                       building_ids: list[int] | None = None) -> list[dict]:
    """Active households in the alert's scope with no ack at all (optionally within buildings)."""
    sql = ("SELECT h.* FROM alert_scope s JOIN alerts al ON al.id = s.alert_id "
           "JOIN households h ON h.building_id = s.building_id "
           "AND h.active=1 WHERE s.alert_id=? AND NOT EXISTS (SELECT 1 FROM acks a WHERE "
           "a.alert_id=s.alert_id AND a.household_id=h.id) AND (al.audience = '' OR EXISTS "
           "(SELECT 1 FROM alert_targets t WHERE t.alert_id = s.alert_id AND t.household_id = h.id))")
    params: tuple = (alert_id,)
    if building_id is not None:
        sql += " AND h.building_id=?"
        params += (building_id,)
    if building_ids is not None:
        if not building_ids:
            return []
        sql += f" AND h.building_id IN ({','.join('?' * len(building_ids))})"
        params += tuple(building_ids)
    return store.q(sql + " ORDER BY h.id", params)


_ROOM_RE = re.compile(r"(?:(?P<building>\d+)\s*栋)?\s*(?:(?P<unit>\d+)\s*单元)?\s*(?P<room>\d{3,4})")


def find_household(store: Store, text: str, building_ids: list[int]) -> list[dict]:
    """Households matching "3栋502", "2单元502" or "502" within the given buildings."""
    m = _ROOM_RE.search(text)
    if not m or not building_ids:
        return []
    sql = (f"SELECT h.*, n.name AS building FROM households h JOIN nodes n ON n.id=h.building_id "
           f"WHERE h.active=1 AND h.room=? AND h.building_id IN ({','.join('?' * len(building_ids))})")
    params = [m.group("room"), *building_ids]
    if m.group("building"):
        sql += " AND n.name=?"
        params.append(f"{m.group('building')}栋")
    if m.group("unit"):
        sql += " AND h.unit=?"
        params.append(f"{m.group('unit')}单元")
    compounds = [c["id"] for c in store.q("SELECT id, name FROM nodes WHERE kind='compound'") if c["name"] in text]
    if compounds:  # "金湖花园3栋502": the compound narrows it down
        sql += f" AND n.parent_id IN ({','.join('?' * len(compounds))})"
        params.extend(compounds)
    return store.q(sql, params)
