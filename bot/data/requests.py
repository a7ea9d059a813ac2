"""Residents' requests as rows: the `requests` table, its media, its events, and the clarifying
question's conversation state. Every SQL statement the requests workflow runs lives here.

Writes that move a request along its lifecycle are compare-and-set UPDATEs (`WHERE state = ?`),
so two leads acting at once, or two processes firing the same reminder, cannot both win: the
caller gets False and decides what that means.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from bot.data.store import Store

OPEN = ("filed", "accepted", "assigned", "in_progress")
# the states a reminder may still be waiting on (open ones, and resolved awaiting a rating)
WAITING = OPEN + ("resolved",)
FILTER_COLUMNS = ("state", "category", "urgency", "building_id")


# -- requests ------------------------------------------------------------------------------
def get(store: Store, request_id: int) -> dict | None:
    return store.q1("SELECT * FROM requests WHERE id = ?", (request_id,))


def id_by_source_key(store: Store, key: str) -> int | None:
    """The request filed from this inbound message (its dedupe key), if any."""
    return store.scalar("SELECT id FROM requests WHERE source_key = ?", (key,))


def insert(store: Store, row: dict[str, Any]) -> int:
    """One new request row; returns its id. Call inside store.transaction() with its media."""
    return store.db["requests"].insert(row).last_pk


def search(store: Store, *, led: Iterable[int] | None, viewer_id: int | None,
           filer_id: int | None = None, states: Iterable[str] | None = None,
           filters: dict[str, Any] | None = None, limit: int | None = None) -> list[dict]:
    """Requests newest first. `led` None = every request (staff); otherwise only those filed by
    or assigned to `viewer_id`, or in one of the `led` buildings. `filters` maps a column of
    FILTER_COLUMNS to the value it must equal (None = any)."""
    conds, params = [], []
    if led is not None:
        led = sorted(led)
        marks = ",".join("?" * len(led)) or "NULL"
        conds.append(f"(resident_id = ? OR assignee_id = ? OR building_id IN ({marks}))")
        params += [viewer_id, viewer_id, *led]
    if filer_id is not None:
        conds.append("resident_id = ?")
        params.append(filer_id)
    if states is not None:
        states = list(states)
        conds.append(f"state IN ({','.join('?' * len(states)) or 'NULL'})")
        params += states
    for col, value in (filters or {}).items():
        if col not in FILTER_COLUMNS:
            raise ValueError(f"cannot filter requests by {col!r}")
        if value is not None:
            conds.append(f"{col} = ?")
            params.append(value)
    where = " AND ".join(conds) or "1"
    sql = f"SELECT * FROM requests WHERE {where} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return store.q(sql, params)


def latest_open_since(store: Store, resident_id: int, since: float) -> dict | None:
    """The resident's newest open request filed at or after `since`."""
    return store.q1(
        f"SELECT * FROM requests WHERE resident_id = ? AND created_at >= ? AND state IN "
        f"({','.join('?' * len(OPEN))}) ORDER BY id DESC LIMIT 1", (resident_id, since, *OPEN))


def waiting(store: Store) -> list[dict]:
    """Every request a reminder may still be due for."""
    return store.q(f"SELECT * FROM requests WHERE state IN ({','.join('?' * len(WAITING))}) "
                   "ORDER BY id", WAITING)


def of_household(store: Store, household_id: int) -> list[dict]:
    return store.q("SELECT * FROM requests WHERE household_id = ? ORDER BY id DESC", (household_id,))


def place(store: Store, request_id: int) -> dict:
    """The household label, building and compound names of a request ({} when unknown)."""
    return store.q1(
        "SELECT h.label AS household, b.name AS building, c.name AS compound FROM requests r "
        "LEFT JOIN households h ON h.id = r.household_id LEFT JOIN nodes b ON b.id = r.building_id "
        "LEFT JOIN nodes c ON c.id = b.parent_id WHERE r.id = ?", (request_id,)) or {}


