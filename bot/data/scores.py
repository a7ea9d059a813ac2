"""流动小红旗: the rows a building's month is scored from, the cross-evaluation scores compound
branches enter (peer_scores) and the months published (score_months). What the numbers mean and
how they are weighed is bot.domain.scores; here are only the queries.

Every query takes the month as [start, end) epoch seconds (bot.domain.scores works them out in the
community's time zone) except peer_scores and score_months, which are keyed by 'YYYY-MM'.
"""
from __future__ import annotations

import json

from bot.data.store import Store

# a real warning that asked households to answer: drills (status 'exercise'), notices and lifts are not
_REAL_WARNING = ("a.kind = 'warning' AND a.status = 'actual' AND a.action IN ('issue','update') "
                 "AND a.created_at >= ? AND a.created_at < ?")


def buildings(store: Store) -> list[dict]:
    """Every building with active households: id, name, path, its compound and grid (names and ids)."""
    return store.q(
        "SELECT b.id, b.name, b.path, c.id AS compound_id, c.name AS compound, g.id AS grid_id, g.name AS grid, "
        "(SELECT COUNT(*) FROM households h WHERE h.building_id = b.id AND h.active = 1) AS households "
        "FROM nodes b LEFT JOIN nodes c ON c.id = b.parent_id AND c.kind = 'compound' "
        "LEFT JOIN nodes g ON g.id = c.parent_id AND g.kind = 'grid' "
        "WHERE b.kind = 'building' AND EXISTS (SELECT 1 FROM households h WHERE h.building_id = b.id AND h.active = 1) "
        "ORDER BY b.id")


def ack_coverage(store: Store, start: float, end: float) -> dict[int, dict]:
    """building -> {targeted, acked}: households the month's real warnings targeted, and how many answered."""
    rows = store.q(
        "SELECT cc.building_id, SUM(cc.households) AS targeted, SUM(MIN(cc.acked, cc.households)) AS acked "
        f"FROM coverage_counts cc JOIN alerts a ON a.id = cc.alert_id WHERE {_REAL_WARNING} "
        "AND cc.households > 0 GROUP BY cc.building_id", (start, end))
    return {r["building_id"]: r for r in rows}


def ack_delays(store: Store, start: float, end: float) -> dict[int, list[float]]:
    """building -> seconds from each of the month's real warnings to each household's first answer."""
    out: dict[int, list[float]] = {}
    for r in store.q(
            "SELECT f.building_id, f.at - a.created_at AS delay FROM ack_firsts f "
            f"JOIN alerts a ON a.id = f.alert_id WHERE {_REAL_WARNING} "
            "AND EXISTS (SELECT 1 FROM coverage_counts cc WHERE cc.alert_id = f.alert_id "
            "AND cc.building_id = f.building_id AND cc.households > 0)", (start, end)):
        out.setdefault(r["building_id"], []).append(max(0.0, r["delay"]))
    return out


def request_counts(store: Store, start: float, end: float) -> dict[int, dict]:
    """building -> {reported, resolved, rated, rating}: residents' requests (not wishes) filed in the month."""
    rows = store.q(
        "SELECT building_id, COUNT(*) AS reported, SUM(resolved_at IS NOT NULL) AS resolved, "
        "COUNT(rating) AS rated, AVG(rating) AS rating FROM requests "
        "WHERE kind = 'request' AND building_id IS NOT NULL AND created_at >= ? AND created_at < ? "
        "GROUP BY building_id", (start, end))
    return {r["building_id"]: r for r in rows}


def turnout(store: Store, start: float, end: float) -> dict[int, dict]:
    """building -> {voters, voted}: households that could vote in consultations closed (or due to
    close) in the month, and how many of them voted. Cancelled consultations are not counted."""
    rows = store.q(
        "SELECT v.building_id, COUNT(*) AS voters, "
        "SUM(EXISTS (SELECT 1 FROM ballots b WHERE b.consultation_id = v.consultation_id "
        "AND b.household_id = v.household_id)) AS voted "
        "FROM consultation_voters v JOIN consultations c ON c.id = v.consultation_id "
        "WHERE c.state != 'cancelled' AND COALESCE(c.closed_at, c.closes_at) >= ? "
        "AND COALESCE(c.closed_at, c.closes_at) < ? GROUP BY v.building_id", (start, end))
    return {r["building_id"]: r for r in rows}


