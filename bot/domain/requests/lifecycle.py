"""The request lifecycle: filed → accepted → assigned → in_progress → resolved → rated → closed.

A rating of 1–2 reopens the request to the grid lead (back to 'accepted', reopened + 1). Every
step is one guarded UPDATE (compare-and-set on the old state, so two leads pressing 接单 at once
cannot both win), one row in `events`, and a templated message to the resident, keyed by the
event id so a retry sends nothing twice. Permission checks are here, not in the handlers.
"""
from __future__ import annotations

from typing import Callable

from bot.data import people
from bot.data import requests as rows
from bot.data.store import Store
from bot.domain.ports import Deps
from bot.domain.requests.access import (
    LEVEL_GRID,
    BadInput,
    Forbidden,
    InvalidTransition,
    NotFound,
    can_manage,
    can_work,
    get,
    load,
    log_event,
    people_at,
    rearm,
    tell,
    view,
)

T = "messages/requests/"
# action -> (states it may start from, state it leads to). assign from 'filed' accepts too:
# in practice the compound branch often dispatches directly (三单制: 下单 → 接单).
TRANSITIONS = {
    "accept": ({"filed"}, "accepted"),
    "assign": ({"filed", "accepted", "assigned", "in_progress"}, "assigned"),
    "start": ({"accepted", "assigned"}, "in_progress"),
    "resolve": ({"accepted", "assigned", "in_progress"}, "resolved"),
    "rate": ({"resolved"}, "rated"),
    "reopen": ({"resolved"}, "accepted"),
    "close": ({"resolved", "rated"}, "closed"),
    # 三单制 / 微心愿 (bot.domain.claims): staff open it for claiming (accepting it if need be), a
    # registered volunteer claims it (an assignment to themself), or gives it back
    "offer": ({"filed", "accepted"}, "accepted"),
    "claim": ({"accepted"}, "assigned"),
    "release": ({"assigned", "in_progress"}, "accepted"),
}
# people a request can be assigned to by name; anyone else is free text ("王师傅", "物业")
HELPER_ROLES = ("volunteer", "party_member", "social_worker", "staff", "building_lead",
                "grid_lead")


def _step(deps: Deps, req: dict, action: str, actor: dict | None, sets: dict, *,
          where: dict | None = None, **data) -> int:
    """Move `req` along TRANSITIONS; returns the event id. Refuses a move from the wrong state,
    also when another actor changed the row since it was read (or a `where` column no longer
    holds its value: rows.move)."""
    allowed, target = TRANSITIONS[action]
    if req["state"] not in allowed:
        raise InvalidTransition(req["id"], state=req["state"], action=action)
    now = deps.clock.now()
    with deps.store.transaction():
        if not rows.move(deps.store, req["id"], req["state"], {"state": target, **sets}, where):
            raise InvalidTransition(req["id"], state=get(deps.store, req["id"])["state"],
                                    action=action)
        return log_event(deps.store, now, f"request.{action}", req["id"],
                         actor["id"] if actor else None, frm=req["state"], to=target, **data)


def _tell_filer(deps: Deps, request_id: int, template: str, ev: int, **context) -> dict:
    req = get(deps.store, request_id)
    filer = people.get(deps.store, req["resident_id"]) if req["resident_id"] else None
    if filer is not None:
        tell(deps, filer, T + template, f"req:{request_id}:e{ev}", r=view(deps, req), **context)
    rearm(deps)
    return req


def _guard(deps: Deps, actor: dict, request_id: int,
           check: Callable[[Store, dict, dict], bool], action: str) -> dict:
    """The request, if `check` allows this actor the action (refused naming the action, not
    "view": a lead from another building should hear that it isn't theirs to handle)."""
    req = get(deps.store, request_id)
    if req is None:
        raise NotFound(request_id)
    if not check(deps.store, actor, req):
        raise Forbidden(request_id, action=action)
    return req


def accept(deps: Deps, actor: dict, request_id: int) -> dict:
    req = _guard(deps, actor, request_id, can_manage, "accept")
    ev = _step(deps, req, "accept", actor, {"accepted_by": actor["id"],
                                            "accepted_at": deps.clock.now(),
                                            "escalation_level": 0})
    return _tell_filer(deps, request_id, "accepted.j2", ev, actor=actor)


