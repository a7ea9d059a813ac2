"""Request reminders, derived from the rows alone (the database is the truth, not the timer).

What is due is computed from each open request's state, timestamps and escalation_level:
- not accepted within accept_within_h (urgent: accept_within_h_urgent) hours → one level up;
- not resolved within resolve_within_d days → one level up;
- resolved rate_after_h hours ago and not rated → ask the resident to rate;
- asked to rate rate_after_h hours ago and still silent → close it unrated.
Levels go building lead → grid lead → staff (request_access.people_at). escalation_level counts
within the current phase (waiting for acceptance / waiting for resolution) and restarts when the
phase changes, so each escalation happens once per phase. Every firing is a compare-and-set
UPDATE, so a second run, a second process or a restart finds nothing left to do.

What a firing tells people goes through bot.domain.digest: escalation reminders wait for the
person's digest (unless the request is urgent), the resident's rating question and closing
notice go at once unless the resident is past the hourly cap.

The deps's single escalation timer (deps.timers, run by bot.domain.escalation) takes next_due_at()
into account and calls run_due(); tests skip the timer and call run_due(deps, now) with an
injected time. This module never imports the escalation module: escalation imports it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.core import texts
from bot.data import people
from bot.data import requests as rows
from bot.domain import digest
from bot.domain.ports import Deps
from bot.domain.requests.access import LEVEL_GRID, LEVEL_STAFF, log_event, people_at, view

log = logging.getLogger("linli.requests")

_ACTIVE = ("accepted", "assigned", "in_progress")
T = "messages/requests/"


@dataclass(frozen=True)
class Due:
    at: float
    kind: str  # 'escalate' | 'ask_rating' | 'close_unrated'
    request_id: int
    level: int = 0  # escalate: the level it rises to
    phase: str = ""  # escalate: 'accept' | 'resolve'


def resolve_period_s(req: dict, rs) -> float:
    """How long a request may stay unresolved before it goes one level up: per urgency, then
    per category ([requests] resolve_within_d_by_category), then the default."""
    if req["urgency"] == "urgent":
        return rs.resolve_within_h_urgent * 3600.0
    return float(rs.resolve_within_d_by_category.get(req["category"], rs.resolve_within_d)) * 86400.0


def _due(req: dict, rs) -> Due | None:
    """The next reminder this request is waiting for, or None."""
    state, level = req["state"], req["escalation_level"]
    if state == "filed" or state in _ACTIVE:
        if level >= LEVEL_STAFF:
            return None
        if state == "filed":
            hours = rs.accept_within_h_urgent if req["urgency"] == "urgent" else rs.accept_within_h
            start, period, base, phase = req["created_at"], hours * 3600, 0, "accept"
        else:
            # a reopened request is back with the grid lead, counted from the low rating
            reopened = req["reopened"] > 0 and req["rated_at"] is not None
            start = req["rated_at"] if reopened else req["created_at"]
            base = LEVEL_GRID if reopened else 0
            period, phase = resolve_period_s(req, rs), "resolve"
        return Due(start + period * (level - base + 1), "escalate", req["id"], level + 1, phase)
    if state == "resolved":
        if req["rate_asked_at"] is None:
            return Due(req["resolved_at"] + rs.rate_after_h * 3600, "ask_rating", req["id"])
        return Due(req["rate_asked_at"] + rs.rate_after_h * 3600, "close_unrated", req["id"])
    return None


def _all_due(deps: Deps) -> list[Due]:
    found = (_due(r, deps.settings.requests) for r in rows.waiting(deps.store))
    return sorted((d for d in found if d is not None), key=lambda d: (d.at, d.request_id))


def due_reminders(deps: Deps, now: float) -> list[Due]:
    """Everything due at `now`, oldest first."""
    return [d for d in _all_due(deps) if d.at <= now]


def next_due_at(deps: Deps) -> float | None:
    """When the earliest reminder falls due (possibly in the past), or None if none waits."""
    dues = _all_due(deps)
    return dues[0].at if dues else None


async def run_due(deps: Deps, now: float | None = None) -> int:
    """Fire what is due at `now`; returns how many fired. Safe to call any number of times.
    (async because it runs as a scheduled job, from bot.domain.escalation.run_due.)"""
    now = deps.clock.now() if now is None else now
    fired = 0
    for due in due_reminders(deps, now):
        try:
            fired += _fire(deps, due, now)
        except Exception:  # one broken row must not hold back the others
            log.exception("request reminder %s for #%s failed", due.kind, due.request_id)
    return fired


def _fire(deps: Deps, due: Due, now: float) -> bool:
    store = deps.store
    req = rows.get(store, due.request_id)
    if req is None:
        return False
    if due.kind == "escalate":
        with store.transaction():
            if not rows.raise_level(store, req["id"], req["state"], due.level - 1, due.level):
                return False
            ev = log_event(store, now, "request.escalate", req["id"], None, level=due.level,
                           phase=due.phase)
        v = view(deps, {**req, "escalation_level": due.level})
        hours = round((now - req["created_at"]) / 3600)
        line = texts.render(T + "digest_line.j2", r=v, phase=due.phase, hours=hours)
        for p in people_at(store, req, due.level):
            # reminders are bundled into one digest per person per interval (a secretary with
            # 200 overdue requests gets a few messages an hour, not 200); an urgent request's
            # reminder still goes at once
            digest.notify(deps, p, T + "escalated.j2", f"req:{req['id']}:e{ev}:{p['id']}",
                          kind="reminder", line=line, urgent=req["urgency"] == "urgent",
                          always_digest=True, ref_id=req["id"], purpose="request", now=now,
                          r=v, phase=due.phase, hours=hours)
        return True
    filer = people.get(store, req["resident_id"]) if req["resident_id"] else None
    with store.transaction():
        if due.kind == "ask_rating":
            moved = rows.mark_rate_asked(store, req["id"], now)
            kind, template, data = "request.rate_ask", "rate_ask.j2", {}
        else:
            moved = rows.close_unrated(store, req["id"], now)
            kind, template = "request.close", "closed.j2"
            data = {"frm": "resolved", "to": "closed", "reason": "unrated"}
        if not moved:
            return False
        ev = log_event(store, now, kind, req["id"], None, **data)
    if filer is not None:
        # a resident's own request: sent at once unless they are past the hourly cap
        v = view(deps, req)
        digest.notify(deps, filer, T + template, f"req:{req['id']}:e{ev}",
                      kind="rate_ask" if due.kind == "ask_rating" else "closed",
                      line=texts.render(T + "digest_line.j2", r=v), ref_id=req["id"],
                      purpose="request", now=now, r=v)
    return True