def claims(store: Store, start: float, end: float, default_h: float) -> dict[int, dict]:
    """building -> {claims, hours}: requests and wishes claimed by residents living in the building
    and resolved in the month; a claim without recorded hours counts `default_h`."""
    rows = store.q(
        "SELECT h.building_id, COUNT(*) AS claims, SUM(COALESCE(r.hours, ?)) AS hours FROM requests r "
        "JOIN residents p ON p.id = r.claimed_by JOIN households h ON h.id = p.household_id "
        "WHERE r.claim_state = 'claimed' AND r.resolved_at >= ? AND r.resolved_at < ? "
        "GROUP BY h.building_id", (default_h, start, end))
    return {r["building_id"]: r for r in rows}


def peer_averages(store: Store, month: str) -> dict[int, dict[str, dict]]:
    """building -> category -> {avg, evaluators}: one row per evaluator (the table keeps their newest)."""
    out: dict[int, dict[str, dict]] = {}
    for r in store.q("SELECT building_id, category, AVG(score) AS avg, COUNT(*) AS evaluators "
                     "FROM peer_scores WHERE month = ? GROUP BY building_id, category", (month,)):
        out.setdefault(r["building_id"], {})[r["category"]] = {"avg": r["avg"], "evaluators": r["evaluators"]}
    return out


def put_peer_score(store: Store, month: str, building_id: int, category: str, by_id: int, score: float,
                   at: float) -> None:
    """An evaluator's score; entering again replaces theirs."""
    store.conn.execute("INSERT OR REPLACE INTO peer_scores (month, building_id, category, by_id, score, at) "
                       "VALUES (?,?,?,?,?,?)", (month, building_id, category, by_id, score, at))


def compounds_led(store: Store, resident_id: int) -> list[int]:
    """Compound nodes this resident leads (lead or backup)."""
    return [r["id"] for r in store.q("SELECT n.id FROM node_leads l JOIN nodes n ON n.id = l.node_id "
                                     "WHERE l.resident_id = ? AND n.kind = 'compound' ORDER BY n.id",
                                     (resident_id,))]


def find_buildings(store: Store, word: str) -> list[dict]:
    """Buildings a word names: a path ("大龙一区/3栋", or its tail), a compound and building run
    together ("大龙一区3栋"), or a building's name ("3栋", possibly several)."""
    word = word.strip()
    like = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return store.q(
        "SELECT b.id, b.name, b.path, c.id AS compound_id, c.name AS compound FROM nodes b "
        "LEFT JOIN nodes c ON c.id = b.parent_id WHERE b.kind = 'building' AND "
        "(b.path = ? OR b.path LIKE ? ESCAPE '\\' OR b.name = ? OR c.name || b.name = ?) ORDER BY b.id",
        (word, f"%/{like}", word, word))


def building(store: Store, building_id: int) -> dict | None:
    return store.q1("SELECT b.id, b.name, b.path, c.id AS compound_id, c.name AS compound FROM nodes b "
                    "LEFT JOIN nodes c ON c.id = b.parent_id WHERE b.kind = 'building' AND b.id = ?",
                    (building_id,))


def published(store: Store, month: str) -> dict | None:
    """A published month: its frozen ranking (decoded), when, by whom, the notice that carried it."""
    row = store.q1("SELECT * FROM score_months WHERE month = ?", (month,))
    if row is not None:
        row["ranking"] = json.loads(row["ranking"])
    return row


def publish(store: Store, month: str, ranking: dict, at: float, by_id: int | None, alert_id: int | None) -> None:
    store.conn.execute("INSERT INTO score_months (month, ranking, published_at, published_by, alert_id) "
                       "VALUES (?,?,?,?,?)",
                       (month, json.dumps(ranking, ensure_ascii=False), at, by_id, alert_id))