def move(store: Store, request_id: int, from_state: str, sets: dict[str, Any],
         where: dict[str, Any] | None = None) -> bool:
    """Compare-and-set: apply `sets` only if the request is still in `from_state` (and each
    column of `where` still holds its value; None = IS NULL), e.g. a claim still open."""
    cols = list(sets)
    conds, params = "", []
    for col, value in (where or {}).items():
        if not col.isidentifier():
            raise ValueError(f"bad column {col!r}")
        conds += f" AND {col} IS NULL" if value is None else f" AND {col} = ?"
        params += [] if value is None else [value]
    cur = store.conn.execute(
        f"UPDATE requests SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ? AND state = ?"
        + conds, (*(sets[c] for c in cols), request_id, from_state, *params))
    return cur.rowcount == 1


def raise_level(store: Store, request_id: int, state: str, from_level: int, to_level: int) -> bool:
    """Compare-and-set the escalation level (a reminder fires once per level)."""
    cur = store.conn.execute(
        "UPDATE requests SET escalation_level = ? WHERE id = ? AND escalation_level = ? "
        "AND state = ?", (to_level, request_id, from_level, state))
    return cur.rowcount == 1


def mark_rate_asked(store: Store, request_id: int, at: float) -> bool:
    cur = store.conn.execute(
        "UPDATE requests SET rate_asked_at = ? WHERE id = ? AND state = 'resolved' "
        "AND rate_asked_at IS NULL", (at, request_id))
    return cur.rowcount == 1


def close_unrated(store: Store, request_id: int, at: float) -> bool:
    cur = store.conn.execute(
        "UPDATE requests SET state = 'closed', closed_at = ? WHERE id = ? AND state = 'resolved' "
        "AND rate_asked_at IS NOT NULL", (at, request_id))
    return cur.rowcount == 1


# -- media ---------------------------------------------------------------------------------
def insert_media(store: Store, request_id: int, kind: str, media_id: str, meta: dict | None,
                 at: float) -> None:
    store.db["request_media"].insert({
        "request_id": request_id, "kind": kind, "media_id": media_id,
        "meta": json.dumps(meta or {}, ensure_ascii=False), "at": at})


def request_of_media(store: Store, media_id: str) -> int | None:
    return store.scalar("SELECT request_id FROM request_media WHERE media_id = ?", (media_id,))


def media(store: Store, request_id: int) -> list[dict]:
    """A request's photos and voice notes, oldest first, meta decoded."""
    rows = store.q("SELECT id, kind, media_id, meta, at FROM request_media WHERE request_id = ? "
                   "ORDER BY id", (request_id,))
    return [{**m, "meta": json.loads(m["meta"]) if m["meta"] else {}} for m in rows]


def media_count(store: Store, request_id: int) -> int:
    return store.scalar("SELECT COUNT(*) FROM request_media WHERE request_id = ?", (request_id,))


# -- the audit log -------------------------------------------------------------------------
def log_event(store: Store, at: float, kind: str, request_id: int, actor_id: int | None,
              **data) -> int:
    """Append to the audit log and return the event id (send keys are derived from it)."""
    store.log(at, kind, "request", request_id, actor_id, **data)
    return store.scalar("SELECT last_insert_rowid()")


def history(store: Store, request_id: int) -> list[dict]:
    """The request's events with the actor's name, oldest first (data still JSON text)."""
    return store.q("SELECT e.id, e.at, e.kind, e.actor_id, p.name AS actor, e.data FROM events e "
                   "LEFT JOIN residents p ON p.id = e.actor_id WHERE e.ref_type = 'request' "
                   "AND e.ref_id = ? ORDER BY e.id", (request_id,))


# -- people the workflow needs (not in bot.data.people / bot.data.org yet) -----------------
def leads_of(store: Store, node_id: int) -> list[dict]:
    """Every active lead of a node, lead before backup."""
    return store.q("SELECT r.* FROM node_leads l JOIN residents r ON r.id = l.resident_id "
                   "WHERE l.node_id = ? AND r.active = 1 ORDER BY l.rank, r.id", (node_id,))


def active_named(store: Store, name: str) -> list[dict]:
    return store.q("SELECT * FROM residents WHERE name = ? AND active = 1 ORDER BY id", (name,))


