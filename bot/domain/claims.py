"""三单制 (居民点单、党组织派单、党员接单) and 微心愿: staff open a request, or a resident's small
wish, for claiming; registered volunteers and party members of its area claim it, do it and say
how long it took; the resident rates it like any request.

Built on the request lifecycle (bot.domain.requests): opening is an accept ("offer"), a claim is
an assignment whose assignee is the claimant ("claim", first one wins: a compare-and-set on
claim_state = 'open'), giving it back returns it to the open list ("release"), completing is a
resolve with hours, and the rating is requests.rate. Who may claim: config [claims] roles.
A volunteer's area is the grid their home (or their register node) is in; someone with neither
sees the whole community. Every door (chat, the volunteer's signed link, the dashboard) calls
the functions here. No SQL (bot.data.claims), no transport.
"""
from __future__ import annotations

import logging
import re

from bot.core import texts
from bot.core.clock import local
from bot.core.filters import roles_of
from bot.data import claims as rows
from bot.data import org, people
from bot.data import requests as request_rows
from bot.domain import acks, areas, digest, links, reports
from bot.domain import requests as R
from bot.domain.ports import Deps
from bot.domain.requests import lifecycle
from bot.domain.requests.access import LEVEL_BUILDING, log_event, people_at, rearm, tell, view

log = logging.getLogger("linli.claims")

T = "messages/claims/"
PURPOSE = "claims"
OPEN, CLAIMED = "open", "claimed"
TEXT_MAX = 500
BOARD_DAYS = 30  # the dashboard lists claims completed this many days back (the month: /volunteers)


class NotEligible(R.RequestError):
    """Not a registered volunteer or party member ([claims] roles)."""
    code = "not_eligible"


class Taken(R.RequestError):
    """Someone else claimed it first."""
    code = "taken"


class NotOpen(R.RequestError):
    """Not opened for claiming (or no longer: done, or closed)."""
    code = "not_open"


class NotYours(R.RequestError):
    """Claimed by someone else: only the claimant gives it back or completes it."""
    code = "not_yours"


# -- who --------------------------------------------------------------------------------------
def eligible(deps: Deps, person: dict | None) -> bool:
    return bool(roles_of(person) & set(deps.settings.claims.roles))


def area_of(store, person: dict) -> set[int] | None:
    """Building ids of the volunteer's grid (their home's, or their register node's); None =
    the whole community (no home in the register)."""
    home = None
    if person.get("household_id"):
        h = people.household(store, person["household_id"])
        home = org.node(store, h["building_id"]) if h else None
    if home is None and person.get("node_id"):
        home = org.node(store, person["node_id"])
    top = org.ancestor(store, home, "grid") or org.ancestor(store, home, "community")
    return None if top is None else set(org.buildings_under(store, [top["id"]]))


def _in_area(area: set[int] | None, req: dict) -> bool:
    return area is None or req["building_id"] is None or req["building_id"] in area


def volunteers_for(deps: Deps, req: dict) -> list[dict]:
    """Eligible people whose area holds the request, its filer left out."""
    return [p for p in rows.volunteers_with_home(deps.store)
            if eligible(deps, p) and p["id"] != req["resident_id"]
            and _in_area(area_of(deps.store, p), req)]


def staff_area(store, person: dict) -> set[int] | None:
    """Buildings a staff member or lead manages (None = all): the same area as the chat's."""
    area = areas.buildings_of(store, person)
    return None if area is None else set(area)


# -- the volunteer's link -----------------------------------------------------------------------
def _secret(deps: Deps) -> str:
    return deps.settings.server.link_secret + ":claims"


def link_token(deps: Deps, person: dict) -> str:
    return links.make_token(_secret(deps), person["id"], 0)


def link_url(deps: Deps, person: dict) -> str:
    return f"{deps.settings.server.public_url.rstrip('/')}/claims/{link_token(deps, person)}"


def person_of_token(deps: Deps, token: str) -> dict | None:
    """The active, still eligible volunteer a genuine token names; None otherwise."""
    found = links.read_token(_secret(deps), token)
    if found is None or found[1] != 0:
        return None
    person = people.active(deps.store, found[0])
    return person if person is not None and eligible(deps, person) else None


