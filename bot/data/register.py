"""The register's rows: nodes, households, residents, leads and chat groups as an import writes
them, and the counts the roster prints.

The import (bot/domain/register.py) decides what changes; this module only reads and writes.
Reads that can be large (every resident) are generators over a cursor, so a caller that keeps
only what it needs never holds the whole table twice. Writes go in batches: sqlite-utils sizes
each multi-row INSERT under SQLite's variable limit, and id lists are never spliced into a
statement ("too many SQL variables" at a few hundred thousand rows).
"""
from __future__ import annotations

import sqlite3
from typing import Iterable, Iterator

from bot.data.store import Store

BATCH = 1000  # rows per multi-row statement; sqlite-utils lowers it to fit the variable limit

RESIDENT_COLUMNS = ("id", "key", "name", "phone", "household_id", "node_id", "roles", "vulnerable",
                    "social_worker_id", "wecom_userid", "oa_openid", "owner", "active", "updated_at")


# -- reading what is there --------------------------------------------------------------------------
def node_paths(store: Store) -> dict[str, int]:
    """Every node's path -> id (a few thousand rows even for a very large community)."""
    return {path: nid for nid, path in store.conn.execute("SELECT id, path FROM nodes")}


def max_id(store: Store, table: str) -> int:
    if table not in ("residents", "households", "nodes"):  # a table name is never a parameter
        raise ValueError(table)
    return store.conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]


def iter_residents(store: Store) -> Iterator[tuple]:
    """Every resident as a tuple in RESIDENT_COLUMNS order, streamed from the cursor."""
    yield from store.conn.execute(f"SELECT {', '.join(RESIDENT_COLUMNS)} FROM residents")


def iter_households(store: Store) -> Iterator[tuple]:
    """(id, building_id, unit, room, label, active, area_m2, steward_id) of every household, streamed."""
    yield from store.conn.execute(
        "SELECT id, building_id, unit, room, label, active, area_m2, steward_id FROM households")


def lead_links(store: Store) -> set[tuple[int, int, int]]:
    """(node_id, resident_id, rank) of every lead."""
    return set(store.conn.execute("SELECT node_id, resident_id, rank FROM node_leads"))


def active_groups(store: Store) -> list[tuple[int, int, str]]:
    """(id, node_id, name) of every active chat group."""
    return list(store.conn.execute("SELECT id, node_id, name FROM chat_groups WHERE active=1"))


def lead_among(store: Store, node_id: int, candidates: list[int]) -> int | None:
    """The best-ranked lead of this node among these people (a handful of same-named people)."""
    marks = ",".join("?" * len(candidates))
    row = store.conn.execute(f"SELECT resident_id FROM node_leads WHERE node_id=? AND resident_id "
                             f"IN ({marks}) ORDER BY rank LIMIT 1", (node_id, *candidates)).fetchone()
    return row[0] if row else None


def attached_under(store: Store, candidates: list[int], path_pattern: str) -> list[int]:
    """Those of these people whose node's path matches the LIKE pattern."""
    marks = ",".join("?" * len(candidates))
    return [r[0] for r in store.conn.execute(
        f"SELECT r.id FROM residents r JOIN nodes n ON n.id=r.node_id WHERE r.id IN ({marks}) "
        "AND n.path LIKE ?", (*candidates, path_pattern))]


def active_people_named(store: Store, name: str) -> list[int]:
    """Ids of the active residents with exactly this name."""
    return [r[0] for r in store.conn.execute("SELECT id FROM residents WHERE name=? AND active=1", (name,))]


# -- writing ------------------------------------------------------------------------------------
def add_node(store: Store, kind: str, name: str, parent_id: int | None, path: str) -> int:
    return store.conn.execute("INSERT INTO nodes (kind, name, parent_id, path) VALUES (?,?,?,?)",
                              (kind, name, parent_id, path)).lastrowid


