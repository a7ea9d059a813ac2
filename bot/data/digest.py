"""Held notices (`digest_items`): low-urgency messages to one person waiting for their digest.

The domain (bot.domain.digest) decides what is held and when a digest is due; this module only
reads and writes the rows. A notice is keyed by the send key it would have had, so holding it
twice is a no-op; `send_key` is the digest's sends key once it was folded into one.
"""
from __future__ import annotations

from bot.data.store import Store


def hold(store: Store, *, key: str, person_id: int | None, channel: str, target: str, kind: str,
         ref_id: int | None, line: str, now: float) -> bool:
    """Hold one notice for (channel, target). False if `key` was held before (sent or not)."""
    cur = store.conn.execute(
        "INSERT OR IGNORE INTO digest_items (key, person_id, channel, target, kind, ref_id, line,"
        " created_at) VALUES (?,?,?,?,?,?,?,?)",
        (key, person_id, channel, target, kind, ref_id, line, now))
    return cur.rowcount == 1


def is_held(store: Store, key: str) -> bool:
    return store.scalar("SELECT 1 FROM digest_items WHERE key = ?", (key,)) is not None


def has_waiting(store: Store, channel: str, target: str) -> bool:
    return store.scalar("SELECT 1 FROM digest_items WHERE send_key IS NULL AND channel = ?"
                        " AND target = ? LIMIT 1", (channel, target)) is not None


def oldest_waiting(store: Store) -> float | None:
    """When the oldest notice still waiting was held (None: nothing waits)."""
    return store.scalar("SELECT min(created_at) FROM digest_items WHERE send_key IS NULL")


def due_targets(store: Store, held_before: float) -> list[tuple[str, str]]:
    """(channel, target) of everyone whose oldest waiting notice was held at or before
    `held_before`, oldest first."""
    return [(r[0], r[1]) for r in store.conn.execute(
        "SELECT channel, target, min(created_at) AS first FROM digest_items"
        " WHERE send_key IS NULL GROUP BY channel, target HAVING first <= ?"
        " ORDER BY first, channel, target", (held_before,))]


def waiting_for(store: Store, channel: str, target: str) -> list[dict]:
    """The notices waiting for one target, in the order they were held."""
    return store.q("SELECT * FROM digest_items WHERE send_key IS NULL AND channel = ?"
                   " AND target = ? ORDER BY created_at, id", (channel, target))


def fold(store: Store, ids: list[int], send_key: str) -> int:
    """Mark notices as sent in the digest `send_key`; only ones still waiting (compare-and-set:
    a second worker or a rerun folds nothing). Returns how many were folded."""
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    return store.conn.execute(
        f"UPDATE digest_items SET send_key = ? WHERE send_key IS NULL AND id IN ({marks})",
        (send_key, *ids)).rowcount


def counts(store: Store) -> dict[str, int]:
    """{'waiting': n, 'sent': n}: for the dashboard and tests."""
    row = store.conn.execute("SELECT count(*) - count(send_key), count(send_key) FROM digest_items"
                             ).fetchone()
    return {"waiting": row[0] or 0, "sent": row[1] or 0}
