"""三单制 / 微心愿 as rows: requests and wishes opened for claiming, who claimed what, and the
month's figures per volunteer. The moves themselves (open, claim, release) are compare-and-set
UPDATEs through bot.data.requests.move (the request lifecycle's one write path).
"""
from __future__ import annotations

from typing import Iterable

from bot.data.store import Store

_COLS = ("r.*, h.label AS household, coalesce(c.name, '') || coalesce(b.name, '') AS building, "
         "p.name AS claimant, p.phone AS claimant_phone, f.name AS filer, f.phone AS filer_phone")
_FROM = ("FROM requests r LEFT JOIN households h ON h.id = r.household_id "
         "LEFT JOIN nodes b ON b.id = r.building_id LEFT JOIN nodes c ON c.id = b.parent_id "
         "LEFT JOIN residents p ON p.id = r.claimed_by LEFT JOIN residents f ON f.id = r.resident_id")


def _in(col: str, ids: Iterable[int] | None, params: list) -> str:
    """`AND (col IN ids OR col IS NULL)`, or nothing for None (everywhere)."""
    if ids is None:
        return ""
    ids = sorted(ids)
    params += ids
    return f" AND ({col} IN ({','.join('?' * len(ids)) or 'NULL'}) OR {col} IS NULL)"


def open_claims(store: Store, buildings: Iterable[int] | None) -> list[dict]:
    """Requests open for claiming in the given buildings (None = all; a request without a
    building is everyone's), oldest opening first."""
    params: list = []
    sql = (f"SELECT {_COLS} {_FROM} WHERE r.claim_state = 'open' AND r.state = 'accepted'"
           + _in("r.building_id", buildings, params) + " ORDER BY r.claim_opened_at, r.id")
    return store.q(sql, params)


def claimed(store: Store, buildings: Iterable[int] | None, done_since: float) -> list[dict]:
    """Claimed requests in the given buildings: those still being done, and those resolved
    since `done_since`; the newest claim first."""
    params: list = [done_since]
    sql = (f"SELECT {_COLS} {_FROM} WHERE r.claim_state = 'claimed' AND (r.resolved_at IS NULL "
           "OR r.resolved_at >= ?)" + _in("r.building_id", buildings, params)
           + " ORDER BY r.claimed_at DESC, r.id DESC")
    return store.q(sql, params)


def of_claimant(store: Store, person_id: int, *, open_only: bool = False,
                since: float | None = None, until: float | None = None) -> list[dict]:
    """What this person claimed: still claimed (open_only), or completed within [since, until)."""
    params: list = [person_id]
    sql = f"SELECT {_COLS} {_FROM} WHERE r.claimed_by = ?"
    if open_only:
        sql += " AND r.claim_state = 'claimed' AND r.state IN ('assigned', 'in_progress')"
    if since is not None:
        sql += " AND r.resolved_at >= ? AND r.resolved_at < ?"
        params += [since, until]
    return store.q(sql + " ORDER BY coalesce(r.resolved_at, r.claimed_at), r.id", params)


def get(store: Store, request_id: int) -> dict | None:
    return store.q1(f"SELECT {_COLS} {_FROM} WHERE r.id = ?", (request_id,))


def month_figures(store: Store, since: float, until: float,
                  buildings: Iterable[int] | None) -> list[dict]:
    """Per claimant: claims completed in [since, until) (resolved then, and not reopened since),
    their hours and average rating (rated ones only), plus what they hold claimed right now."""
    params: list = [since, until]
    area = _in("r.building_id", buildings, params)
    return store.q(
        "SELECT p.id, p.name, p.phone, p.roles, h.label AS household, "
        "count(r.id) AS completed, coalesce(sum(r.hours), 0) AS hours, "
        "avg(r.rating) AS rating, count(r.rating) AS rated, "
        "(SELECT count(*) FROM requests o WHERE o.claimed_by = p.id "
        " AND o.state IN ('assigned', 'in_progress')) AS holding "
        "FROM requests r JOIN residents p ON p.id = r.claimed_by "
        "LEFT JOIN households h ON h.id = p.household_id "
        "WHERE r.resolved_at >= ? AND r.resolved_at < ? "
        "AND r.state IN ('resolved', 'rated', 'closed')" + area
        + " GROUP BY p.id ORDER BY completed DESC, hours DESC, p.name", params)


def volunteers_with_home(store: Store) -> list[dict]:
    """Active people with their household's building id (None without one) and node."""
    return store.q("SELECT r.*, h.building_id AS building_id FROM residents r "
                   "LEFT JOIN households h ON h.id = r.household_id WHERE r.active = 1 "
                   "ORDER BY r.id")


def first_in_household(store: Store, household_id: int) -> list[dict]:
    """A household's active people, the ones reachable on WeChat first."""
    return store.q("SELECT * FROM residents WHERE household_id = ? AND active = 1 ORDER BY "
                   "(wecom_userid IS NULL AND oa_openid IS NULL), id", (household_id,))
