"""Reads for the demo's narration: what the timers did to one warning, from the audit log."""
from __future__ import annotations

import json

from bot.data.store import Store

# what a secretary follows: reminders, relay hops moving past a silent lead, follow-up tasks
STORY_KINDS = ("alert.reminded", "hop.asked", "hop.escalated", "hop.failed",
               "followup.created", "followup.escalated")


def story_events(store: Store, alert_id: int, after_id: int = 0, limit: int = 5000) -> list[dict]:
    """Story events of `alert_id` logged after event `after_id`, oldest first, with the actor's
    name, the hop's place and the follow-up's resident. `data` is decoded (a dict, maybe empty)."""
    marks = ",".join("?" * len(STORY_KINDS))
    rows = store.q(
        f"""SELECT e.id, e.at, e.kind, e.data, a.name AS actor, n.name AS place, n.kind AS place_kind,
                   fr.name AS resident, w.name AS worker
            FROM events e
            LEFT JOIN residents a ON a.id = e.actor_id
            LEFT JOIN hops h ON e.ref_type = 'hop' AND h.id = e.ref_id
            LEFT JOIN nodes n ON n.id = h.node_id
            LEFT JOIN followups f ON e.ref_type = 'followup' AND f.id = e.ref_id
            LEFT JOIN residents fr ON fr.id = f.resident_id
            LEFT JOIN residents w ON w.id = f.worker_id
            WHERE e.id > ? AND e.kind IN ({marks})
              AND ((e.ref_type = 'alert' AND e.ref_id = ?) OR json_extract(e.data, '$.alert_id') = ?)
            ORDER BY e.id LIMIT ?""",
        (after_id, *STORY_KINDS, alert_id, alert_id, limit))
    return [dict(r, data=json.loads(r["data"]) if r["data"] else {}) for r in rows]


def proxy_only_households(store: Store, alert_id: int) -> int:
    """Households of `alert_id` confirmed only by someone else (a lead for neighbours without WeChat)."""
    return store.scalar(
        "SELECT COUNT(*) FROM (SELECT household_id FROM acks WHERE alert_id = ? GROUP BY household_id "
        "HAVING MAX(by_proxy_id IS NULL) = 0)", (alert_id,)) or 0


# -- the community loops' chapter: who plays which part --------------------------------------------
_ON_WECHAT = "(r.wecom_userid IS NOT NULL OR r.oa_openid IS NOT NULL)"


def lift_unit(store: Store, min_owners: int = 9) -> dict | None:
    """The first unit (单元) with at least `min_owners` owner households whose owner is on WeChat:
    {building_id, building, compound, unit, households}."""
    return store.q1(
        f"""SELECT h.building_id, b.name AS building, COALESCE(c.name, '') AS compound, h.unit,
                   COUNT(*) AS households
            FROM households h JOIN nodes b ON b.id = h.building_id LEFT JOIN nodes c ON c.id = b.parent_id
            WHERE h.active = 1 AND h.unit != ''
            GROUP BY h.building_id, h.unit
            HAVING SUM(EXISTS (SELECT 1 FROM residents r WHERE r.household_id = h.id AND r.active = 1
                               AND r.owner = 1 AND {_ON_WECHAT})) >= ?
            ORDER BY h.building_id, h.unit LIMIT 1""", (min_owners,))


def unit_owner_households(store: Store, building_id: int, unit: str) -> list[dict]:
    """The unit's households that have an owner, each with one owner on WeChat (or none: owner_id
    NULL) and its steward, in room order."""
    return store.q(
        f"""SELECT h.id, h.room, h.unit, h.steward_id,
                   (SELECT r.id FROM residents r WHERE r.household_id = h.id AND r.active = 1 AND r.owner = 1
                      AND {_ON_WECHAT} ORDER BY r.id LIMIT 1) AS owner_id
            FROM households h
            WHERE h.active = 1 AND h.building_id = ? AND h.unit = ?
              AND EXISTS (SELECT 1 FROM residents r WHERE r.household_id = h.id AND r.active = 1 AND r.owner = 1)
            ORDER BY CAST(h.room AS INTEGER), h.room""", (building_id, unit))


def wish_household(store: Store) -> dict | None:
    """A resident on WeChat living in a household with an elderly person living alone (else any
    household): {resident_id, household_id, label, building_id, grid_id}."""
    return store.q1(
        f"""SELECT r.id AS resident_id, h.id AS household_id, h.label, h.building_id, h.room, b.name AS building,
                   COALESCE(c.name, '') AS compound
            FROM residents r JOIN households h ON h.id = r.household_id JOIN nodes b ON b.id = h.building_id
            LEFT JOIN nodes c ON c.id = b.parent_id
            WHERE r.active = 1 AND {_ON_WECHAT} AND r.roles = 'resident'
            ORDER BY (r.vulnerable LIKE '%独居老人%') DESC, r.id LIMIT 1""")


def volunteer_near(store: Store, building_id: int) -> dict | None:
    """A volunteer on WeChat in the same grid as this building (the one nearest in the register)."""
    return store.q1(
        f"""SELECT r.* FROM residents r JOIN households h ON h.id = r.household_id
            JOIN nodes b ON b.id = h.building_id JOIN nodes c ON c.id = b.parent_id
            WHERE r.active = 1 AND {_ON_WECHAT} AND (',' || r.roles || ',') LIKE '%,volunteer,%'
              AND c.parent_id = (SELECT c2.parent_id FROM nodes b2 JOIN nodes c2 ON c2.id = b2.parent_id
                                 WHERE b2.id = ?)
            ORDER BY ABS(h.building_id - ?), r.id LIMIT 1""", (building_id, building_id))


def buildings_to_score(store: Store, n: int = 4) -> list[dict]:
    """One building from each of the first `n` compounds: {compound, building}."""
    return store.q(
        """SELECT c.name AS compound, MIN(b.name) AS building FROM nodes c
           JOIN nodes b ON b.parent_id = c.id AND b.kind = 'building'
           WHERE c.kind = 'compound' GROUP BY c.id ORDER BY c.id LIMIT ?""", (n,))
