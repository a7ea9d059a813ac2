"""Residents' requests, the closed loop 居民点单 → 社区接单 → 办单 → 评单: the public face.

Filing (text, photos, voice) and reading live here; the lifecycle is bot.domain.requests.lifecycle, who
may see and do what is bot.domain.requests.access, reminders bot.domain.requests.reminders, the reading of
words bot.domain.requests.rules. Everything callers need is importable from this module. Domain only:
no transport imports, no SQL (rows are bot.data.requests); sends go through deps.outbox with
once-only keys, the timer is re-armed through deps.timers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core import texts
from bot.data import people
from bot.data import requests as rows
from bot.data.store import Store
from bot.domain import digest
from bot.domain.ports import Deps
from bot.domain.requests.access import (
    LEVEL_BUILDING,
    LEVEL_GRID,
    BadInput,
    Forbidden,
    InvalidTransition,
    NotFound,
    RequestError,
    can_manage,
    can_work,
    get,
    has_duty,
    insert_media,
    load,
    log_event,
    people_at,
    rearm,
    scope,
    tell,
    view,
)
from bot.domain.requests.lifecycle import HELPER_ROLES, TRANSITIONS, accept, assign, comment, rate, resolve, start
from bot.domain.requests.reminders import due_reminders, next_due_at, run_due
from bot.domain.requests.rules import Reading, classify, extract_place, read_message

__all__ = [  # what callers (handlers, acks, the dashboard, the CLI) use
    "file_request", "add_media", "list_requests", "history", "get", "load", "view", "media",
    "media_count", "todo", "ask_clarification", "take_clarification", "clarification_open",
    "Pending", "filer_of",
    "helper_names", "buildings_for", "search_register", "household_page",
    "accept", "assign", "start", "resolve", "rate", "comment", "TRANSITIONS", "OPEN_STATES",
    "RequestError", "NotFound", "Forbidden", "InvalidTransition", "BadInput",
    "classify", "extract_place", "read_message", "Reading", "due_reminders", "run_due",
    "next_due_at", "MEDIA_WINDOW_S", "LIST_MAX", "can_manage", "can_work", "scope", "has_duty",
]

OPEN_STATES = rows.OPEN
MEDIA_WINDOW_S = 30 * 60  # a photo this soon after a request belongs to it
LIST_MAX = 500  # the most rows one listing returns (dashboard queue, API)
CLARIFY, CLARIFY_TTL_S = "request_clarify", 30 * 60
T = "messages/requests/"


# -- reading -------------------------------------------------------------------------------
def list_requests(store: Store, person: dict, *, mine: bool = False, open_only: bool = False,
                  state: str | None = None, category: str | None = None,
                  urgency: str | None = None, building: int | None = None,
                  limit: int | None = None) -> list[dict]:
    """Requests this person may see, newest first; `mine` = only the ones they filed.
    At most `limit` rows, never more than LIST_MAX (None = LIST_MAX): no caller can lift the
    cap; a limit below 1 is refused (BadInput), not read as "no limit"."""
    if limit is not None and limit < 1:
        raise BadInput(None, what="limit")
    limit = LIST_MAX if limit is None else min(int(limit), LIST_MAX)
    return rows.search(store, led=scope(store, person), viewer_id=person["id"],
                       filer_id=person["id"] if mine else None,
                       states=OPEN_STATES if open_only else None,
                       filters={"state": state, "category": category, "urgency": urgency,
                                "building_id": building}, limit=limit)


def history(store: Store, request_id: int) -> list[dict]:
    """The request's audit events, oldest first (`data` is the JSON text as logged)."""
    return rows.history(store, request_id)


def media(store: Store, request_id: int) -> list[dict]:
    return rows.media(store, request_id)


def media_count(store: Store, request_id: int) -> int:
    return rows.media_count(store, request_id)


