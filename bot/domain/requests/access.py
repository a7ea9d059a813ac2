"""Who may see a request, who may act on it, who is told about it, and how to reach them;
plus the few helpers the lifecycle, filing and reminders share (errors, event log, views).

Visibility follows the register: everyone sees their own requests (and those assigned to them);
a lead sees every building under the nodes they lead (node_leads: a building lead their
buildings, a grid lead their whole grid); staff see everything. Checks live here, in the domain,
so chat commands, the dashboard API and anything added later enforce the same rule.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from bot.core import texts
from bot.core.clock import local
from bot.core.filters import roles_of
from bot.data import org, people
from bot.data import requests as rows
from bot.data.store import Store
from bot.domain import areas
from bot.domain.ports import Deps
from bot.domain.requests.rules import DUTY_ROLES

log = logging.getLogger("linli.requests")

# escalation levels: 0 the building's leads, 1 the grid's leads, 2 community staff
LEVEL_BUILDING, LEVEL_GRID, LEVEL_STAFF = 0, 1, 2


# -- errors: handlers turn them into templated refusals, the API into 4xx ------------------
class RequestError(Exception):
    """A refused operation; `code` picks the sentence in templates/messages/requests/refused.j2."""

    code = "error"

    def __init__(self, request_id: int | None = None, **info):
        self.request_id, self.info = request_id, info
        super().__init__(f"{self.code}: request #{request_id} {info}")


class NotFound(RequestError):
    code = "not_found"


class Forbidden(RequestError):
    code = "forbidden"


class InvalidTransition(RequestError):
    code = "bad_state"


class BadInput(RequestError):
    code = "bad_input"


# -- reading and permissions -----------------------------------------------------------------
def get(store: Store, request_id: int) -> dict | None:
    return rows.get(store, request_id)


def load(store: Store, person: dict, request_id: int) -> dict:
    """The request, if this person may see it."""
    req = get(store, request_id)
    if req is None:
        raise NotFound(request_id)
    if not can_view(store, person, req):
        raise Forbidden(request_id, action="view")
    return req


def is_staff(person: Mapping[str, Any] | None) -> bool:
    return "staff" in roles_of(person)


def has_duty(person: Mapping[str, Any] | None) -> bool:
    """Leads, staff and social workers: people who work on requests rather than file them."""
    return bool(DUTY_ROLES & roles_of(person))


def scope(store: Store, person: dict) -> set[int] | None:
    """Building ids this person leads (directly or through a grid/compound); None = all."""
    if is_staff(person):
        # staff see their community (all of it, or theirs in a register with several)
        area = areas.buildings_of(store, person)
        return None if area is None else set(area)
    if person.get("id") is None:
        return set()
    led = org.led_nodes(store, person["id"])
    # buildings_under([]) means "every building": a person who leads nothing leads none
    return set(org.buildings_under(store, led)) if led else set()


def can_view(store: Store, person: dict, req: dict) -> bool:
    if person["id"] is not None and person["id"] in (req["resident_id"], req["assignee_id"]):
        return True
    return can_manage(store, person, req)


def can_manage(store: Store, person: dict, req: dict) -> bool:
    """Accept, assign, comment: staff, or a lead of the request's building."""
    led = scope(store, person)
    return led is None or (req["building_id"] is not None and req["building_id"] in led)


def can_work(store: Store, person: dict, req: dict) -> bool:
    """Start and resolve: whoever may manage it, and the person it was assigned to."""
    return (person["id"] is not None and req["assignee_id"] == person["id"]) \
        or can_manage(store, person, req)


# -- who is told ---------------------------------------------------------------------------
def grid_of(store: Store, building_id: int | None) -> int | None:
    if building_id is None:
        return None
    grid = org.ancestor(store, org.node(store, building_id), "grid")
    return grid["id"] if grid else None


def staff(store: Store) -> list[dict]:
    return people.with_role(store, "staff")


def people_at(store: Store, req: dict, level: int) -> list[dict]:
    """Who answers for a request at an escalation level. A level nobody holds (no building lead
    registered, a staff member's request without a building) passes to the next one up, so a
    request is never escalated into silence."""
    for lv in range(level, LEVEL_STAFF + 1):
        if lv == LEVEL_BUILDING:
            found = rows.leads_of(store, req["building_id"]) if req["building_id"] else []
        elif lv == LEVEL_GRID:
            grid = grid_of(store, req["building_id"])
            found = rows.leads_of(store, grid) if grid else []
        else:
            found = staff(store)
        if found:
            return found
    return []


def contact(deps: Deps, person: Mapping[str, Any]) -> tuple[str, str] | None:
    """(outbox channel, target) for a direct message: the outbound side knows the channels."""
    return deps.reach.person(person)


def tell(deps: Deps, person: dict, template: str, key: str, *,
         via: tuple[str, str] | None = None, **context) -> bool:
    """Queue one templated direct message. `key` makes it once-only across retries and restarts.
    Someone without WeChat (many elderly residents) is skipped: their lead sees the request."""
    where = via or contact(deps, person)
    if where is None:
        log.info("%s has no WeChat contact; %s not sent", person.get("id"), template)
        return False
    text = texts.render(template, person=person, **context)
    deps.outbox.enqueue(key, where[0], where[1], {"text": text}, purpose="request")
    return True


# -- shared by the lifecycle and the reminders ---------------------------------------------
def log_event(store: Store, at: float, event: str, request_id: int, actor_id: int | None,
              **data) -> int:
    """Append to the audit log and return the event id (send keys are derived from it)."""
    return rows.log_event(store, at, event, request_id, actor_id, **data)


def view(deps: Deps, req: dict) -> dict:
    """A request as templates and the API show it: the row plus the household label, the
    building's name and local times (templates must not do time-zone arithmetic)."""
    place = rows.place(deps.store, req["id"])
    tz = deps.settings.timezone

    def fmt(ts):
        return local(ts, tz).strftime("%m-%d %H:%M") if ts else ""
    return {**req, "household": place.get("household") or "",
            "building": (place.get("compound") or "") + (place.get("building") or ""),
            "created": fmt(req["created_at"]), "resolved": fmt(req["resolved_at"])}


def insert_media(store: Store, request_id: int, m: dict, now: float) -> None:
    """One photo/voice row; m = {kind, media_id, meta}."""
    rows.insert_media(store, request_id, m["kind"], m["media_id"], m.get("meta"), now)


def rearm(deps: Deps) -> None:
    """A change may bring the next reminder forward: re-arm the app's one escalation timer
    (it takes next_due_at() of this package into account)."""
    deps.timers.rearm()