def assign(deps: Deps, actor: dict, request_id: int, assignee: str) -> dict:
    """Assign to a registered helper (matched by name) or to free text ("王师傅", "物业")."""
    req = _guard(deps, actor, request_id, can_manage, "assign")
    name = (assignee or "").strip()
    if not name:
        raise BadInput(request_id, what="assignee")
    now = deps.clock.now()
    helpers = [p for p in rows.active_named(deps.store, name)
               if set(HELPER_ROLES) & set((p["roles"] or "").split(","))]
    person = helpers[0] if len(helpers) == 1 else None  # two of the same name: keep it text
    sets = {"assignee_id": person["id"] if person else None, "assignee_name": name,
            "assigned_at": now}
    if req["state"] == "filed":  # dispatching directly also accepts, and starts a new phase
        sets.update(accepted_by=actor["id"], accepted_at=now, escalation_level=0)
    if req.get("claim_state") and not (person and person["id"] == req.get("claimed_by")):
        # dispatched to someone else: no longer open for claiming, nor the claimant's
        sets.update(claim_state=None, claimed_by=None, claimed_at=None)
    ev = _step(deps, req, "assign", actor, sets, assignee=name)
    req = _tell_filer(deps, request_id, "assigned.j2", ev, actor=actor, assignee=name)
    if person is not None:
        tell(deps, person, T + "assigned_to_you.j2", f"req:{request_id}:e{ev}:{person['id']}",
             r=view(deps, req), actor=actor)
    return req


def start(deps: Deps, actor: dict, request_id: int) -> dict:
    req = _guard(deps, actor, request_id, can_work, "start")
    ev = _step(deps, req, "start", actor, {})
    return _tell_filer(deps, request_id, "started.j2", ev, actor=actor)


def resolve(deps: Deps, actor: dict, request_id: int, note: str, *,
            hours: float | None = None) -> dict:
    """Done; the resident is asked to rate it. `hours`: a volunteer's time on a claimed one."""
    req = _guard(deps, actor, request_id, can_work, "resolve")
    if not (note or "").strip():
        raise BadInput(request_id, what="note")
    sets = {"resolution": note.strip(), "resolved_at": deps.clock.now(), "rate_asked_at": None,
            "escalation_level": 0}
    if req.get("claim_state") == "open":  # done before anyone claimed it: off the open list
        sets["claim_state"] = None
    extra = {}
    if hours is not None:
        sets["hours"] = extra["hours"] = hours
    ev = _step(deps, req, "resolve", actor, sets, note=note.strip(), **extra)
    return _tell_filer(deps, request_id, "resolved.j2", ev, actor=actor)


def rate(deps: Deps, actor: dict, request_id: int, score: int | None, comment: str = "") -> dict:
    """Only the resident who filed it rates. 3–5 closes it (nothing is left to do); 1–2 reopens
    it to the grid lead, whose escalation clock starts afresh at the grid level."""
    req = load(deps.store, actor, request_id)
    if req["resident_id"] != actor["id"]:
        raise Forbidden(request_id, action="rate")
    if score not in (1, 2, 3, 4, 5):
        raise BadInput(request_id, what="score")
    now, comment = deps.clock.now(), (comment or "").strip()
    rated = {"rating": score, "rating_comment": comment or None, "rated_at": now}
    if score >= 3:
        _step(deps, req, "rate", actor, rated, score=score, comment=comment)
        ev = _step(deps, get(deps.store, request_id), "close", actor, {"closed_at": now},
                   reason="rated")
        return _tell_filer(deps, request_id, "rated.j2", ev)
    grid = people_at(deps.store, req, LEVEL_GRID)
    ev = _step(deps, req, "reopen", actor, {
        **rated, "reopened": req["reopened"] + 1, "resolved_at": None, "rate_asked_at": None,
        "escalation_level": LEVEL_GRID, "accepted_by": grid[0]["id"] if grid else None},
        score=score, comment=comment)
    req = _tell_filer(deps, request_id, "reopened.j2", ev)
    for p in grid:
        tell(deps, p, T + "reopened_lead.j2", f"req:{request_id}:e{ev}:{p['id']}",
             r=view(deps, req), score=score, comment=comment)
    return req


# for the acts built on this lifecycle (bot.domain.claims): one guarded step, telling the filer
step, guard = _step, _guard


def comment(deps: Deps, actor: dict, request_id: int, text: str) -> dict:
    """An internal note in the history (not sent to the resident): who called whom, what's next.
    Those who work on it may add one, and so may the resident who filed it."""
    req = load(deps.store, actor, request_id)
    if req["resident_id"] != actor["id"] and not can_work(deps.store, actor, req):
        raise Forbidden(request_id, action="comment")
    if not (text or "").strip():
        raise BadInput(request_id, what="comment")
    log_event(deps.store, deps.clock.now(), "request.comment", request_id, actor["id"],
              text=text.strip())
    return req