def active_with_building(store: Store) -> list[dict]:
    """Active people with their household's building id (None without a home), by name."""
    return store.q("SELECT r.*, h.building_id AS building_id, h.label AS label FROM residents r "
                   "LEFT JOIN households h ON h.id = r.household_id WHERE r.active = 1 "
                   "ORDER BY r.name, r.id")


def buildings_named(store: Store) -> list[dict]:
    """Every building with its compound's name in front ("一区3栋"), in tree order."""
    return store.q("SELECT b.id, coalesce(c.name, '') || b.name AS name FROM nodes b "
                   "LEFT JOIN nodes c ON c.id = b.parent_id WHERE b.kind = 'building' "
                   "ORDER BY c.path, b.id")


# -- the register browser (dashboard) ------------------------------------------------------
def find_people(store: Store, term: str) -> list[dict]:
    like = f"%{term}%"
    return store.q(
        "SELECT r.id, r.name, r.roles, r.vulnerable, r.phone, r.household_id, h.label, "
        "h.building_id FROM residents r LEFT JOIN households h ON h.id = r.household_id "
        "WHERE r.active = 1 AND (r.name LIKE ? OR r.phone LIKE ?) ORDER BY r.name", (like, like))


def find_households(store: Store, term: str) -> list[dict]:
    return store.q(
        "SELECT h.id, h.label, h.building_id, (SELECT COUNT(*) FROM residents r WHERE "
        "r.household_id = h.id AND r.active = 1) AS people FROM households h WHERE h.active = 1 "
        "AND h.label LIKE ? ORDER BY h.label", (f"%{term}%",))


def household_card(store: Store, household_id: int) -> dict | None:
    return store.q1("SELECT h.*, b.name AS building, c.name AS compound FROM households h "
                    "JOIN nodes b ON b.id = h.building_id LEFT JOIN nodes c ON c.id = b.parent_id "
                    "WHERE h.id = ?", (household_id,))


def household_people(store: Store, household_id: int) -> list[dict]:
    """Everyone registered in a household, the active ones first (leavers stay visible)."""
    return store.q("SELECT * FROM residents WHERE household_id = ? ORDER BY active DESC, id",
                   (household_id,))


def household_acks(store: Store, household_id: int) -> list[dict]:
    return store.q(
        "SELECT k.*, a.type, a.colour, a.action, a.created_at AS alert_at, r.name AS who, "
        "p.name AS proxy FROM acks k JOIN alerts a ON a.id = k.alert_id "
        "LEFT JOIN residents r ON r.id = k.resident_id LEFT JOIN residents p ON p.id = k.by_proxy_id "
        "WHERE k.household_id = ? ORDER BY k.at DESC", (household_id,))


# -- the clarifying question (table `conversations`) ----------------------------------------
def claim_conversation(store: Store, user_key: str, state: str, data: dict, expires_at: float,
                       now: float) -> bool:
    """Set this user's conversation state unless another concern holds a live one.
    True when ours was written."""
    cur = store.conn.execute(
        "INSERT INTO conversations (user_key, state, data, expires_at) VALUES (?,?,?,?) "
        "ON CONFLICT(user_key) DO UPDATE SET state = excluded.state, data = excluded.data, "
        "expires_at = excluded.expires_at "
        "WHERE conversations.state = excluded.state OR conversations.expires_at <= ?",
        (user_key, state, json.dumps(data, ensure_ascii=False), expires_at, now))
    return cur.rowcount == 1


def has_conversation(store: Store, user_key: str, state: str, now: float) -> bool:
    return store.scalar("SELECT 1 FROM conversations WHERE user_key = ? AND state = ? "
                        "AND expires_at > ?", (user_key, state, now)) == 1


def take_conversation(store: Store, user_key: str, state: str, now: float) -> dict | None:
    """This user's live conversation in `state` (its data), removed as it is read."""
    with store.transaction():
        row = store.q1("SELECT data FROM conversations WHERE user_key = ? AND state = ? "
                       "AND expires_at > ?", (user_key, state, now))
        if row is None:
            return None
        store.conn.execute("DELETE FROM conversations WHERE user_key = ? AND state = ?",
                           (user_key, state))
    return json.loads(row["data"]) if row["data"] else {}
