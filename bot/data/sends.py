"""The outbox's rows (`sends`) and the per-channel circuit breakers (`channel_breakers`).

Every SQL statement the outbound transport needs lives here; the outbox decides *when*, this
module only reads and writes rows. Times are float epoch seconds from the caller's clock.
"""
from __future__ import annotations

from typing import Iterable

from bot.data.store import Store

COLUMNS = ("key", "channel", "target", "payload", "alert_id", "purpose", "state", "created_at")
# the same statement as insert_all(ignore=True) builds, for the one-row path that needs the id
_INSERT_ONE = ("INSERT OR IGNORE INTO sends (key, channel, target, payload, alert_id, purpose,"
               " state, created_at) VALUES (?,?,?,?,?,?,'pending',?)")
INSERT_BATCH = 500  # rows per multi-row INSERT (8 columns: well under SQLite's variable limit)


# -- writing intended sends -------------------------------------------------------------------
def insert(store: Store, key: str, channel: str, target: str, payload: str,
           alert_id: int | None, purpose: str, now: float) -> int | None:
    """One intended send. Returns its id, or None if `key` exists (INSERT OR IGNORE)."""
    cur = store.conn.execute(_INSERT_ONE, (key, channel, target, payload, alert_id, purpose, now))
    return cur.lastrowid if cur.rowcount == 1 else None


def insert_many(store: Store, rows: Iterable[tuple], now: float) -> int:
    """Many intended sends (key, channel, target, payload, alert_id, purpose) in one transaction;
    keys already present are skipped. Returns how many rows were new."""
    records = ((k, ch, t, p, a, pu, "pending", now) for k, ch, t, p, a, pu in rows)
    with store.transaction() as conn:
        before = conn.total_changes
        # list mode (column names first): no per-record dict, one multi-row INSERT OR IGNORE per batch
        store.db["sends"].insert_all(_with_header(records), ignore=True, batch_size=INSERT_BATCH)
        return conn.total_changes - before


def _with_header(records):
    yield list(COLUMNS)
    yield from records


# -- the worker's claim/record cycle ----------------------------------------------------------
def requeue_inflight(store: Store) -> int:
    """Rows left 'sending' by a stop or a crash go back to pending."""
    return store.conn.execute("UPDATE sends SET state = 'pending' WHERE state = 'sending'").rowcount


def _not_in(channels: Iterable[str]) -> tuple[str, list[str]]:
    chans = sorted(set(channels))
    if not chans:
        return "", []
    return f" AND channel NOT IN ({','.join('?' * len(chans))})", chans


def next_due(store: Store, skip_channels: Iterable[str] = ()) -> float | None:
    """The earliest next_at of a pending retry, ignoring paused channels (None: nothing waits)."""
    cond, params = _not_in(skip_channels)
    return store.scalar(f"SELECT min(next_at) FROM sends WHERE state = 'pending'{cond}", params)


def has_fresh(store: Store, skip_channels: Iterable[str] = ()) -> bool:
    cond, params = _not_in(skip_channels)
    return store.scalar(f"SELECT 1 FROM sends WHERE state = 'pending' AND next_at IS NULL{cond}"
                        " LIMIT 1", params) is not None


def claim(store: Store, now: float, limit: int, skip_channels: Iterable[str] = ()) -> list[dict]:
    """Mark up to `limit` due rows 'sending' and return them: due retries first (so a big fan-out
    does not starve them), then fresh rows in id order. Both queries walk the (state, next_at)
    index and stop at the limit; an ORDER BY id over all pending rows would sort the whole
    backlog on every claim (30 ms at 100k rows)."""
    cond, chans = _not_in(skip_channels)
    ids = [r[0] for r in store.conn.execute(
        f"SELECT id FROM sends WHERE state = 'pending' AND next_at <= ?{cond}"
        " ORDER BY next_at LIMIT ?", (now, *chans, limit))]
    if len(ids) < limit:
        ids += [r[0] for r in store.conn.execute(
            f"SELECT id FROM sends WHERE state = 'pending' AND next_at IS NULL{cond} LIMIT ?",
            (*chans, limit - len(ids)))]
    return _mark_sending(store, ids, now)


def claim_probe(store: Store, channel: str, now: float) -> dict | None:
    """One pending row of a paused channel to try the endpoint with, due or not (the breaker,
    not the row's backoff, decides when a dead endpoint is tried again). Any row will do: no
    ORDER BY, so the index walk stops at the first one."""
    ids = [r[0] for r in store.conn.execute(
        "SELECT id FROM sends WHERE state = 'pending' AND channel = ? LIMIT 1", (channel,))]
    rows = _mark_sending(store, ids, now)
    return rows[0] if rows else None


def _mark_sending(store: Store, ids: list[int], now: float) -> list[dict]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    # `+state`: keep the planner on the rowid lookup, not a scan of every pending row
    rows = store.q(f"UPDATE sends SET state = 'sending', attempted_at = ? WHERE id IN ({marks})"
                   " AND +state = 'pending' RETURNING *", (now, *ids))
    order = {i: n for n, i in enumerate(ids)}
    return sorted(rows, key=lambda r: order[r["id"]])


