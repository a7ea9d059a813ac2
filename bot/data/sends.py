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


REPLY = "reply"  # the purpose of an answer to a person's own command (bot.core.dispatcher)


def claim(store: Store, now: float, limit: int, skip_channels: Iterable[str] = ()) -> list[dict]:
    """Mark up to `limit` due rows 'sending' and return them, in this order:
    1. replies (answers to a person's own command), each target's in command order: a reply is
       claimed only when no earlier reply to the same target is pending or in flight, so two
       replies are never in the air together and a deferred one holds back the ones after it;
    2. due retries (so a big fan-out does not starve them);
    3. fresh rows in id order.
    Queries 2 and 3 walk the (state, next_at) index and stop at the limit; an ORDER BY id over
    all pending rows would sort the whole backlog on every claim (30 ms at 100k rows). Query 1
    reads the partial index of open replies, which holds only the few rows in flight."""
    ids = claim_replies(store, now, limit, skip_channels)
    cond, chans = _not_in(skip_channels)
    if len(ids) < limit:
        ids += [r[0] for r in store.conn.execute(
            f"SELECT id FROM sends WHERE state = 'pending' AND next_at <= ?{cond}"
            " AND purpose != 'reply' ORDER BY next_at LIMIT ?", (now, *chans, limit - len(ids)))]
    if len(ids) < limit:
        ids += [r[0] for r in store.conn.execute(
            f"SELECT id FROM sends WHERE state = 'pending' AND next_at IS NULL{cond}"
            " AND purpose != 'reply' LIMIT ?", (*chans, limit - len(ids)))]
    return _mark_sending(store, ids, now)


def claim_replies(store: Store, now: float, limit: int, skip_channels: Iterable[str] = ()) -> list[int]:
    """Ids of the replies that may go now: due, and the first open reply of their target."""
    if limit <= 0:
        return []
    cond, chans = _not_in(skip_channels)
    return [r[0] for r in store.conn.execute(
        # INDEXED BY: the planner would otherwise walk every pending row (a 5,000-row fan-out)
        # by sends_state; the partial index holds only the open replies
        "SELECT s.id FROM sends s INDEXED BY sends_open_replies"
        " WHERE s.purpose = 'reply' AND s.state IN ('pending','sending')"
        f" AND +s.state = 'pending' AND (s.next_at IS NULL OR s.next_at <= ?){cond}"
        " AND NOT EXISTS (SELECT 1 FROM sends e WHERE e.purpose = 'reply'"
        " AND e.state IN ('pending','sending') AND e.channel = s.channel AND e.target = s.target"
        " AND e.id < s.id) ORDER BY s.id LIMIT ?", (now, *chans, limit))]


def claim_replies_now(store: Store, now: float, limit: int,
                      skip_channels: Iterable[str] = ()) -> list[dict]:
    """Claim only replies (see claim_replies): for a worker whose window is mostly busy."""
    return _mark_sending(store, claim_replies(store, now, limit, skip_channels), now)


def claim_probe(store: Store, channel: str, now: float) -> dict | None:
    """One pending row of a paused channel to try the endpoint with, due or not (the breaker,
    not the row's backoff, decides when a dead endpoint is tried again). Any row will do: no
    ORDER BY, so the index walk stops at the first one; but never a reply that an earlier reply to
    the same person is still ahead of."""
    ids = [r[0] for r in store.conn.execute(
        "SELECT id FROM sends s WHERE state = 'pending' AND channel = ? AND (purpose != 'reply'"
        " OR NOT EXISTS (SELECT 1 FROM sends e WHERE e.purpose = 'reply'"
        " AND e.state IN ('pending','sending') AND e.channel = s.channel AND e.target = s.target"
        " AND e.id < s.id)) LIMIT 1", (channel,))]
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


def exists(store: Store, key: str) -> bool:
    """Whether a send with this key was ever enqueued (whatever became of it)."""
    return store.scalar("SELECT 1 FROM sends WHERE key = ?", (key,)) is not None


def sent_to_since(store: Store, channel: str, target: str, since: float,
                  exclude_purposes: Iterable[str] = (REPLY,)) -> int:
    """How many rows to exactly this (channel, target) were written since `since`, whatever
    their state, leaving out the given purposes (by default the replies): what a person was
    sent, or is about to be, in a recent window (the per-person cap)."""
    skip = sorted(set(exclude_purposes))
    cond = f" AND purpose NOT IN ({','.join('?' * len(skip))})" if skip else ""
    return store.scalar(
        f"SELECT count(*) FROM sends WHERE target = ? AND channel = ? AND created_at >= ?{cond}",
        (target, channel, since, *skip)) or 0


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
