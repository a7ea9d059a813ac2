"""The org tree: community → grid → compound → building, its leads and its chat groups.

One home for "buildings under these nodes", "ancestors of a node", "leads of a node".
"""
from __future__ import annotations

from bot.data.store import Store

KINDS = ("community", "grid", "compound", "building")


def node(store: Store, node_id: int) -> dict | None:
    return store.q1("SELECT * FROM nodes WHERE id=?", (node_id,))


def nodes(store: Store) -> list[dict]:
    return store.q("SELECT * FROM nodes ORDER BY id")


def roots(store: Store) -> list[dict]:
    return store.q("SELECT * FROM nodes WHERE parent_id IS NULL ORDER BY id")


def community_name(store: Store, node_id: int | None = None) -> str:
    """The name of the community a node belongs to (the first community when no node is given)."""
    if node_id is not None:
        top = ancestor(store, node(store, node_id), "community")
        if top is not None:
            return top["name"]
    row = store.q1("SELECT name FROM nodes WHERE parent_id IS NULL ORDER BY id LIMIT 1")
    return row["name"] if row else "社区"


def find_place(store: Store, word: str) -> dict | None:
    """A place by id, path ("大龙一区/3栋"), path tail or name."""
    word = str(word).strip()
    if word.isdigit():
        return node(store, int(word))
    row = store.q1("SELECT * FROM nodes WHERE path=? OR path LIKE ? ORDER BY length(path) LIMIT 1",
                   (word, f"%/{word}"))
    if row is None and "/" not in word:
        row = store.q1("SELECT * FROM nodes WHERE name=? ORDER BY id LIMIT 1", (word,))
    return row


def subtree(store: Store, node_ids: list[int]) -> list[dict]:
    """The given nodes and everything under them, in id order."""
    if not node_ids:
        return nodes(store)
    marks = ",".join("?" * len(node_ids))
    return store.q(
        f"""WITH RECURSIVE sub(id) AS (SELECT id FROM nodes WHERE id IN ({marks})
                UNION SELECT n.id FROM nodes n JOIN sub ON n.parent_id = sub.id)
            SELECT n.* FROM nodes n JOIN sub ON sub.id = n.id ORDER BY n.id""", node_ids)


def buildings_under(store: Store, node_ids: list[int]) -> list[int]:
    """Building ids under the given nodes (every building when empty)."""
    return [n["id"] for n in subtree(store, node_ids) if n["kind"] == "building"]


def ancestor(store: Store, start: dict | None, kind: str) -> dict | None:
    """The node itself or its nearest ancestor of this kind."""
    n = start
    while n is not None and n["kind"] != kind:
        n = node(store, n["parent_id"]) if n["parent_id"] else None
    return n


def lead_of(store: Store, node_id: int, rank: int = 0) -> dict | None:
    """The active lead of a node by rank (0 lead, 1 backup)."""
    return store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id = l.resident_id "
                    "WHERE l.node_id=? AND r.active=1 ORDER BY l.rank LIMIT 1 OFFSET ?", (node_id, rank))


def led_nodes(store: Store, resident_id: int) -> list[int]:
    return [r["node_id"] for r in store.q("SELECT node_id FROM node_leads WHERE resident_id=?", (resident_id,))]


def groups_by_node(store: Store) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for g in store.q("SELECT * FROM chat_groups WHERE active=1 ORDER BY id"):
        out.setdefault(g["node_id"], []).append(g)
    return out


def group(store: Store, group_id: int) -> dict | None:
    return store.q1("SELECT * FROM chat_groups WHERE id=?", (group_id,))


def buildings_of_clients(store: Store, worker_id: int) -> list[int]:
    """Buildings where the residents a social worker looks after live."""
    return [r["building_id"] for r in store.q(
        "SELECT DISTINCT h.building_id FROM residents r JOIN households h ON h.id = r.household_id "
        "WHERE r.social_worker_id=? AND r.active=1 ORDER BY h.building_id", (worker_id,))]


# -- stewards (党员中心户 / 红管家): the household level below the building ----------------------
def stewarded_households(store: Store, building_id: int) -> dict[int, int]:
    """A building's active households that have an active steward: household id -> steward id."""
    return {r["id"]: r["steward_id"] for r in store.q(
        "SELECT h.id, h.steward_id FROM households h JOIN residents s ON s.id = h.steward_id AND s.active = 1 "
        "WHERE h.building_id=? AND h.active=1 ORDER BY h.id", (building_id,))}


def steward_households(store: Store, steward_id: int, building_id: int | None = None) -> list[dict]:
    """The active households a steward looks after (within one building when given), with their
    members' names ("names", joined by 、)."""
    sql = ("SELECT h.*, COALESCE((SELECT group_concat(r.name, '、') FROM (SELECT name FROM residents "
           "WHERE household_id = h.id AND active = 1 ORDER BY id) r), '') AS names FROM households h "
           "WHERE h.steward_id=? AND h.active=1")
    params: tuple = (steward_id,)
    if building_id is not None:
        sql += " AND h.building_id=?"
        params += (building_id,)
    return store.q(sql + " ORDER BY h.building_id, h.id", params)


def stewards_of_building(store: Store, building_id: int) -> list[dict]:
    """The active stewards of a building's households, in the order of their first household:
    the steward's resident row with "households" (their households there, see steward_households)."""
    out = []
    for r in store.q("SELECT h.steward_id, MIN(h.id) AS first FROM households h JOIN residents s "
                     "ON s.id = h.steward_id AND s.active = 1 WHERE h.building_id=? AND h.active=1 "
                     "GROUP BY h.steward_id ORDER BY first", (building_id,)):
        steward = store.q1("SELECT * FROM residents WHERE id=?", (r["steward_id"],))
        out.append(dict(steward, households=steward_households(store, r["steward_id"], building_id)))
    return out


def is_steward(store: Store, resident_id: int) -> bool:
    """Whether this person looks after at least one active household."""
    return store.scalar("SELECT 1 FROM households WHERE steward_id=? AND active=1 LIMIT 1", (resident_id,)) == 1
