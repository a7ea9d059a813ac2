"""Residents' requests, the closed loop 居民点单 → 社区接单 → 办单 → 评单: the public face.

Filing (text, photos, voice) and reading live here; the lifecycle is bot.domain.requests.lifecycle, who
may see and do what is bot.domain.requests.access, reminders bot.domain.requests.reminders, the reading of
words bot.domain.requests.rules. Everything callers need is importable from this module. Domain only:
no transport imports; sends go through app.outbox with once-only keys.
"""
from __future__ import annotations

from bot.core import texts
from bot.domain.requests.access import (LEVEL_BUILDING, LEVEL_GRID, BadInput, Forbidden,
                                InvalidTransition, NotFound, RequestError, get, insert_media,
                                load, log_event, people_at, rearm, tell, view, visible_where)
from bot.domain.requests.lifecycle import TRANSITIONS, accept, assign, comment, rate, resolve, start
from bot.domain.requests.reminders import due_reminders, next_due_at, run_due
from bot.domain.requests.rules import classify, extract_place

__all__ = [  # what callers (handlers, acks, the dashboard, the CLI) use
    "file_request", "add_media", "list_requests", "history", "get", "load",
    "accept", "assign", "start", "resolve", "rate", "comment", "TRANSITIONS", "OPEN_STATES",
    "RequestError", "NotFound", "Forbidden", "InvalidTransition", "BadInput",
    "classify", "extract_place", "due_reminders", "run_due", "next_due_at", "MEDIA_WINDOW_S",
]

OPEN_STATES = ("filed", "accepted", "assigned", "in_progress")
MEDIA_WINDOW_S = 30 * 60  # a photo this soon after a request belongs to it
T = "messages/requests/"


# -- reading -------------------------------------------------------------------------------
def list_requests(store, person: dict, *, mine: bool = False, open_only: bool = False,
                  state: str | None = None, category: str | None = None,
                  urgency: str | None = None, building: int | None = None,
                  limit: int | None = None) -> list[dict]:
    """Requests this person may see, newest first; `mine` = only the ones they filed."""
    where, params = visible_where(store, person)
    conds = [where]
    if mine:
        conds.append("r.resident_id = ?")
        params.append(person["id"])
    if open_only:
        conds.append(f"r.state IN ({','.join('?' * len(OPEN_STATES))})")
        params.extend(OPEN_STATES)
    for col, value in (("state", state), ("category", category), ("urgency", urgency),
                       ("building_id", building)):
        if value is not None:
            conds.append(f"r.{col} = ?")
            params.append(value)
    sql = f"SELECT r.* FROM requests r WHERE {' AND '.join(conds)} ORDER BY r.id DESC"
    return store.q(sql + (f" LIMIT {int(limit)}" if limit else ""), params)


def history(store, request_id: int) -> list[dict]:
    return store.q("SELECT e.id, e.at, e.kind, e.actor_id, p.name AS actor, e.data FROM events e "
                   "LEFT JOIN residents p ON p.id = e.actor_id WHERE e.ref_type = 'request' "
                   "AND e.ref_id = ? ORDER BY e.id", (request_id,))


# -- filing --------------------------------------------------------------------------------
def file_request(app, *, resident: dict, text: str, alert_id: int | None = None,
                 force_urgent: bool = False, media: list[dict] | None = None,
                 key: str | None = None, reply_via: tuple[str, str] | None = None) -> dict:
    """File a request for `resident`, send the receipt and tell the leads. `key` (e.g. the
    inbound dedupe key) makes it idempotent: the same key returns the request already filed.
    `reply_via` = (outbox channel, target) for the receipt, when it must go back the way the
    message came; otherwise the resident's preferred contact is used."""
    store, now = app.store, app.clock.now()
    if key:
        done = store.scalar("SELECT id FROM requests WHERE source_key = ?", (key,))
        if done is not None:
            return get(store, done)
    category, urgency = classify(text, app.settings)
    urgency = "urgent" if force_urgent else urgency
    building_id = store.scalar("SELECT building_id FROM households WHERE id = ?",
                               (resident.get("household_id"),))
    with store.transaction() as conn:
        rid = conn.execute(
            "INSERT INTO requests (resident_id, household_id, building_id, alert_id, text, "
            "category, urgency, place, created_at, source_key) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (resident["id"], resident.get("household_id"), building_id, alert_id, text.strip(),
             category, urgency, extract_place(text), now, key)).lastrowid
        for m in media or []:
            insert_media(store, rid, m, now)
        log_event(store, now, "request.file", rid, resident["id"], key=key, alert_id=alert_id,
                  category=category, urgency=urgency)
    req = get(store, rid)
    v = view(app, req)
    tell(app, resident, T + "receipt.j2", f"req:{rid}:filed", via=reply_via, r=v)
    # urgent: the grid lead hears at once, not only after an escalation deadline
    leads = people_at(store, req, LEVEL_BUILDING)
    if urgency == "urgent":
        leads += [p for p in people_at(store, req, LEVEL_GRID) if p not in leads]
    for p in (p for p in leads if p["id"] != resident["id"]):  # a lead reporting knows already
        tell(app, p, T + "new_request.j2", f"req:{rid}:filed:{p['id']}", r=v, filer=resident)
    rearm(app)
    return req


def add_media(app, *, resident: dict, kind: str, media_id: str, meta: dict | None = None,
              text: str | None = None, reply_via: tuple[str, str] | None = None
              ) -> tuple[dict, bool]:
    """Attach a photo/voice to the resident's latest open request of the last few minutes, or
    file a new one. Returns (request, created). The media id is the natural idempotency key."""
    store, now = app.store, app.clock.now()
    seen = store.scalar("SELECT request_id FROM request_media WHERE media_id = ?", (media_id,))
    if seen is not None:
        return get(store, seen), False
    item = {"kind": kind, "media_id": media_id, "meta": meta or {}}
    recent = store.q1(
        f"SELECT * FROM requests WHERE resident_id = ? AND created_at >= ? AND state IN "
        f"({','.join('?' * len(OPEN_STATES))}) ORDER BY id DESC LIMIT 1",
        (resident["id"], now - MEDIA_WINDOW_S, *OPEN_STATES))
    if recent is None:
        text = text or texts.render(T + "media_text.j2", kind=kind)
        return file_request(app, resident=resident, text=text, media=[item],
                            reply_via=reply_via), True
    with store.transaction():
        insert_media(store, recent["id"], item, now)
        ev = log_event(store, now, "request.media", recent["id"], resident["id"], media=kind,
                       media_id=media_id)
    tell(app, resident, T + "media_added.j2", f"req:{recent['id']}:e{ev}", via=reply_via,
         r=view(app, recent), kind=kind)
    return recent, False


