"""The `inbound` table (every callback, recorded exactly once) and `callback_nonces` (the
(timestamp, nonce) pairs seen within the freshness window). All their SQL lives here.

Recording is a group commit: the front hands over every callback that arrived while the previous
commit ran, and they are written in one transaction (one write lock, one WAL commit) instead of
one each; under a burst of 1,000 concurrent callbacks that is what keeps the wait for the lock
short. The worker reads pending rows through a partial index that holds only unhandled rows, so
an idle poll costs the same with 0 or 1,000,000 rows of history.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from bot.data.store import Store

# outcomes of recording one callback
RECORDED = "recorded"    # a new row: hand it to the dispatcher
DUPLICATE = "duplicate"  # its dedupe key (MsgId, or the event's sender/time/kind) is known: a retry
REPLAY = "replay"        # its (timestamp, nonce) was used before with another body: refuse it

# The worker's poll. `state = 'new'` matches the partial index inbound_pending (migration 6), so
# the search never touches handled rows; tests/test_inbound_idle.py pins the plan.
PENDING_SQL = ("SELECT id, channel, raw, fields FROM inbound WHERE state = 'new' AND id > ? "
               "ORDER BY id LIMIT ?")


@dataclass(frozen=True)
class Entry:
    """One verified callback, as it is written."""
    dedupe_key: str
    channel: str
    user_id: str
    resident_id: int | None
    chat_id: str | None
    msg_type: str
    content: str
    event: str | None
    at: float
    raw: str
    fields: str                      # the normalised message as JSON
    timestamp: str | None = None     # the request's timestamp and nonce, and a hash of its body:
    nonce: str | None = None         # None when there is nothing to remember (a stored message
    body_hash: str | None = None     # re-recorded by a test or a tool)
    nonce_expires_at: float = 0.0


def record_batch(conn: sqlite3.Connection, entries: list[Entry], now: float) -> list[tuple[str, int | None]]:
    """Write the entries in one transaction; per entry (outcome, inbound id or None).

    `conn` may be a front's connection with busy_timeout=0: sqlite3.OperationalError ("database
    is locked") then means "try again", and nothing was written. If the connection is already
    inside a transaction (single-process mode, a caller's own transaction) the batch joins it as
    a savepoint."""
    nested = conn.in_transaction
    name = f"rec{id(entries)}"
    conn.execute(f"SAVEPOINT {name}" if nested else "BEGIN IMMEDIATE")
    try:
        out = [_record_one(conn, e, now) for e in entries]
        conn.execute(f"RELEASE {name}" if nested else "COMMIT")
    except BaseException:
        if nested:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
        elif conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


def _record_one(conn: sqlite3.Connection, e: Entry, now: float) -> tuple[str, int | None]:
    if e.nonce is not None:
        cur = conn.execute(
            "INSERT OR IGNORE INTO callback_nonces (channel, timestamp, nonce, body_hash, expires_at) "
            "VALUES (?,?,?,?,?)", (e.channel, e.timestamp, e.nonce, e.body_hash, e.nonce_expires_at))
        if cur.rowcount == 0:
            seen_hash, expires_at = conn.execute(
                "SELECT body_hash, expires_at FROM callback_nonces WHERE channel = ? AND timestamp = ? "
                "AND nonce = ?", (e.channel, e.timestamp, e.nonce)).fetchone()
            if expires_at < now:  # remembered past its window and not pruned yet: forget it
                conn.execute(
                    "UPDATE callback_nonces SET body_hash = ?, expires_at = ? WHERE channel = ? "
                    "AND timestamp = ? AND nonce = ?",
                    (e.body_hash, e.nonce_expires_at, e.channel, e.timestamp, e.nonce))
            elif seen_hash != e.body_hash:
                return REPLAY, None
            # the very same request again (a client's retry): the dedupe key decides below
    cur = conn.execute(
        "INSERT OR IGNORE INTO inbound (dedupe_key, channel, user_id, resident_id, chat_id, msg_type, "
        "content, event, at, received_at, raw, fields) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (e.dedupe_key, e.channel, e.user_id, e.resident_id, e.chat_id, e.msg_type, e.content,
         e.event, e.at, now, e.raw, e.fields))
    if cur.rowcount == 0:
        return DUPLICATE, None
    return RECORDED, cur.lastrowid


def pending_rows(store: Store, after: int = 0, limit: int | None = None) -> list[dict]:
    """Unhandled rows with id > after, oldest first (all of them when limit is None)."""
    return store.q(PENDING_SQL, (after, -1 if not limit else int(limit)))


def mark(store: Store, inbound_id: int, state: str, error: str | None = None) -> None:
    store.conn.execute("UPDATE inbound SET state = ?, error = ? WHERE id = ?", (state, error, inbound_id))


def data_version(store: Store) -> int:
    """Changes whenever another connection (another process) commits: lets an idle poller skip
    its query when nothing happened."""
    return store.conn.execute("PRAGMA data_version").fetchone()[0]


def prune(store: Store, *, handled_before: float, nonces_before: float, limit: int = 2000) -> tuple[int, int]:
    """Delete up to `limit` handled rows received before `handled_before`, and the nonces that
    expired before `nonces_before`. Returns (inbound rows, nonces) deleted.

    The newest row is always kept: ids are never reused that way (SQLite hands out max(id) + 1),
    and reply keys are built from inbound ids, so a reused id would silence a reply.
    `+id` keeps the planner on the received_at index (a bare `id <` made it scan the primary key:
    0.6-0.8 s a call at 1M rows, was measured; with the index, 3 ms for a full chunk)."""
    with store.transaction():
        rows = store.conn.execute(
            "DELETE FROM inbound WHERE id IN (SELECT id FROM inbound WHERE received_at < ? "
            "AND state != 'new' AND +id < (SELECT max(id) FROM inbound) LIMIT ?)",
            (handled_before, int(limit))).rowcount
        nonces = store.conn.execute(
            "DELETE FROM callback_nonces WHERE expires_at < ?", (nonces_before,)).rowcount
    return rows, nonces


def counts(store: Store) -> dict[str, int]:
    """Rows per state (tools and benchmarks)."""
    return {r["state"]: r["n"] for r in store.q("SELECT state, COUNT(*) AS n FROM inbound GROUP BY state")}
