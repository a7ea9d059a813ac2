"""Rows behind the office's reports."""
from __future__ import annotations

from bot.data.store import Store


def requests_between(store: Store, start: float, end: float) -> list[dict]:
    """Requests filed in [start, end), with resident, household and building names."""
    return store.q(
        "SELECT r.*, p.name AS resident, h.label AS household, "
        "COALESCE(c.name, '') || COALESCE(b.name, '') AS building FROM requests r "
        "LEFT JOIN residents p ON p.id = r.resident_id "
        "LEFT JOIN households h ON h.id = r.household_id "
        "LEFT JOIN nodes b ON b.id = r.building_id LEFT JOIN nodes c ON c.id = b.parent_id "
        "WHERE r.created_at >= ? AND r.created_at < ? ORDER BY r.id", (start, end))
