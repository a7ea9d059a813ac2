"""Short conversation state per chat user (a preview waiting for 确认)."""
from __future__ import annotations

import json

from bot.data.store import Store


def remember(store: Store, user_key: str, state: str, data: dict, expires_at: float) -> None:
    store.conn.execute(
        "INSERT INTO conversations (user_key, state, data, expires_at) VALUES (?,?,?,?) "
        "ON CONFLICT(user_key) DO UPDATE SET state=excluded.state, data=excluded.data, "
        "expires_at=excluded.expires_at",
        (user_key, state, json.dumps(data, ensure_ascii=False), expires_at))


def pending(store: Store, user_key: str, state: str, now: float) -> dict | None:
    row = store.q1("SELECT data FROM conversations WHERE user_key=? AND state=? AND expires_at > ?",
                   (user_key, state, now))
    return json.loads(row["data"]) if row else None


def forget(store: Store, user_key: str) -> None:
    store.conn.execute("DELETE FROM conversations WHERE user_key=?", (user_key,))
