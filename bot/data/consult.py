"""议事 / 定事: consultations, their frozen electorate and the ballots cast (append-only: the newest
ballot of a household counts)."""
from __future__ import annotations

import json

from bot.data.store import Store

# the newest ballot of each household of one consultation
_CURRENT = ("SELECT b.* FROM ballots b WHERE b.consultation_id=? AND b.id = (SELECT MAX(b2.id) FROM ballots b2 "
            "WHERE b2.consultation_id=b.consultation_id AND b2.household_id=b.household_id)")


def create(store: Store, *, question: str, options: list[str], kind: str, electorate: str, basis: str,
           threshold_num: int, threshold_den: int, secrecy: str, scope: list[int], opened_by: int | None,
           created_at: float, closes_at: float, unit: str = "") -> int:
    return store.conn.execute(
        "INSERT INTO consultations (question, options, kind, electorate, basis, threshold_num, threshold_den,"
        " secrecy, scope, unit, state, opened_by, created_at, closes_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,'open',?,?,?)",
        (question, json.dumps(options, ensure_ascii=False), kind, electorate, basis, threshold_num, threshold_den,
         secrecy, json.dumps(scope), unit, opened_by, created_at, closes_at)).lastrowid


def add_voters(store: Store, consultation_id: int, voters: list[tuple[int, int, float]]) -> None:
    """(household_id, building_id, weight) rows: the electorate, fixed when the consultation opens."""
    store.conn.executemany(
        "INSERT INTO consultation_voters (consultation_id, household_id, building_id, weight) VALUES (?,?,?,?)",
        [(consultation_id, h, b, w) for h, b, w in voters])


def set_alert(store: Store, consultation_id: int, column: str, alert_id: int) -> None:
    assert column in ("alert_id", "result_alert_id")
    store.conn.execute(f"UPDATE consultations SET {column}=? WHERE id=?", (alert_id, consultation_id))


def households_in(store: Store, buildings: list[int], unit: str = "") -> list[dict]:
    """Active households of these buildings (of one unit, when given) with their area and whether an
    active owner lives there."""
    out: list[dict] = []
    for i in range(0, len(buildings), 500):
        chunk = buildings[i:i + 500]
        out += store.q(
            f"SELECT h.id, h.building_id, h.label, h.area_m2, EXISTS (SELECT 1 FROM residents r WHERE "
            f"r.household_id=h.id AND r.active=1 AND r.owner=1) AS has_owner FROM households h "
            f"WHERE h.active=1 AND h.building_id IN ({','.join('?' * len(chunk))})"
            f"{' AND h.unit=?' if unit else ''} ORDER BY h.id", [*chunk, *([unit] if unit else [])])
    return out


def units_of(store: Store, building_id: int) -> list[str]:
    """The units (单元) of a building's active households."""
    return [r["unit"] for r in store.q("SELECT DISTINCT unit FROM households WHERE building_id=? AND active=1 "
                                       "AND unit != '' ORDER BY unit", (building_id,))]


def get(store: Store, consultation_id: int) -> dict | None:
    return store.q1("SELECT * FROM consultations WHERE id=?", (consultation_id,))


def by_alert(store: Store, alert_id: int) -> dict | None:
    """The consultation this notice carries (its alert_id), if any."""
    return store.q1("SELECT * FROM consultations WHERE alert_id=?", (alert_id,))


def listing(store: Store, buildings: list[int] | None) -> list[dict]:
    """Every consultation, newest first; with `buildings`, only those with a voter there."""
    if buildings is None:
        return store.q("SELECT * FROM consultations ORDER BY id DESC")
    if not buildings:
        return []
    return store.q(f"SELECT * FROM consultations c WHERE EXISTS (SELECT 1 FROM consultation_voters v WHERE "
                   f"v.consultation_id=c.id AND v.building_id IN ({','.join('?' * len(buildings))})) "
                   f"ORDER BY c.id DESC", buildings)


def for_household(store: Store, household_id: int, *, since: float) -> list[dict]:
    """Consultations this household votes in that are open, or closed/cancelled after `since`;
    open ones first, then newest."""
    # driven from the few live consultations, each probed by the voters' primary key: every short
    # chat message of a resident asks this, so it must not scan the voters of every consultation
    return store.q(
        "SELECT c.* FROM consultations c WHERE (c.state='open' OR c.closed_at >= ?) AND EXISTS "
        "(SELECT 1 FROM consultation_voters v WHERE v.consultation_id=c.id AND v.household_id=?) "
        "ORDER BY c.state='open' DESC, c.id DESC", (since, household_id))