def todo(store: Store, person: dict) -> list[dict] | None:
    """Open requests this person should act on, oldest first (the one waiting longest leads):
    in the buildings they lead, or assigned to them. None when they lead nothing and nothing
    was ever assigned to them: the question is not theirs to ask."""
    led = scope(store, person)
    found = [r for r in list_requests(store, person, open_only=True)
             if r["assignee_id"] == person["id"] or led is None
             or (r["building_id"] is not None and r["building_id"] in led)]
    if not found and led == set():
        return None
    found.reverse()
    return found


def filer_of(store: Store, req: dict) -> dict | None:
    """Name and phone of who filed the request (for those allowed to see the request)."""
    p = people.get(store, req["resident_id"]) if req["resident_id"] else None
    return {"name": p["name"], "phone": p["phone"]} if p else None


def helper_names(store: Store, led: set[int] | frozenset[int] | None) -> list[str]:
    """Names offered for 派单: helpers registered in the viewer's area (or without a home)."""
    return sorted({r["name"] for r in rows.active_with_building(store)
                   if set(HELPER_ROLES) & set((r["roles"] or "").split(","))
                   and (led is None or r["building_id"] is None or r["building_id"] in led)})


def buildings_for(store: Store, led: set[int] | frozenset[int] | None) -> list[dict]:
    """Buildings ({id, name}) a viewer may filter by: their own, or all for staff."""
    return [b for b in rows.buildings_named(store) if led is None or b["id"] in led]


def search_register(store: Store, led: set[int] | frozenset[int] | None, term: str
                    ) -> tuple[list[dict], list[dict]]:
    """(people, households) matching a name, phone or household label; a lead finds only their
    own buildings'. An empty term finds nothing (the register is not listed wholesale)."""
    term = (term or "").strip()
    if not term:
        return [], []
    found_people, homes = rows.find_people(store, term), rows.find_households(store, term)
    if led is not None:
        found_people = [p for p in found_people if p["building_id"] in led]
        homes = [h for h in homes if h["building_id"] in led]
    return found_people, homes


def household_page(deps: Deps, led: set[int] | frozenset[int] | None, household_id: int
                   ) -> dict:
    """A household with its people, its acks and its requests, if the viewer's area holds it."""
    home = rows.household_card(deps.store, household_id)
    if home is None:
        raise NotFound(None, what="household")
    if led is not None and home["building_id"] not in led:
        raise Forbidden(None, action="view")
    return {"home": home, "people": rows.household_people(deps.store, household_id),
            "acks": rows.household_acks(deps.store, household_id),
            "requests": [view(deps, r) for r in rows.of_household(deps.store, household_id)]}


# -- the one clarifying question -----------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """Our open question to someone: 'what' (what do you need?) after a greeting, 'confirm'
    (file this?) after a message we could not read as a report or as small talk."""

    text: str
    ask: str = "what"


def ask_clarification(deps: Deps, user_key: str, text: str, ask: str = "what") -> bool:
    """Remember that we asked this user a question about `text`. Another concern's live
    conversation (e.g. a staff member confirming an alert) is never overwritten: then False,
    and the caller must not ask."""
    if ask not in ("what", "confirm"):
        raise ValueError(f"unknown question {ask!r}")
    now = deps.clock.now()
    return rows.claim_conversation(deps.store, user_key, CLARIFY, {"text": text, "ask": ask},
                                   now + CLARIFY_TTL_S, now)


def clarification_open(deps: Deps, user_key: str) -> bool:
    """Whether we are waiting for this user's answer (without answering it)."""
    return rows.has_conversation(deps.store, user_key, CLARIFY, deps.clock.now())


def take_clarification(deps: Deps, user_key: str) -> Pending | None:
    """Our open question to this user, if any; it counts as answered once taken."""
    data = rows.take_conversation(deps.store, user_key, CLARIFY, deps.clock.now())
    if data is None:
        return None
    return Pending(str(data.get("text") or ""), data.get("ask") or "what")


