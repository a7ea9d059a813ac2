"""Who may see a request, who may act on it, who is told about it, and how to reach them;
plus the few helpers the lifecycle, filing and reminders share (errors, event log, views).

Visibility follows the register: everyone sees their own requests (and those assigned to them);
a lead sees every building under the nodes they lead (node_leads: a building lead their
buildings, a grid lead their whole grid); staff see everything. Checks live here, in the domain,
so chat commands, the dashboard API and anything added later enforce the same rule.
"""
from __future__ import annotations

import json
import logging

from bot.core import texts
from bot.core.filters import roles_of

log = logging.getLogger("linli.requests")

# escalation levels: 0 the building's leads, 1 the grid's leads, 2 community staff
LEVEL_BUILDING, LEVEL_GRID, LEVEL_STAFF = 0, 1, 2

_LED_BUILDINGS = """
    WITH RECURSIVE down(id, kind) AS (
        SELECT n.id, n.kind FROM node_leads l JOIN nodes n ON n.id = l.node_id
        WHERE l.resident_id = ?
        UNION SELECT c.id, c.kind FROM nodes c JOIN down ON c.parent_id = down.id)
    SELECT id FROM down WHERE kind = 'building'"""
_ANCESTOR = """
    WITH RECURSIVE up(id, kind, parent_id) AS (
        SELECT id, kind, parent_id FROM nodes WHERE id = ?
        UNION ALL SELECT n.id, n.kind, n.parent_id FROM nodes n JOIN up ON n.id = up.parent_id)
    SELECT id FROM up WHERE kind = ?"""


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
def get(store, request_id: int) -> dict | None:
    return store.q1("SELECT * FROM requests WHERE id = ?", (request_id,))


def load(store, person: dict, request_id: int) -> dict:
    """The request, if this person may see it."""
    req = get(store, request_id)
    if req is None:
        raise NotFound(request_id)
    if not can_view(store, person, req):
        raise Forbidden(request_id, action="view")
    return req


def is_staff(person: dict | None) -> bool:
    return "staff" in roles_of(person)


def scope(store, person: dict) -> set[int] | None:
    """Building ids this person leads (directly or through a grid/compound); None = all."""
    if is_staff(person):
        return None
    return {r["id"] for r in store.q(_LED_BUILDINGS, (person["id"],))}


def can_view(store, person: dict, req: dict) -> bool:
    if person["id"] in (req["resident_id"], req["assignee_id"]):
        return True
    return can_manage(store, person, req)


def can_manage(store, person: dict, req: dict) -> bool:
    """Accept, assign, comment: staff, or a lead of the request's building."""
    led = scope(store, person)
    return led is None or (req["building_id"] is not None and req["building_id"] in led)


def can_work(store, person: dict, req: dict) -> bool:
    """Start and resolve: whoever may manage it, and the person it was assigned to."""
    return req["assignee_id"] == person["id"] or can_manage(store, person, req)


def visible_where(store, person: dict) -> tuple[str, list]:
    """A SQL condition on `requests` (aliased r) selecting what this person may see."""
    led = scope(store, person)
    if led is None:
        return "1", []
    marks = ",".join("?" * len(led)) or "NULL"
    return (f"(r.resident_id = ? OR r.assignee_id = ? OR r.building_id IN ({marks}))",
            [person["id"], person["id"], *sorted(led)])


# -- who is told ---------------------------------------------------------------------------
def _leads_of(store, node_id: int | None) -> list[dict]:
    if node_id is None:
        return []
    return store.q("SELECT r.* FROM node_leads l JOIN residents r ON r.id = l.resident_id "
                   "WHERE l.node_id = ? AND r.active = 1 ORDER BY l.rank, r.id", (node_id,))


def grid_of(store, building_id: int | None) -> int | None:
    if building_id is None:
        return None
    row = store.q1(_ANCESTOR, (building_id, "grid"))
    return row["id"] if row else None


def staff(store) -> list[dict]:
    return [r for r in store.q("SELECT * FROM residents WHERE active = 1 ORDER BY id")
            if is_staff(r)]


def people_at(store, req: dict, level: int) -> list[dict]:
    """Who answers for a request at an escalation level. A level nobody holds (no building lead
    registered, a staff member's request without a building) passes to the next one up, so a
    request is never escalated into silence."""
    for lv in range(level, LEVEL_STAFF + 1):
        if lv == LEVEL_BUILDING:
            people = _leads_of(store, req["building_id"])
        elif lv == LEVEL_GRID:
            people = _leads_of(store, grid_of(store, req["building_id"]))
        else:
            people = staff(store)
        if people:
            return people
    return []


def contact(person: dict) -> tuple[str, str] | None:
    """(outbox channel, target) for a direct message. WeCom first: unlike the Official Account's
    customer-service messages it has no 48-hour window."""
    if person.get("wecom_userid"):
        return "wecom_user", person["wecom_userid"]
    if person.get("oa_openid"):
        return "oa_cs", person["oa_openid"]
    return None


def tell(app, person: dict, template: str, key: str, *, via: tuple[str, str] | None = None,
         **context) -> bool:
    """Queue one templated direct message. `key` makes it once-only across retries and restarts.
    Someone without WeChat (many elderly residents) is skipped: their lead sees the request."""
    where = via or contact(person)
    if where is None:
        log.info("%s has no WeChat contact; %s not sent", person.get("id"), template)
        return False
    text = texts.render(template, person=person, **context)
    app.outbox.enqueue(key, where[0], where[1], {"text": text}, purpose="request")
    return True


# -- shared by the lifecycle and the reminders ---------------------------------------------
def log_event(store, at: float, event: str, request_id: int, actor_id: int | None,
              **data) -> int:
    """Append to the audit log and return the event id (send keys are derived from it)."""
    store.log(at, event, "request", request_id, actor_id, **data)
    return store.scalar("SELECT last_insert_rowid()")


def view(app, req: dict) -> dict:
    """A request as templates and the API show it: the row plus the household label, the
    building's name and local times (templates must not do time-zone arithmetic)."""
    from bot.core.clock import local

    place = app.store.q1(
        "SELECT h.label AS household, b.name AS building, c.name AS compound FROM requests r "
        "LEFT JOIN households h ON h.id = r.household_id LEFT JOIN nodes b ON b.id = r.building_id "
        "LEFT JOIN nodes c ON c.id = b.parent_id WHERE r.id = ?", (req["id"],)) or {}
    tz = app.settings.timezone

    def fmt(ts):
        return local(ts, tz).strftime("%m-%d %H:%M") if ts else ""
    return {**req, "household": place.get("household") or "",
            "building": (place.get("compound") or "") + (place.get("building") or ""),
            "created": fmt(req["created_at"]), "resolved": fmt(req["resolved_at"])}


def insert_media(store, request_id: int, m: dict, now: float) -> None:
    """One photo/voice row; m = {kind, media_id, meta}."""
    store.conn.execute("INSERT INTO request_media (request_id, kind, media_id, meta, at) "
                       "VALUES (?,?,?,?,?)", (request_id, m["kind"], m["media_id"],
                                              json.dumps(m.get("meta") or {}, ensure_ascii=False),
                                              now))


def rearm(app) -> None:
    """A change may bring the next reminder forward. The app has one timer for everything that
    escalates (bot.domain.escalation, which includes next_due_at() here): re-arm it."""
    if getattr(app, "scheduler", None) is not None:
        from bot.domain import escalation  # imported late: escalation imports bot.domain.requests

        escalation.rearm(app)