def insert_households(store: Store, records: list[dict]) -> None:
    """New households, ids chosen by the caller (the import holds the write lock)."""
    if records:
        store.db["households"].insert_all(records, batch_size=BATCH)


def update_households(store: Store, records: list[dict]) -> None:
    """Households whose label changed or that come back: full rows, matched on id."""
    if records:
        store.db["households"].upsert_all(records, pk="id", batch_size=BATCH)


def write_residents(store: Store, new: list[dict], changed: list[dict]) -> list[tuple[dict, str]]:
    """Insert new residents (ids chosen by the caller) and overwrite changed ones (full rows).

    Returns the records that could not be written with the constraint they broke (a WeCom
    user id or OpenID that someone else already holds). The batch is tried whole first; only
    when it fails is it redone row by row, each in its own savepoint, to find the culprits."""
    try:
        with store.transaction():
            _write_resident_batch(store, new, changed)
        return []
    except sqlite3.IntegrityError:
        pass
    failed = []
    for records, is_new in ((new, True), (changed, False)):
        for rec in records:
            try:
                with store.transaction():
                    _write_resident_batch(store, [rec] if is_new else [], [] if is_new else [rec])
            except sqlite3.IntegrityError as e:
                failed.append((rec, str(e)))
    return failed


_RESIDENT_INSERT = (f"INSERT INTO residents ({', '.join(RESIDENT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(RESIDENT_COLUMNS))})")
_RESIDENT_UPDATE = (f"UPDATE residents SET {', '.join(c + '=?' for c in RESIDENT_COLUMNS[1:])} "
                    "WHERE id=?")


def _write_resident_batch(store: Store, new: list[dict], changed: list[dict]) -> None:
    # executemany rather than sqlite-utils' insert_all/upsert_all here: this is the one hot
    # path (every person of the register), and sqlite-utils' per-value Python work made the
    # whole import of a 48,000-row register take 3.5 s instead of 2.0 s
    if new:
        store.conn.executemany(_RESIDENT_INSERT, ([r[c] for c in RESIDENT_COLUMNS] for r in new))
    if changed:
        store.conn.executemany(_RESIDENT_UPDATE, ([r[c] for c in RESIDENT_COLUMNS[1:]] + [r["id"]]
                                                  for r in changed))


def inactivate(store: Store, table: str, ids: Iterable[int], now: float | None = None) -> int:
    """Mark rows inactive (never deleted: their history stays). Returns how many changed."""
    if table == "residents":
        sql, params = "UPDATE residents SET active=0, updated_at=? WHERE id=? AND active=1", \
            ((now, i) for i in ids)
    elif table == "households":
        sql, params = "UPDATE households SET active=0 WHERE id=? AND active=1", ((i,) for i in ids)
    elif table == "chat_groups":
        sql, params = "UPDATE chat_groups SET active=0 WHERE id=? AND active=1", ((i,) for i in ids)
    else:
        raise ValueError(table)
    # executemany binds one id per statement: no id list, no variable limit
    before = store.conn.total_changes
    store.conn.executemany(sql, params)
    return store.conn.total_changes - before


def release_accounts(store: Store, claimed: dict[tuple[str, str], str]) -> int:
    """Take each WeCom user id / OpenID the new register gives out, (column, value) -> person
    key, away from whoever else holds it now (someone who moved out, or who changed accounts):
    the register decides whose an account is, and two people swapping ids must not trip the
    unique index halfway. Returns how many accounts were taken back."""
    released = []
    for rid, key, wecom, oa in store.conn.execute(
            "SELECT id, key, wecom_userid, oa_openid FROM residents "
            "WHERE wecom_userid IS NOT NULL OR oa_openid IS NOT NULL"):
        for column, value in (("wecom_userid", wecom), ("oa_openid", oa)):
            owner = claimed.get((column, value)) if value is not None else None
            if owner is not None and owner != key:
                released.append((column, rid))
    for column in ("wecom_userid", "oa_openid"):
        store.conn.executemany(f"UPDATE residents SET {column}=NULL WHERE id=?",
                               ((rid,) for c, rid in released if c == column))
    return len(released)


