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


def last_event_id(store: Store) -> int:
    return store.scalar("SELECT COALESCE(MAX(id), 0) FROM events") or 0


def proxy_only_households(store: Store, alert_id: int) -> int:
    """Households of `alert_id` confirmed only by someone else (a lead for neighbours without WeChat)."""
    return store.scalar(
        "SELECT COUNT(*) FROM (SELECT household_id FROM acks WHERE alert_id = ? GROUP BY household_id "
        "HAVING MAX(by_proxy_id IS NULL) = 0)", (alert_id,)) or 0
