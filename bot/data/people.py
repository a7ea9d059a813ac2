"""Residents and households: who someone is, where they live, how they are registered."""
from __future__ import annotations

from bot.data.store import Store

# which `residents` column holds each channel's user id
ID_COLUMN = {"wecom": "wecom_userid", "oa": "oa_openid"}


def get(store: Store, resident_id: int) -> dict | None:
    return store.q1("SELECT * FROM residents WHERE id=?", (resident_id,))


def active(store: Store, resident_id: int) -> dict | None:
    return store.q1("SELECT * FROM residents WHERE id=? AND active=1", (resident_id,))


def by_account(store: Store, channel: str, user_id: str) -> dict | None:
    """The active resident registered under this channel's user id, or None."""
    column = ID_COLUMN.get(channel)
    if column is None:
        return None
    return store.q1(f"SELECT * FROM residents WHERE {column} = ? AND active = 1", (user_id,))


def household(store: Store, household_id: int) -> dict | None:
    return store.q1("SELECT * FROM households WHERE id=?", (household_id,))


def in_households(store: Store, household_ids) -> list[dict]:
    ids = list(household_ids)
    if not ids:
        return []
    return store.q(f"SELECT * FROM residents WHERE active=1 AND household_id IN ({','.join('?' * len(ids))}) "
                   "ORDER BY id", ids)


def with_role(store: Store, role: str) -> list[dict]:
    """Active people whose roles include `role` (roles are a comma-separated column)."""
    return [r for r in store.q("SELECT * FROM residents WHERE active=1 AND roles LIKE ? ORDER BY id",
                               (f"%{role}%",))
            if role in r["roles"].split(",")]


def active_named(store: Store, name: str) -> dict | None:
    return store.q1("SELECT * FROM residents WHERE name=? AND active=1 ORDER BY id LIMIT 1", (name,))