def defer_foreign_keys(store: Store) -> None:
    """Check foreign keys at COMMIT instead of per statement, for the current transaction only:
    an import writes a resident who names a social worker further down the file."""
    store.conn.execute("PRAGMA defer_foreign_keys=ON")


def unlink_social_worker(store: Store, worker_ids: Iterable[int]) -> None:
    """Nobody's social worker any more (their row could not be written)."""
    store.conn.executemany("UPDATE residents SET social_worker_id=NULL WHERE social_worker_id=?",
                           ((i,) for i in worker_ids))


def set_stewards(store: Store, changes: Iterable[tuple[int | None, int]]) -> None:
    """(steward id or None, household id): who looks after each household that changed."""
    store.conn.executemany("UPDATE households SET steward_id=? WHERE id=?", changes)


def replace_leads(store: Store, links: list[tuple[int, int, int]]) -> None:
    """The leads are whatever the latest register says: (node_id, resident_id, rank)."""
    store.conn.execute("DELETE FROM node_leads")
    store.db["node_leads"].insert_all(
        ({"node_id": n, "resident_id": r, "rank": k} for n, r, k in links), batch_size=BATCH,
        ignore=True)


def upsert_group(store: Store, node_id: int, name: str, kind: str, chat_id: str,
                 owner_id: int | None) -> None:
    store.conn.execute(
        "INSERT INTO chat_groups (node_id, name, kind, chat_id, owner_id, active) VALUES (?,?,?,?,?,1) "
        "ON CONFLICT(node_id, name) DO UPDATE SET kind=excluded.kind, chat_id=excluded.chat_id, "
        "owner_id=excluded.owner_id, active=1",
        (node_id, name, kind, chat_id, owner_id))


def log_import(store: Store, now: float, **counts) -> None:
    store.log(now, "register.imported", **counts)


# -- the roster's counts ------------------------------------------------------------------------
def nodes(store: Store) -> list[dict]:
    return store.q("SELECT id, kind, name, parent_id FROM nodes ORDER BY id")


def counts_per_building(store: Store) -> dict[int, dict]:
    """Active households, their active residents and the vulnerable among them, per building."""
    return {r["building_id"]: r for r in store.q(
        """SELECT h.building_id, COUNT(DISTINCT h.id) AS households, COUNT(r.id) AS residents,
                  SUM(r.vulnerable != '') AS vulnerable
           FROM households h LEFT JOIN residents r ON r.household_id = h.id AND r.active = 1
           WHERE h.active = 1 GROUP BY h.building_id""")}


def active_leads_per_node(store: Store) -> dict[int, int]:
    return {r["node_id"]: r["n"] for r in store.q(
        "SELECT l.node_id, COUNT(*) AS n FROM node_leads l JOIN residents r ON r.id=l.resident_id "
        "WHERE r.active=1 GROUP BY l.node_id")}


def steward_loads(store: Store, limit: int) -> list[dict]:
    """Stewards looking after more than `limit` active households: name, their household, count."""
    return store.q(
        "SELECT r.id, r.name, COALESCE(hh.label, '') AS label, COUNT(*) AS households FROM households h "
        "JOIN residents r ON r.id = h.steward_id LEFT JOIN households hh ON hh.id = r.household_id "
        "WHERE h.active = 1 GROUP BY r.id HAVING COUNT(*) > ? ORDER BY COUNT(*) DESC, r.id", (limit,))


def vulnerable_without_worker(store: Store) -> list[dict]:
    """Active vulnerable residents with no (active) social worker: their visits go to the grid lead."""
    return store.q(
        "SELECT r.name, r.vulnerable, h.label FROM residents r JOIN households h ON h.id = r.household_id "
        "LEFT JOIN residents w ON w.id = r.social_worker_id AND w.active = 1 "
        "WHERE r.active = 1 AND r.vulnerable != '' AND w.id IS NULL ORDER BY h.label, r.name")
