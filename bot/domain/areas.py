"""Who may see what: the buildings a person's role covers. Chat replies and dashboard pages apply
the same area, so a grid lead never sees another grid's names and rooms in either."""
from __future__ import annotations

from bot.core.filters import roles_of
from bot.data import org
from bot.data.store import Store


def buildings_of(store: Store, person: dict | None) -> list[int] | None:
    """Building ids this person's role covers; None means everything (staff)."""
    roles = roles_of(person)
    if "staff" in roles:
        # staff see their whole community; with several communities in one register, only theirs
        home = org.node(store, person["node_id"]) if person and person.get("node_id") else None
        if home is not None and home["kind"] == "community" and len(org.roots(store)) > 1:
            return org.buildings_under(store, [home["id"]])
        return None
    led = org.led_nodes(store, person["id"]) if person else []
    if led:
        return org.buildings_under(store, led)
    if "social_worker" in roles and person:
        # a social worker's area: where the residents in their care live (their follow-ups)
        return org.buildings_of_clients(store, person["id"])
    return []