def voter(store: Store, consultation_id: int, household_id: int) -> dict | None:
    return store.q1("SELECT v.*, h.label FROM consultation_voters v JOIN households h ON h.id=v.household_id "
                    "WHERE v.consultation_id=? AND v.household_id=?", (consultation_id, household_id))


def voters(store: Store, consultation_id: int) -> list[dict]:
    """The electorate with each household's current ballot (NULL columns when it has not voted),
    its label, building, compound and who cast the ballot."""
    return store.q(
        f"""SELECT v.household_id, v.building_id, v.weight, h.label, h.room, h.unit, n.name AS building,
                   p.name AS compound, b.id AS ballot_id, b.choice, b.channel, b.at, b.resident_id,
                   b.by_proxy_id, r.name AS voter_name, x.name AS proxy_name
            FROM consultation_voters v JOIN households h ON h.id=v.household_id
            JOIN nodes n ON n.id=v.building_id LEFT JOIN nodes p ON p.id=n.parent_id
            LEFT JOIN ({_CURRENT}) b ON b.household_id=v.household_id
            LEFT JOIN residents r ON r.id=b.resident_id LEFT JOIN residents x ON x.id=b.by_proxy_id
            WHERE v.consultation_id=? ORDER BY v.building_id, h.id""", (consultation_id, consultation_id))


def current_ballot(store: Store, consultation_id: int, household_id: int) -> dict | None:
    return store.q1("SELECT * FROM ballots WHERE consultation_id=? AND household_id=? ORDER BY id DESC LIMIT 1",
                    (consultation_id, household_id))


def add_ballot(store: Store, *, consultation_id: int, household_id: int, choice: int, resident_id: int | None,
               by_proxy_id: int | None, channel: str, at: float) -> int:
    return store.conn.execute(
        "INSERT INTO ballots (consultation_id, household_id, choice, resident_id, by_proxy_id, channel, at) "
        "VALUES (?,?,?,?,?,?,?)",
        (consultation_id, household_id, choice, resident_id, by_proxy_id, channel, at)).lastrowid


def close(store: Store, consultation_id: int, *, state: str, result: dict | None, at: float) -> bool:
    """Open -> closed/cancelled (compare-and-set: a second closer changes nothing)."""
    return store.conn.execute(
        "UPDATE consultations SET state=?, result=?, closed_at=? WHERE id=? AND state='open'",
        (state, json.dumps(result, ensure_ascii=False) if result is not None else None, at,
         consultation_id)).rowcount == 1


def mark_reminded(store: Store, consultation_id: int, at: float) -> bool:
    return store.conn.execute("UPDATE consultations SET reminded_at=? WHERE id=? AND reminded_at IS NULL "
                              "AND state='open'", (at, consultation_id)).rowcount == 1


def open_ones(store: Store) -> list[dict]:
    return store.q("SELECT * FROM consultations WHERE state='open' ORDER BY closes_at, id")


def silent_people(store: Store, consultation_id: int, *, owners_only: bool) -> list[dict]:
    """Active residents of voter households that have cast no ballot (owners only when asked)."""
    return store.q(
        "SELECT r.id, r.name, r.household_id, r.wecom_userid, r.oa_openid FROM consultation_voters v "
        "JOIN residents r ON r.household_id=v.household_id AND r.active=1 "
        "WHERE v.consultation_id=? AND (? = 0 OR r.owner=1) AND NOT EXISTS (SELECT 1 FROM ballots b "
        "WHERE b.consultation_id=v.consultation_id AND b.household_id=v.household_id) ORDER BY r.id",
        (consultation_id, int(owners_only)))


def household_of(store: Store, household_id: int) -> dict | None:
    return store.q1("SELECT h.*, n.name AS building FROM households h JOIN nodes n ON n.id=h.building_id "
                    "WHERE h.id=?", (household_id,))


def owners_of(store: Store, household_id: int) -> list[dict]:
    """The household's active owner residents (产权人), in register order."""
    return store.q("SELECT * FROM residents WHERE household_id=? AND active=1 AND owner=1 ORDER BY id",
                   (household_id,))


def building_names(store: Store, building_ids: list[int]) -> dict[int, str]:
    """Building id -> 'compound building' (e.g. 大龙一区1栋)."""
    if not building_ids:
        return {}
    rows = store.q(f"SELECT n.id, n.name, p.name AS parent FROM nodes n LEFT JOIN nodes p ON p.id=n.parent_id "
                   f"WHERE n.id IN ({','.join('?' * len(building_ids))})", building_ids)
    return {r["id"]: f"{r['parent'] or ''}{r['name']}" for r in rows}
