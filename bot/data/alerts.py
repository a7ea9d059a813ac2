"""Alerts (warnings) and their scope."""
from __future__ import annotations

from bot.data.store import Store


def get(store: Store, alert_id: int) -> dict | None:
    return store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))


def recent(store: Store, limit: int = 50) -> list[dict]:
    return store.q("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,))


def scope_buildings(store: Store, alert_id: int) -> list[int]:
    return [r["building_id"] for r in store.q(
        "SELECT building_id FROM alert_scope WHERE alert_id=? ORDER BY building_id", (alert_id,))]
