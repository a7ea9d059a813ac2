"""CAP messages received from a weather service, whatever became of each."""
from __future__ import annotations

import json

from bot.data.store import Store


def find(store: Store, sender: str, identifier: str, sent: str | None = None) -> dict | None:
    if sent:
        return store.q1("SELECT * FROM cap_messages WHERE sender=? AND identifier=? AND sent=?",
                        (sender, identifier, sent))
    return store.q1("SELECT * FROM cap_messages WHERE sender=? AND identifier=? ORDER BY id DESC LIMIT 1",
                    (sender, identifier))


def find_any_sender(store: Store, identifier: str) -> dict | None:
    return store.q1("SELECT * FROM cap_messages WHERE identifier=? ORDER BY id DESC LIMIT 1", (identifier,))


def record(store: Store, *, sender: str, identifier: str, sent: str, status: str, msg_type: str, refs: str,
           outcome: str, reason: str, alert_id: int | None, received_at: float, raw: str,
           fields: dict | None = None, due_at: float | None = None) -> int:
    return store.conn.execute(
        "INSERT INTO cap_messages (sender, identifier, sent, status, msg_type, refs, outcome, reason, alert_id,"
        " due_at, fields, received_at, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (sender, identifier, sent, status, msg_type, refs, outcome, reason, alert_id, due_at,
         json.dumps(fields, ensure_ascii=False) if fields is not None else None, received_at, raw)).lastrowid


def get(store: Store, cap_id: int) -> dict | None:
    return store.q1("SELECT * FROM cap_messages WHERE id=?", (cap_id,))


def set_outcome(store: Store, cap_id: int, outcome: str, reason: str = "", alert_id: int | None = None) -> None:
    store.conn.execute("UPDATE cap_messages SET outcome=?, reason=?, alert_id=coalesce(?, alert_id), due_at=NULL "
                       "WHERE id=?", (outcome, reason, alert_id, cap_id))


def scheduled_due(store: Store, now: float) -> list[dict]:
    return store.q("SELECT * FROM cap_messages WHERE outcome='scheduled' AND due_at <= ? ORDER BY due_at, id",
                   (now,))


def next_scheduled(store: Store) -> float | None:
    return store.scalar("SELECT MIN(due_at) FROM cap_messages WHERE outcome='scheduled'")


def not_relayed(store: Store, limit: int = 200) -> list[dict]:
    """What staff must see: messages that did not (or not yet) become a relayed warning."""
    return store.q("SELECT * FROM cap_messages WHERE outcome NOT IN ('relayed','updated','lifted','duplicate') "
                   "ORDER BY id DESC LIMIT ?", (limit,))


def alert_of(store: Store, sender: str, identifier: str) -> int | None:
    """The alert a referenced message became (following updates: the newest in its chain)."""
    return store.scalar("SELECT alert_id FROM cap_messages WHERE sender=? AND identifier=? AND alert_id IS NOT NULL "
                        "ORDER BY id DESC LIMIT 1", (sender, identifier))


def cancelled_before(store: Store, sender: str, identifier: str) -> bool:
    """A Cancel naming (sender, identifier) was received (and refused: its Alert had not come yet)."""
    for row in store.q("SELECT refs FROM cap_messages WHERE msg_type='cancel' AND outcome='refused' AND refs LIKE ?",
                       (f"%{identifier}%",)):
        for ref in row["refs"].split():
            parts = ref.split(",")
            if len(parts) >= 2 and parts[1] == identifier and parts[0] == sender:
                return True
    return False