# -- filing --------------------------------------------------------------------------------
def file_request(deps: Deps, *, resident: dict, text: str, alert_id: int | None = None,
                 force_urgent: bool = False, media: list[dict] | None = None,
                 key: str | None = None, reply_via: tuple[str, str] | None = None,
                 kind: str = "request") -> dict:
    """File a request for `resident`, send the receipt and tell the leads. `kind`: 'request',
    or 'wish' (a resident's small wish, 微心愿, for staff to open for claiming). `key` (e.g. the
    inbound dedupe key) makes it idempotent: the same key returns the request already filed.
    `reply_via` = (outbox channel, target) for the receipt, when it must go back the way the
    message came; otherwise the resident's preferred contact is used."""
    store, now = deps.store, deps.clock.now()
    if key:
        done = rows.id_by_source_key(store, key)
        if done is not None:
            return get(store, done)
    category, urgency = classify(text, deps.settings)
    urgency = "urgent" if force_urgent else urgency
    home = people.household(store, resident["household_id"]) if resident.get("household_id") \
        else None
    with store.transaction():
        rid = rows.insert(store, {
            "resident_id": resident["id"], "household_id": resident.get("household_id"),
            "building_id": home["building_id"] if home else None, "alert_id": alert_id,
            "text": text.strip(), "category": category, "urgency": urgency,
            "place": extract_place(text), "created_at": now, "source_key": key, "kind": kind})
        for m in media or []:
            insert_media(store, rid, m, now)
        log_event(store, now, "request.file", rid, resident["id"], key=key, alert_id=alert_id,
                  category=category, urgency=urgency, **({"wish": True} if kind == "wish" else {}))
    req = get(store, rid)
    v = view(deps, req)
    tell(deps, resident, T + "receipt.j2", f"req:{rid}:filed", via=reply_via, r=v)
    # urgent: the grid lead hears at once, not only after an escalation deadline
    leads = people_at(store, req, LEVEL_BUILDING)
    if urgency == "urgent":
        leads += [p for p in people_at(store, req, LEVEL_GRID) if p not in leads]
    line = texts.render(T + "digest_line.j2", r=v) if urgency != "urgent" else ""
    for p in (p for p in leads if p["id"] != resident["id"]):  # a lead reporting knows already
        # an ordinary request waits for the lead's digest once they are past the hourly cap
        digest.notify(deps, p, T + "new_request.j2", f"req:{rid}:filed:{p['id']}",
                      kind="new_request", line=line, urgent=urgency == "urgent", ref_id=rid,
                      purpose="request", r=v, filer=resident)
    rearm(deps)
    return req


def add_media(deps: Deps, *, resident: dict, kind: str, media_id: str,
              meta: dict[str, Any] | None = None, text: str | None = None,
              reply_via: tuple[str, str] | None = None) -> tuple[dict, bool]:
    """Attach a photo/voice to the resident's latest open request of the last few minutes, or
    file a new one. Returns (request, created). The media id is the natural idempotency key."""
    store, now = deps.store, deps.clock.now()
    seen = rows.request_of_media(store, media_id)
    if seen is not None:
        return get(store, seen), False
    item = {"kind": kind, "media_id": media_id, "meta": meta or {}}
    recent = rows.latest_open_since(store, resident["id"], now - MEDIA_WINDOW_S)
    if recent is None:
        text = text or texts.render(T + "media_text.j2", kind=kind)
        return file_request(deps, resident=resident, text=text, media=[item],
                            reply_via=reply_via), True
    with store.transaction():
        insert_media(store, recent["id"], item, now)
        ev = log_event(store, now, "request.media", recent["id"], resident["id"], media=kind,
                       media_id=media_id)
    tell(deps, resident, T + "media_added.j2", f"req:{recent['id']}:e{ev}", via=reply_via,
         r=view(deps, recent), kind=kind)
    return recent, False