# -- reading ----------------------------------------------------------------------------------
def _view(deps: Deps, row: dict) -> dict:
    tz = deps.settings.timezone

    def fmt(ts):
        return local(ts, tz).strftime("%m-%d %H:%M") if ts else ""
    return {**row, "household": row.get("household") or "", "building": row.get("building") or "",
            "opened": fmt(row.get("claim_opened_at")), "claimed": fmt(row.get("claimed_at")),
            "resolved": fmt(row.get("resolved_at")), "created": fmt(row.get("created_at"))}


def open_list(deps: Deps, volunteer: dict) -> list[dict]:
    """What this volunteer may claim now, oldest opening first."""
    return [_view(deps, r) for r in rows.open_claims(deps.store, area_of(deps.store, volunteer))]


def holding(deps: Deps, volunteer: dict) -> list[dict]:
    """What this volunteer has claimed and not yet completed."""
    return [_view(deps, r) for r in rows.of_claimant(deps.store, volunteer["id"], open_only=True)]


def board_row(deps: Deps, request_id: int) -> dict | None:
    """One request as the claims pages and messages show it (household, building, claimant)."""
    row = rows.get(deps.store, request_id)
    return _view(deps, row) if row else None


def told_count(deps: Deps, req: dict) -> int:
    """How many of the area's volunteers an opening reaches (those on WeChat)."""
    return sum(1 for p in volunteers_for(deps, req) if deps.reach.person(p) is not None)


def board(deps: Deps, staff: dict) -> dict:
    """The dashboard's board for a staff member or lead, in their area: what is open for
    claiming, and what was claimed (being done, or done within BOARD_DAYS)."""
    area = staff_area(deps.store, staff)
    since = deps.clock.now() - BOARD_DAYS * 86400
    return {OPEN: [_view(deps, r) for r in rows.open_claims(deps.store, area)],
            CLAIMED: [_view(deps, r) for r in rows.claimed(deps.store, area, since)]}