def record(store: Store, send_id: int, *, state: str, attempts: int, error_code: int | None,
           error: str | None, next_at: float | None, sent_at: float | None) -> None:
    store.conn.execute(
        "UPDATE sends SET state=?, attempts=?, error_code=?, error=?, next_at=?, sent_at=? WHERE id=?",
        (state, attempts, error_code, error, next_at, sent_at, send_id))


def alert_expiry(store: Store, alert_id: int) -> float | None:
    """The expiry of a send's warning (None if the alert is gone)."""
    return store.scalar("SELECT expires_at FROM alerts WHERE id=?", (alert_id,))


def expire_retries(store: Store, now: float, budget_s: float, error: str) -> list[dict]:
    """Retries of warnings past their retry deadline (the later of the warning's expiry and
    created_at + budget_s) that are still pending: dead. Rows never attempted are left alone."""
    return store.q(
        "UPDATE sends SET state='dead', next_at=NULL, error=? WHERE state='pending' AND attempts > 0"
        " AND alert_id IS NOT NULL AND created_at + ? <= ?"
        " AND alert_id IN (SELECT id FROM alerts WHERE expires_at <= ?)"
        " RETURNING id, channel, target, alert_id, error_code", (error, budget_s, now, now))


def resume_channel(store: Store, channel: str, now: float) -> int:
    """A channel answers again: its pending rows are due now instead of at their backoff."""
    return store.conn.execute(
        "UPDATE sends SET next_at=? WHERE state='pending' AND channel=? AND next_at > ?",
        (now, channel, now)).rowcount


def pending_on(store: Store, channel: str) -> tuple[int, int]:
    """(pending rows on `channel`, how many of them belong to a warning)."""
    row = store.conn.execute("SELECT count(*), count(alert_id) FROM sends WHERE state='pending'"
                             " AND channel=?", (channel,)).fetchone()
    return row[0], row[1]


def retry(store: Store, now: float, *, send_ids: Iterable[int] | None = None,
          alert_id: int | None = None) -> list[dict]:
    """Dead or failed rows (by id, or all of one alert) back to pending with a fresh attempt
    count. Returns the rows moved (id, previous state, attempts, error)."""
    if send_ids is not None:
        ids = [int(i) for i in send_ids]
        if not ids:
            return []
        where, params = f"id IN ({','.join('?' * len(ids))})", ids
    elif alert_id is not None:
        where, params = "alert_id = ?", [alert_id]
    else:
        raise ValueError("retry needs send ids or an alert id")
    with store.transaction():
        before = store.q(f"SELECT id, state, attempts, error FROM sends WHERE {where}"
                         " AND state IN ('dead','failed') ORDER BY id", params)
        if before:
            marks = ",".join("?" * len(before))
            store.conn.execute(
                f"UPDATE sends SET state='pending', attempts=0, next_at=NULL WHERE id IN ({marks})",
                [r["id"] for r in before])
    return before


def mark_confirmed(store: Store, send_id: int, ok: bool, error: str | None, now: float) -> int:
    """A 'waiting' send (customer group) was confirmed by its owner, or will never be."""
    return store.conn.execute(
        "UPDATE sends SET state=?, sent_at=?, error=coalesce(?, error) WHERE id=? AND state='waiting'",
        ("sent" if ok else "failed", now, error, send_id)).rowcount


def counts(store: Store) -> dict[str, int]:
    return {r["state"]: r["n"] for r in
            store.q("SELECT state, count(*) AS n FROM sends GROUP BY state")}


def recent_to_members(store: Store, channel: str, since: float) -> list[tuple[str, float]]:
    """(target, at) of the sends on `channel` that may have reached people since `since`: sent
    ones at their send time, and ones a crash left 'sending' at the time they were handed to
    the sender (they may have got through)."""
    sent = store.conn.execute(
        "SELECT target, sent_at FROM sends WHERE channel=? AND state='sent' AND sent_at >= ?",
        (channel, since)).fetchall()
    inflight = store.conn.execute(
        "SELECT target, attempted_at FROM sends WHERE channel=? AND state='sending'"
        " AND attempted_at >= ?", (channel, since)).fetchall()
    return [(t, at) for t, at in sent + inflight]


# -- circuit breakers ---------------------------------------------------------------------------
def breakers(store: Store) -> list[dict]:
    return store.q("SELECT * FROM channel_breakers ORDER BY channel")


def save_breaker(store: Store, channel: str, *, state: str, opened_at: float | None,
                 probe_at: float | None, cooldown_s: float | None, notified_at: float | None,
                 now: float) -> None:
    store.conn.execute(
        "INSERT INTO channel_breakers (channel, state, opened_at, probe_at, cooldown_s, notified_at,"
        " updated_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(channel) DO UPDATE SET state=excluded.state,"
        " opened_at=excluded.opened_at, probe_at=excluded.probe_at, cooldown_s=excluded.cooldown_s,"
        " notified_at=excluded.notified_at, updated_at=excluded.updated_at",
        (channel, state, opened_at, probe_at, cooldown_s, notified_at, now))


# -- what a sender needs from the register --------------------------------------------------------
def customer_group_owner(store: Store, chat_id: str) -> str | None:
    """The WeCom userid of the member who owns a customer group (they confirm its mass sends)."""
    return store.scalar(
        "SELECT r.wecom_userid FROM chat_groups g JOIN residents r ON r.id = g.owner_id"
        " WHERE g.chat_id = ? AND g.kind = 'customer'", (chat_id,))