def month_of(deps: Deps, month: str | None = None) -> tuple[int, int]:
    """(year, month) from "YYYY-MM", or this month (community time); BadInput otherwise."""
    if not month:
        now = local(deps.clock.now(), deps.settings.timezone)
        return now.year, now.month
    m = re.fullmatch(r"(\d{4})-(\d{1,2})", month.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise R.BadInput(None, what="month")
    return int(m.group(1)), int(m.group(2))


def my_month(deps: Deps, volunteer: dict, month: str | None = None) -> dict:
    """The volunteer's month: completed claims with hours and ratings, and what they hold."""
    year, mon = month_of(deps, month)
    since, until = reports.month_bounds(year, mon, deps.settings.timezone)
    done = [_view(deps, r) for r in rows.of_claimant(deps.store, volunteer["id"], since=since,
                                                      until=until)
            if r["state"] in ("resolved", "rated", "closed")]
    rated = [r["rating"] for r in done if r["rating"]]
    return {"month": f"{year}-{mon:02d}", "done": done, "hours": sum(r["hours"] or 0 for r in done),
            "rating": round(sum(rated) / len(rated), 1) if rated else None,
            "holding": holding(deps, volunteer)}


def month_figures(deps: Deps, viewer: dict, month: str | None = None) -> dict:
    """Per volunteer for the month (the dashboard's /volunteers): completed claims, hours,
    average rating; within the viewer's area."""
    year, mon = month_of(deps, month)
    since, until = reports.month_bounds(year, mon, deps.settings.timezone)
    found = rows.month_figures(deps.store, since, until, staff_area(deps.store, viewer))
    for r in found:
        r["hours"] = round(float(r["hours"] or 0), 1)
        r["rating"] = round(r["rating"], 1) if r["rating"] is not None else None
    return {"month": f"{year}-{mon:02d}", "rows": found,
            "completed": sum(r["completed"] for r in found),
            "hours": round(sum(r["hours"] for r in found), 1)}


# -- acts -------------------------------------------------------------------------------------
def _manageable(deps: Deps, staff: dict, request_id: int, action: str) -> dict:
    return lifecycle.guard(deps, staff, request_id, R.can_manage, action)


def open_for_claims(deps: Deps, staff: dict, request_id: int) -> dict:
    """Staff (or the building's lead) open a request or wish for claiming; a request not yet
    accepted is accepted by it. Eligible volunteers of its area get a short notice (held for
    their digest when they had messages lately)."""
    return _open(deps, staff, request_id, announce=True)


def _open(deps: Deps, staff: dict, request_id: int, *, announce: bool) -> dict:
    req = _manageable(deps, staff, request_id, "offer")
    if req["claim_state"] == OPEN:
        return req  # already open: nothing to do, nobody told twice
    if req["claim_state"] == CLAIMED:
        raise Taken(request_id, state=req["state"])
    now = deps.clock.now()
    sets = {"claim_state": OPEN, "claim_opened_at": now, "claimed_by": None, "claimed_at": None}
    if req["state"] == "filed":
        sets.update(accepted_by=staff["id"], accepted_at=now, escalation_level=0)
    ev = lifecycle.step(deps, req, "offer", staff, sets, where={"claim_state": None})
    req = _tell_resident(deps, request_id, "opened_resident.j2", ev) if announce \
        else R.get(deps.store, request_id)
    _offer(deps, req, ev)
    return req


def _tell_resident(deps: Deps, request_id: int, template: str, ev: int, **context) -> dict:
    """The resident it is for hears of the step (once: keyed by the event)."""
    req = R.get(deps.store, request_id)
    filer = people.get(deps.store, req["resident_id"]) if req["resident_id"] else None
    if filer is not None:
        tell(deps, filer, T + template, f"req:{request_id}:e{ev}", r=view(deps, req), **context)
    rearm(deps)
    return req


def _offer(deps: Deps, req: dict, ev: int) -> int:
    """Tell the area's volunteers; returns how many were reached or held for their digest."""
    v = _view(deps, rows.get(deps.store, req["id"]))
    line = texts.render(T + "offer_line.j2", r=v)
    told = 0
    for p in volunteers_for(deps, req):
        got = digest.notify(deps, p, T + "offer.j2", f"claim:{req['id']}:e{ev}:{p['id']}",
                            kind="claim_offer", line=line, always_digest=True, ref_id=req["id"],
                            purpose=PURPOSE, r=v, url=link_url(deps, p))
        told += got in (digest.SENT, digest.HELD)
    return told


def file_wish(deps: Deps, staff: dict, text: str, *, household_id: int | None = None,
              resident: dict | None = None, open_now: bool = True) -> dict:
    """A small wish staff write down on a resident's behalf (a household: its first person
    reachable on WeChat), opened for claiming at once unless `open_now` is False."""
    text = (text or "").strip()[:TEXT_MAX]
    if not text:
        raise R.BadInput(None, what="text")
    if resident is None:
        found = rows.first_in_household(deps.store, household_id) if household_id else []
        if not found:
            raise R.NotFound(None, what="household")
        resident = found[0]
    home = people.household(deps.store, resident["household_id"]) \
        if resident.get("household_id") else None
    building = home["building_id"] if home else None
    area = staff_area(deps.store, staff)
    if area is not None and building not in area:
        raise R.Forbidden(None, action="wish")
    now = deps.clock.now()
    category, _ = R.classify(text, deps.settings)
    with deps.store.transaction():
        rid = request_rows.insert(deps.store, {
            "resident_id": resident["id"], "household_id": resident.get("household_id"),
            "building_id": building, "text": text, "category": category, "urgency": "normal",
            "place": R.extract_place(text), "created_at": now, "kind": "wish"})
        ev = log_event(deps.store, now, "request.file", rid, staff["id"], wish=True,
                       category=category, for_id=resident["id"])
    req = R.get(deps.store, rid)
    tell(deps, resident, T + "wish_filed.j2", f"req:{rid}:e{ev}", r=view(deps, req),
         opened=open_now)
    rearm(deps)
    # the resident's one message is wish_filed.j2 (it says it is open for claiming)
    return _open(deps, staff, rid, announce=False) if open_now else req


def claim(deps: Deps, volunteer: dict, request_id: int) -> dict:
    """The volunteer takes it: first claim wins, a later one is refused as Taken. The resident
    hears who is coming (name, phone if registered); the one who opened it (or the building's
    leads) hear who claimed it."""
    if not eligible(deps, volunteer):
        raise NotEligible(request_id)
    req = R.get(deps.store, request_id)
    if req is None or not _in_area(area_of(deps.store, volunteer), req):
        raise R.NotFound(request_id)
    if req["claim_state"] == CLAIMED:
        raise Taken(request_id, mine=req["claimed_by"] == volunteer["id"])
    if req["claim_state"] != OPEN or req["state"] not in lifecycle.TRANSITIONS["claim"][0]:
        raise NotOpen(request_id, state=req["state"])
    now = deps.clock.now()
    try:
        ev = lifecycle.step(deps, req, "claim", volunteer, {
            "claim_state": CLAIMED, "claimed_by": volunteer["id"], "claimed_at": now,
            "assignee_id": volunteer["id"], "assignee_name": volunteer["name"],
            "assigned_at": now}, where={"claim_state": OPEN}, assignee=volunteer["name"])
    except R.InvalidTransition:
        now_row = R.get(deps.store, request_id)
        if now_row["claim_state"] == CLAIMED:
            raise Taken(request_id, mine=now_row["claimed_by"] == volunteer["id"]) from None
        raise NotOpen(request_id, state=now_row["state"]) from None
    req = _tell_resident(deps, request_id, "coming.j2", ev, volunteer=volunteer)
    _tell_staff(deps, req, ev, "claimed_staff.j2", "claim_taken", volunteer)
    return req


def _tell_staff(deps: Deps, req: dict, ev: int, template: str, kind: str, volunteer: dict) -> None:
    """Whoever looks after it hears that it was claimed or given back (in their digest)."""
    v = _view(deps, rows.get(deps.store, req["id"]))
    for p in _staff_of(deps, req):
        digest.notify(deps, p, T + template, f"req:{req['id']}:e{ev}:{p['id']}",
                      kind=kind, line=texts.render(T + "taken_line.j2", r=v),
                      ref_id=req["id"], purpose=PURPOSE, r=v, volunteer=volunteer)


def _staff_of(deps: Deps, req: dict) -> list[dict]:
    """Who hears about claims and releases: the one who opened it, else the building's leads."""
    opener = people.active(deps.store, req["accepted_by"]) if req["accepted_by"] else None
    found = [opener] if opener is not None else people_at(deps.store, req, LEVEL_BUILDING)
    return [p for p in found if p["id"] != req["resident_id"]]


def _claimed_by_me(deps: Deps, volunteer: dict, request_id: int) -> dict:
    req = R.get(deps.store, request_id)
    if req is None:
        raise R.NotFound(request_id)
    if req["claimed_by"] != volunteer["id"] or req["claim_state"] != CLAIMED:
        if req["claim_state"] == OPEN:
            raise NotOpen(request_id, state=req["state"], reason="unclaimed")
        raise NotYours(request_id)
    return req


def release(deps: Deps, volunteer: dict, request_id: int) -> dict:
    """The claimant gives it back: open for claiming again; the resident and staff are told."""
    req = _claimed_by_me(deps, volunteer, request_id)
    ev = lifecycle.step(deps, req, "release", volunteer, {
        "claim_state": OPEN, "claim_opened_at": deps.clock.now(), "claimed_by": None,
        "claimed_at": None, "assignee_id": None, "assignee_name": None, "assigned_at": None},
        where={"claim_state": CLAIMED, "claimed_by": volunteer["id"]})
    req = _tell_resident(deps, request_id, "released_resident.j2", ev)
    _tell_staff(deps, req, ev, "released_staff.j2", "claim_released", volunteer)
    return req


def parse_hours(word: str | None) -> float | None:
    """"2", "2小时", "1.5h", "半小时", "30分钟" → hours; None when it is not a duration."""
    w = (word or "").strip().lower().translate(str.maketrans("０１２３４５６７８９．", "0123456789."))
    if w in ("半小时", "半个小时", "半个钟头"):
        return 0.5
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:个)?(小时|钟头|h|hr|hrs|分钟|分|min)?", w)
    if not m:
        return None
    n = float(m.group(1))
    return round(n / 60, 2) if m.group(2) in ("分钟", "分", "min") else n


def complete(deps: Deps, volunteer: dict, request_id: int, hours: float | None,
             note: str = "") -> dict:
    """The claimant reports it done, with the hours it took: the request is resolved (with
    hours) and the resident asked to rate it — the same resolve as a lead's 办结."""
    _claimed_by_me(deps, volunteer, request_id)
    limit = float(deps.settings.claims.max_hours)
    if hours is None or not 0 < float(hours) <= limit:
        raise R.BadInput(request_id, what="hours", limit=limit)
    note = (note or "").strip()[:TEXT_MAX] or texts.render(T + "done_note.j2").strip()
    return R.resolve(deps, volunteer, request_id, note, hours=round(float(hours), 2))


def find_household(deps: Deps, staff: dict, text: str) -> list[dict]:
    """Households matching "3栋502" in the staff member's area."""
    area = staff_area(deps.store, staff)
    buildings = org.buildings_under(deps.store, []) if area is None else sorted(area)
    return acks.find_household(deps.store, text, buildings)
