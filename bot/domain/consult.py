"""议事 / 定事: consultations put to the households of a scope, decided against a threshold.

A consultation asks one question with a few options ('approve': 同意 / 不同意 / 弃权, passes when
同意 reaches the threshold; 'choose': the leading option must reach it, 0/1 meaning plurality, a tie
for first deciding nothing). The electorate is frozen when it opens (consultation_voters): every
active household of the scope, or only those with an owner resident (产权人); each has weight 1, or
its area for a threshold by area. The threshold counts the WHOLE electorate's weight, not only the
votes cast, in exact integer/Fraction arithmetic: `weight * den >= num * total`.

Opening issues a carrier notice (bot.domain.alerts.issue, kind 通知) down the same relay as any
notice; its direct messages' ack links lead to the household's vote page (bot/web/ack.py). Every
door votes through `vote` (chat reply, the dashboard; the signed link via `link_vote`, which for an
owners-only consultation records the household's owner the link holder picked) or `proxy_vote` (a lead's or
steward's 代投, staff on the dashboard): one household, one current vote, the newest ballot counts,
changes are appended and logged, nothing is written after closing. The timer (`next_due_at`,
`run_due`) reminds silent households once and closes due consultations: the result is stored and
published as a second notice down the same scope, and whoever opened it is told.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from bot.core import texts, vocabulary
from bot.core.errors import CodedError
from bot.core.filters import roles_of
from bot.core.tables import natural_key
from bot.data import acks as acks_db
from bot.data import consult as consult_db
from bot.data import org
from bot.data import people as people_db
from bot.domain import alerts, areas, links
from bot.domain.alerts import AlertError, Draft
from bot.domain.ports import Deps
from bot.domain.schedules import ScheduleError, parse_when
from bot.domain.schedules import at_parts as _at_parts
from bot.domain.wording import reply_channels

log = logging.getLogger("linli.consult")

KINDS = ("approve", "choose")
ELECTORATES = ("households", "owners")
BASES = ("households", "owners", "area")
SECRECY = ("names", "tally")
CHANNELS = ("wecom", "oa", "link", "proxy", "dashboard")
APPROVE_OPTIONS = ["同意", "不同意", "弃权"]
RECENT_S = 3 * 24 * 3600  # a vote word this long after closing is answered "closed", not passed on
MAX_OPTIONS = 9
_CN_DIGIT = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}


class ConsultError(CodedError):
    """An input or state problem; `code` picks the Chinese sentence in messages/consult/error.j2."""
    template = "messages/consult/error.j2"


@dataclass
class ConsultDraft:
    """What every door collects before `open`."""
    question: str
    closes_at: float
    options: list[str] = field(default_factory=lambda: list(APPROVE_OPTIONS))
    kind: str = "approve"
    electorate: str = "households"
    basis: str = "households"
    threshold: tuple[int, int] = (1, 2)
    secrecy: str = "names"
    scope: list[int] = field(default_factory=list)  # node ids; empty = the whole community
    opened_by: int | None = None
    unit: str = ""  # one unit (单元, e.g. "2单元") of the one building in scope: a lift is per unit


@dataclass
class VoteOutcome:
    consultation: dict
    household: dict
    choice: int
    changed: bool  # a different choice replaced an earlier one
    repeated: bool  # the same choice again: nothing written
    previous: int | None = None


# -- words ---------------------------------------------------------------------------------------
def parse_threshold(words: str) -> tuple[tuple[int, int], str | None]:
    """'三分之二', '2/3', '半数', '相对多数', each optionally followed by 按户 / 按业主 / 按面积 ->
    ((num, den), basis or None)."""
    w = re.sub(r"\s+", "", words or "")
    basis = None
    for name, key in (("by_area", "area"), ("by_owners", "owners"), ("by_households", "households")):
        for word in sorted(vocabulary.words(f"consult.{name}"), key=len, reverse=True):
            if word in w:
                basis, w = key, w.replace(word, "")
                break
        if basis:
            break
    w = w.strip("，,、:：以上及")
    if not w:
        raise ConsultError("bad_threshold", value=words)
    if w in vocabulary.words("consult.plurality"):
        return (0, 1), basis
    if w in ("半数", "一半", "二分之一"):
        return (1, 2), basis
    m = re.fullmatch(r"(\d{1,3})\s*/\s*(\d{1,3})", w) or re.fullmatch(r"(\d{1,3})\s*%", w)
    if m and m.lastindex == 2:
        num, den = int(m.group(1)), int(m.group(2))
    elif m:
        num, den = int(m.group(1)), 100
    else:
        m = re.fullmatch(r"([一二两三四五六七八九十]|\d{1,2})分之([一二两三四五六七八九十]|\d{1,2})", w)
        if m is None:
            raise ConsultError("bad_threshold", value=words)
        den, num = (_cn(m.group(1)), _cn(m.group(2)))
    if den <= 0 or not 0 <= num <= den:
        raise ConsultError("bad_threshold", value=words)
    return (num, den), basis


def _cn(s: str) -> int:
    return int(s) if s.isdigit() else _CN_DIGIT[s]


def parse_options(words: str) -> list[str]:
    opts = [o.strip() for o in re.split(r"[/／、,，;；|｜]", words or "") if o.strip()]
    if len(opts) < 2 or len(opts) > MAX_OPTIONS or len(set(opts)) != len(opts):
        raise ConsultError("bad_options", value=words)
    return opts


def kind_for(options: list[str]) -> str:
    """Options that start with 同意 make a yes/no question; any others a choice between them."""
    return "approve" if options[0] in vocabulary.words("consult.approve") else "choose"


def parse_choice(text: str, consultation: dict) -> int | None:
    """A resident's words -> the option index, or None. An option's own label, 同意/不同意/弃权 (and
    their synonyms) on a yes/no question, or "选2" (never a bare number: "1" acknowledges warnings)."""
    w = re.sub(r"\s+", "", text or "").rstrip("。.!！~～")
    if not w:
        return None
    options = _options(consultation)
    if w in options:
        return options.index(w)
    if consultation["kind"] == "approve":
        for i, name in enumerate(("approve", "reject", "abstain")):
            if i < len(options) and w in vocabulary.words(f"consult.{name}"):
                return i
    picks = "|".join(re.escape(p) for p in vocabulary.words("consult.pick"))
    m = re.fullmatch(rf"(?:{picks})项?第?([0-9]|[一二三四五六七八九])项?", w)
    if m:
        n = _cn(m.group(1))
        return n - 1 if 1 <= n <= len(options) else None
    return None


def parse_electorate(words: str) -> str:
    w = re.sub(r"\s+", "", words or "")
    if w in vocabulary.words("consult.households"):
        return "households"
    if w in vocabulary.words("consult.owners") or f"仅{w}" in vocabulary.words("consult.owners"):
        return "owners"
    raise ConsultError("bad_electorate", value=words)


def parse_secrecy(words: str) -> str:
    w = re.sub(r"\s+", "", words or "")
    if w in vocabulary.words("consult.names"):
        return "names"
    if w in vocabulary.words("consult.tally"):
        return "tally"
    raise ConsultError("bad_secrecy", value=words)


def parse_closes(deps: Deps, words: str) -> float:
    """'12月15日18:00', '下周一20点' … -> epoch seconds (a one-off time still to come)."""
    w = (words or "").strip()
    if w.startswith("每"):
        raise ConsultError("bad_time", value=words)
    try:
        when = parse_when(w, deps.clock.now(), deps.settings.timezone)
    except ScheduleError as e:
        raise ConsultError("past" if e.code == "past" else "bad_time", value=words) from e
    return when.first_at


FIELDS = ("question", "options", "electorate", "threshold", "closes", "secrecy")
_UNIT = re.compile(r"^(?P<place>.*?)/?(?P<n>[0-9]{1,3}|[一二两三四五六七八九十]{1,2})单元$")


def parse_unit(word: str) -> str:
    """'2', '2单元', '二单元' -> '2单元' (as the register writes it); '' for nothing."""
    w = re.sub(r"\s+", "", word or "")
    if not w:
        return ""
    m = re.fullmatch(r"([0-9]{1,3}|[一二两三四五六七八九十]{1,2})(?:单元)?", w)
    if m is None or (not m.group(1).isdigit() and m.group(1) not in _CN_DIGIT):
        raise ConsultError("unknown_unit", unit=word, units="")
    n = m.group(1)
    return f"{int(n) if n.isdigit() else _cn(n)}单元"


def split_unit(scope_words: list[str]) -> tuple[list[str], str]:
    """'大龙一区/3栋/2单元' or '3栋2单元' -> (['大龙一区/3栋'], '2单元'); the unit as the register
    writes it (digits). Other words pass through."""
    out, unit = [], ""
    for w in scope_words:
        m = _UNIT.match(w.strip())
        if m and m.group("place") and (m.group("n").isdigit() or m.group("n") in _CN_DIGIT):
            unit = parse_unit(m.group("n"))
            out.append(m.group("place"))
        else:
            out.append(w)
    return out, unit


def draft_from_words(deps: Deps, scope_words: list[str], fields: dict[str, str], *,
                     opened_by: int | None) -> ConsultDraft:
    """A draft from the chat command's lines (field -> its words; see FIELDS)."""
    scope_words, unit = split_unit([w for w in scope_words if w.strip()])
    try:
        scope = alerts.resolve_scope(deps.store, scope_words)
    except AlertError as e:
        raise ConsultError("unknown_place", **e.params) from e
    options = parse_options(fields["options"]) if fields.get("options") else list(APPROVE_OPTIONS)
    kind = kind_for(options)
    electorate = parse_electorate(fields["electorate"]) if fields.get("electorate") else "households"
    threshold, basis = parse_threshold(fields["threshold"]) if fields.get("threshold") else \
        (((1, 2) if kind == "approve" else (0, 1)), None)
    basis = basis or ("owners" if electorate == "owners" else "households")
    closes_at = parse_closes(deps, fields["closes"]) if fields.get("closes") else \
        deps.clock.now() + deps.settings.consult.default_days * 86400
    secrecy = parse_secrecy(fields["secrecy"]) if fields.get("secrecy") else "names"
    return ConsultDraft(question=(fields.get("question") or "").strip(), closes_at=closes_at, options=options,
                        kind=kind, electorate=electorate, basis=basis, threshold=threshold, secrecy=secrecy,
                        scope=scope, opened_by=opened_by, unit=unit)


def draft_as_dict(d: ConsultDraft) -> dict:
    return {"question": d.question, "closes_at": d.closes_at, "options": d.options, "kind": d.kind,
            "electorate": d.electorate, "basis": d.basis, "threshold": list(d.threshold), "secrecy": d.secrecy,
            "scope": d.scope, "opened_by": d.opened_by, "unit": d.unit}


def draft_of_dict(data: dict) -> ConsultDraft:
    return ConsultDraft(**{**data, "threshold": tuple(data["threshold"])})


def _options(c: dict) -> list[str]:
    return c["options"] if isinstance(c["options"], list) else json.loads(c["options"])


# -- who may do what -------------------------------------------------------------------------------
def may_open(store, person: dict | None) -> bool:
    """Staff, and whoever leads a grid or a compound (a compound's branch)."""
    if person is None:
        return False
    if "staff" in roles_of(person):
        return True
    if person.get("id") is None:
        return False
    return any((n := org.node(store, nid)) is not None and n["kind"] in ("grid", "compound")
               for nid in org.led_nodes(store, person["id"]))


def may_proxy(store, person: dict | None, household: dict) -> bool:
    """Staff and leads whose area covers the household, and the household's own steward."""
    if person is None:
        return False
    if person.get("id") is not None and household.get("steward_id") == person["id"]:
        return True
    if not roles_of(person) & {"staff", "grid_lead", "building_lead"}:
        return False
    area = areas.buildings_of(store, person)
    return area is None or household["building_id"] in area


def area_of(store, person: dict | None) -> list[int] | None:
    """The buildings a person may see consultations of (None: all)."""
    return areas.buildings_of(store, person)


# -- opening -----------------------------------------------------------------------------------------
def electorate(deps: Deps, draft: ConsultDraft) -> list[tuple[int, int, float]]:
    """(household, building, weight) of everyone who votes; refused when there is nobody, or when a
    threshold by area meets households without an area."""
    buildings = alerts.scope_buildings(deps.store, draft.scope)
    if not buildings:
        raise ConsultError("empty_scope")
    if draft.unit:
        if len(buildings) != 1:
            raise ConsultError("unit_needs_building", unit=draft.unit)
        units = consult_db.units_of(deps.store, buildings[0])
        if draft.unit not in units:
            raise ConsultError("unknown_unit", unit=draft.unit, units="、".join(units))
    rows = consult_db.households_in(deps.store, buildings, draft.unit)
    if draft.electorate == "owners":
        rows = [r for r in rows if r["has_owner"]]
    if not rows:
        raise ConsultError("no_voters", owners=draft.electorate == "owners")
    if draft.basis == "area":
        missing = [r["label"] for r in rows if not r["area_m2"] or r["area_m2"] <= 0]
        if missing:
            raise ConsultError("no_area", count=len(missing), some="、".join(missing[:5]))
        return [(r["id"], r["building_id"], float(r["area_m2"])) for r in rows]
    if draft.basis == "owners":
        return [(r["id"], r["building_id"], 1.0 if r["has_owner"] else 0.0) for r in rows]
    return [(r["id"], r["building_id"], 1.0) for r in rows]


def check(deps: Deps, draft: ConsultDraft, person: dict | None = None) -> list[tuple[int, int, float]]:
    """Everything `open` refuses, without writing: returns the electorate."""
    draft.question = (draft.question or "").strip()
    if not draft.question:
        raise ConsultError("no_question")
    if len(draft.question) > 500:
        raise ConsultError("too_long")
    if draft.kind not in KINDS or draft.electorate not in ELECTORATES or draft.basis not in BASES \
            or draft.secrecy not in SECRECY:
        raise ConsultError("bad_field")
    if len(draft.options) < 2 or len(draft.options) > MAX_OPTIONS or len(set(draft.options)) != len(draft.options):
        raise ConsultError("bad_options", value="/".join(draft.options))
    num, den = draft.threshold
    if den <= 0 or not 0 <= num <= den:
        raise ConsultError("bad_threshold", value=f"{num}/{den}")
    if draft.closes_at <= deps.clock.now():
        raise ConsultError("past")
    if person is not None:
        if not may_open(deps.store, person):
            raise ConsultError("not_allowed")
        area = areas.buildings_of(deps.store, person)
        if area is not None:
            wanted = alerts.scope_buildings(deps.store, draft.scope) if draft.scope else None
            if not wanted or not set(wanted) <= set(area):
                raise ConsultError("outside_area")
    return electorate(deps, draft)


def preview(deps: Deps, draft: ConsultDraft) -> dict:
    voters = electorate(deps, draft)
    return {"text": carrier_text(deps, draft, None), "households": len(voters),
            "buildings": len({b for _, b, _ in voters}), "total": _total([w for _, _, w in voters])}


def open(deps: Deps, draft: ConsultDraft, person: dict | None = None) -> int:
    """Freeze the electorate, store the consultation and issue its carrier notice. Returns its id."""
    voters = check(deps, draft, person)
    store, now = deps.store, deps.clock.now()
    with store.transaction():
        cid = consult_db.create(
            store, question=draft.question, options=draft.options, kind=draft.kind, electorate=draft.electorate,
            basis=draft.basis, threshold_num=draft.threshold[0], threshold_den=draft.threshold[1],
            secrecy=draft.secrecy, scope=draft.scope, opened_by=draft.opened_by, created_at=now,
            closes_at=draft.closes_at, unit=draft.unit)
        consult_db.add_voters(store, cid, voters)
        hours = max((draft.closes_at - now) / 3600, 0.01)
        try:
            alert_id = alerts.issue(deps, Draft(type=alerts.NOTICE, colour="blue", text=carrier_text(deps, draft, cid),
                                                scope=draft.scope, issuer_id=draft.opened_by, expires_h=hours,
                                                carries="consultation"))
        except AlertError as e:
            raise ConsultError("alert", why=e.code) from e
        consult_db.set_alert(store, cid, "alert_id", alert_id)
        store.log(now, "consult.opened", "consultation", cid, draft.opened_by, households=len(voters),
                  question_kind=draft.kind, electorate=draft.electorate, basis=draft.basis,
                  threshold=f"{draft.threshold[0]}/{draft.threshold[1]}", alert_id=alert_id)
    deps.timers.rearm()
    return cid


def carrier_text(deps: Deps, draft: ConsultDraft, cid: int | None) -> str:
    return texts.render("messages/consult/notice.j2", id=cid, question=draft.question, options=draft.options,
                        place=place_of(deps, draft.scope, draft.unit),
                        kind=draft.kind, electorate=draft.electorate, basis=draft.basis,
                        num=draft.threshold[0], den=draft.threshold[1], secrecy=draft.secrecy,
                        closes=at_parts(deps, draft.closes_at), reply_via=_reply_via(deps))


def place_of(deps: Deps, scope: list[int], unit: str) -> str:
    """Who votes, as a place: '大龙一区3栋2单元' for a unit, '' otherwise (the notice's scope says it)."""
    if not unit:
        return ""
    buildings = alerts.scope_buildings(deps.store, scope)
    node = org.node(deps.store, buildings[0]) if buildings else None
    parent = org.node(deps.store, node["parent_id"]) if node and node.get("parent_id") else None
    return f"{parent['name'] if parent and parent['kind'] == 'compound' else ''}{node['name'] if node else ''}{unit}"


def _reply_via(deps: Deps) -> list[str]:
    return reply_channels(deps.settings)


def at_parts(deps: Deps, at: float | None) -> dict | None:
    return _at_parts(at, deps.settings.timezone)


# -- reading --------------------------------------------------------------------------------------------
def get(deps: Deps, cid: int) -> dict:
    row = consult_db.get(deps.store, cid)
    if row is None:
        raise ConsultError("no_consultation", id=cid)
    return enrich(row)


def by_id(deps: Deps, cid: int) -> dict | None:
    row = consult_db.get(deps.store, cid)
    return enrich(row) if row else None


def enrich(row: dict) -> dict:
    out = dict(row)
    out["options"] = _options(row)
    out["scope"] = json.loads(row["scope"]) if isinstance(row["scope"], str) else row["scope"]
    out["result"] = json.loads(row["result"]) if isinstance(row.get("result"), str) else row.get("result")
    return out


def listing(deps: Deps, person: dict | None) -> list[dict]:
    return [enrich(r) for r in consult_db.listing(deps.store, areas.buildings_of(deps.store, person))]


def by_alert(deps: Deps, alert_id: int) -> dict | None:
    row = consult_db.by_alert(deps.store, alert_id)
    return enrich(row) if row else None


def for_household(deps: Deps, household_id: int) -> list[dict]:
    """Open consultations of this household, and those closed in the last few days."""
    return [enrich(r) for r in consult_db.for_household(deps.store, household_id,
                                                       since=deps.clock.now() - RECENT_S)]


def open_ones(deps: Deps) -> list[dict]:
    """Every consultation still taking votes."""
    return [enrich(c) for c in consult_db.open_ones(deps.store) if is_open(deps, c)]


def is_open(deps: Deps, c: dict) -> bool:
    return c["state"] == "open" and deps.clock.now() < c["closes_at"]


def is_voter(deps: Deps, cid: int, household_id: int) -> bool:
    return consult_db.voter(deps.store, cid, household_id) is not None


def current_choice(deps: Deps, cid: int, household_id: int) -> int | None:
    b = consult_db.current_ballot(deps.store, cid, household_id)
    return b["choice"] if b else None


def current_ballot(deps: Deps, cid: int, household_id: int) -> dict | None:
    return consult_db.current_ballot(deps.store, cid, household_id)


def owners(deps: Deps, household_id: int) -> list[dict]:
    """The household's active owners (who may vote by the household's link when only owners vote)."""
    return consult_db.owners_of(deps.store, household_id)


def household(deps: Deps, household_id: int) -> dict | None:
    return consult_db.household_of(deps.store, household_id)


def find_household(deps: Deps, cid: int, text: str) -> list[dict]:
    """Voter households of this consultation matching "3栋502" / "2单元502" / "502"."""
    buildings = sorted({v["building_id"] for v in consult_db.voters(deps.store, cid)})
    return acks_db.find_household(deps.store, text, buildings)


# -- voting --------------------------------------------------------------------------------------------
def vote(deps: Deps, cid: int, household_id: int, choice: int, *, channel: str, resident: dict | None = None,
         proxy: dict | None = None) -> VoteOutcome:
    """Record a household's vote (a change appends a ballot). Refused when closed, when the household
    does not vote here, and for a non-owner's own vote when only owners vote."""
    store, now = deps.store, deps.clock.now()
    if channel not in CHANNELS:
        raise ValueError(channel)
    c = get(deps, cid)
    if not is_open(deps, c):
        raise ConsultError("closed", id=cid, question=c["question"])
    voter = consult_db.voter(store, cid, household_id)
    if voter is None:
        raise ConsultError("not_voter", id=cid)
    if not 0 <= choice < len(c["options"]):
        raise ConsultError("bad_choice", id=cid, options=c["options"])
    if proxy is None and resident is not None and c["electorate"] == "owners" and not resident.get("owner"):
        raise ConsultError("not_owner", id=cid, question=c["question"])
    hh = consult_db.household_of(store, household_id)
    before = consult_db.current_ballot(store, cid, household_id)
    if before is not None and before["choice"] == choice:
        return VoteOutcome(c, hh, choice, changed=False, repeated=True, previous=choice)
    actor = (proxy or {}).get("id") if proxy is not None else (resident or {}).get("id")
    with store.transaction():
        consult_db.add_ballot(store, consultation_id=cid, household_id=household_id, choice=choice,
                              resident_id=(resident or {}).get("id") if proxy is None else None,
                              by_proxy_id=(proxy or {}).get("id"), channel=channel, at=now)
        store.log(now, "consult.vote_changed" if before else "consult.vote", "consultation", cid, actor,
                  household_id=household_id, channel=channel, proxy=proxy is not None,
                  # a 不记名 consultation's log says who voted and when, never what
                  **({"choice": choice, "previous": before["choice"] if before else None}
                     if c["secrecy"] == "names" else {}))
    return VoteOutcome(c, hh, choice, changed=before is not None, repeated=False,
                       previous=before["choice"] if before else None)


def link_vote(deps: Deps, cid: int, household_id: int, choice: int, *,
              resident_id: int | None = None) -> VoteOutcome:
    """A vote through the household's signed link. When only owners vote, the link holder says which of
    the household's active owners is voting (`resident_id`) and the ballot is theirs; refused when the
    household has no active owner any more, or the id is not one of them."""
    c = get(deps, cid)
    if c["electorate"] != "owners":
        return vote(deps, cid, household_id, choice, channel="link")
    if not is_open(deps, c):
        raise ConsultError("closed", id=cid, question=c["question"])
    who = owners(deps, household_id)
    if not who:
        raise ConsultError("no_owner_left", id=cid)
    chosen = next((r for r in who if r["id"] == resident_id), None)
    if chosen is None:
        raise ConsultError("pick_owner", id=cid)
    return vote(deps, cid, household_id, choice, channel="link", resident=chosen)


def proxy_vote(deps: Deps, cid: int, household_id: int, choice: int, *, actor: dict,
               channel: str = "proxy") -> VoteOutcome:
    """A lead, staff or the household's steward votes for a household without a phone (logged as such)."""
    hh = consult_db.household_of(deps.store, household_id)
    if hh is None or not may_proxy(deps.store, actor, hh):
        raise ConsultError("proxy_not_allowed", household=hh["label"] if hh else "")
    return vote(deps, cid, household_id, choice, channel=channel, proxy=actor)


# -- the tally ---------------------------------------------------------------------------------------------
def _frac(w) -> Fraction:
    return Fraction(str(w))


def _total(weights) -> float:
    return float(sum((_frac(w) for w in weights), Fraction(0)))


def reaches(weight: Fraction, total: Fraction, num: int, den: int) -> bool:
    """The threshold rule, exact: weight / total >= num / den (total = the whole electorate)."""
    return total > 0 and weight * den >= num * total


def decide(c: dict, weights: list[Fraction], total: Fraction) -> dict:
    """The outcome of weights per option against the threshold."""
    num, den = c["threshold_num"], c["threshold_den"]
    if c["kind"] == "approve":
        yes = weights[0]
        passed = reaches(yes, total, num, den) and (num > 0 or all(yes > w for w in weights[1:]))
        return {"outcome": "passed" if passed else "failed", "option": 0 if passed else None}
    top = max(weights) if weights else Fraction(0)
    leaders = [i for i, w in enumerate(weights) if w == top]
    if top == 0:
        return {"outcome": "none", "option": None}
    if len(leaders) > 1:
        return {"outcome": "tie", "option": None, "tied": leaders}
    if not reaches(top, total, num, den):
        return {"outcome": "not_reached", "option": None, "leader": leaders[0]}
    return {"outcome": "chosen", "option": leaders[0]}


def tally(deps: Deps, cid: int) -> dict:
    """Weights per option, turnout, per building counts and the outcome if it closed now."""
    c = get(deps, cid)
    rows = consult_db.voters(deps.store, cid)
    n = len(c["options"])
    weights = [Fraction(0)] * n
    total = Fraction(0)
    buildings: dict[int, dict] = {}
    names = consult_db.building_names(deps.store, sorted({r["building_id"] for r in rows}))
    for r in rows:
        w = _frac(r["weight"])
        total += w
        b = buildings.setdefault(r["building_id"], {"id": r["building_id"], "name": names.get(r["building_id"], ""),
                                                    "households": 0, "voted": 0, "counts": [0] * n})
        b["households"] += 1
        if r["choice"] is not None and 0 <= r["choice"] < n:
            weights[r["choice"]] += w
            b["voted"] += 1
            b["counts"][r["choice"]] += 1
    voted = sum(b["voted"] for b in buildings.values())
    outcome = decide(c, weights, total)
    num, den = c["threshold_num"], c["threshold_den"]
    need = Fraction(num, den) * total if den else Fraction(0)
    if c["basis"] != "area":  # whole households: 2/3 of 28 is 19 of them
        need = Fraction(math.ceil(need))
    return {"consultation": c, "households": len(rows), "voted": voted, "total": float(total),
            "weights": [float(w) for w in weights], "counts": [sum(b["counts"][i] for b in buildings.values())
                                                                for i in range(n)],
            "need": float(need), "buildings": sorted(buildings.values(), key=lambda b: _nat(b["name"])),
            **outcome}


def _nat(name: str):
    return natural_key(name)


def ballots(deps: Deps, cid: int) -> list[dict]:
    """The electorate with each household's current ballot (for the page and the export)."""
    return consult_db.voters(deps.store, cid)


# -- closing -----------------------------------------------------------------------------------------------
def close(deps: Deps, cid: int, *, actor_id: int | None = None) -> dict:
    """Tally, store the result, publish it as a notice down the same scope, tell whoever opened it."""
    store, now = deps.store, deps.clock.now()
    c = get(deps, cid)
    if c["state"] != "open":
        raise ConsultError("ended", id=cid, state=c["state"])
    t = tally(deps, cid)
    result = {k: t[k] for k in ("outcome", "option", "weights", "counts", "total", "need", "households", "voted")}
    if "tied" in t:
        result["tied"] = t["tied"]
    text = result_text(deps, c, result)
    with store.transaction():
        if not consult_db.close(store, cid, state="closed", result=result, at=now):
            raise ConsultError("ended", id=cid, state="closed")
        store.log(now, "consult.closed", "consultation", cid, actor_id, outcome=result["outcome"],
                  option=result["option"], voted=result["voted"], households=result["households"],
                  early=now < c["closes_at"])
        try:
            rid = alerts.issue(deps, Draft(type=alerts.NOTICE, colour="blue", text=text, scope=c["scope"],
                                           issuer_id=c["opened_by"]))
            consult_db.set_alert(store, cid, "result_alert_id", rid)
        except AlertError as e:  # the scope emptied since: the result stands, staff see it on the page
            log.warning("consultation %s closed but its result notice could not be issued: %s", cid, e.code)
        _tell_opener(deps, c, text)
    deps.outbox.kick()
    deps.timers.rearm()
    return get(deps, cid)


def cancel(deps: Deps, cid: int, *, actor_id: int | None = None) -> dict:
    """No result: the consultation ends and its carrier notice is withdrawn (a 通知（已取消） down the
    same relay, while the notice is still live)."""
    store, now = deps.store, deps.clock.now()
    c = get(deps, cid)
    with store.transaction():
        if not consult_db.close(store, cid, state="cancelled", result=None, at=now):
            raise ConsultError("ended", id=cid, state=c["state"])
        store.log(now, "consult.cancelled", "consultation", cid, actor_id)
        if c["alert_id"]:
            try:
                alerts.follow_on(deps, c["alert_id"], "lift", issuer_id=actor_id,
                                 text=texts.render("messages/consult/cancelled.j2", c=c))
            except AlertError:
                pass  # the notice already ended: nothing to withdraw
    deps.timers.rearm()
    return get(deps, cid)


def result_text(deps: Deps, c: dict, result: dict) -> str:
    return texts.render("messages/consult/result.j2", c=c, r=result, options=c["options"],
                        closes=at_parts(deps, c["closes_at"]))


def _tell_opener(deps: Deps, c: dict, text: str) -> None:
    who = people_db.get(deps.store, c["opened_by"]) if c["opened_by"] else None
    target = deps.reach.person(who) if who else None
    if target is None:
        return
    deps.outbox.enqueue(f"consult:{c['id']}:closed:opener", target[0], target[1],
                        {"text": texts.render("messages/consult/closed_opener.j2", id=c["id"], text=text)},
                        purpose="consult_result")


# -- links ------------------------------------------------------------------------------------------------
def _secret(deps: Deps) -> str:
    return deps.settings.server.link_secret + ":vote"


def vote_token(deps: Deps, cid: int, household_id: int) -> str:
    return links.make_token(_secret(deps), cid, household_id)


def read_vote_token(deps: Deps, token: str) -> tuple[int, int] | None:
    return links.read_token(_secret(deps), token)


def vote_url(deps: Deps, cid: int, household_id: int) -> str:
    return f"{deps.settings.server.public_url.rstrip('/')}/vote/{vote_token(deps, cid, household_id)}"


# -- the timer ----------------------------------------------------------------------------------------------
def remind_at(deps: Deps, c: dict) -> float | None:
    """When the one reminder to silent households goes (None: none for this consultation)."""
    before = [h for h in deps.settings.consult.remind_before_h if h and h > 0]
    if not before or c["reminded_at"] is not None:
        return None
    at = c["closes_at"] - max(before) * 3600
    return at if at > c["created_at"] else None


def next_due_at(deps: Deps) -> float | None:
    times = []
    for c in consult_db.open_ones(deps.store):
        times.append(c["closes_at"])
        r = remind_at(deps, c)
        if r is not None:
            times.append(r)
    return min(times) if times else None


async def run_due(deps: Deps) -> dict:
    done = {"consult_closed": 0, "consult_reminded": 0}
    now = deps.clock.now()
    for c in consult_db.open_ones(deps.store):
        if c["closes_at"] <= now:
            try:
                close(deps, c["id"])
                done["consult_closed"] += 1
            except ConsultError:
                pass  # closed meanwhile by someone else
            continue
        r = remind_at(deps, c)
        if r is not None and r <= now:
            done["consult_reminded"] += remind(deps, c["id"])
    return done


def remind(deps: Deps, cid: int) -> int:
    """One reminder to the reachable residents of households that have not voted (owners only when
    only owners vote), each with their household's vote link. Returns how many were queued."""
    store, now = deps.store, deps.clock.now()
    c = get(deps, cid)
    people = consult_db.silent_people(store, cid, owners_only=c["electorate"] == "owners")
    rows = []
    for p in people:
        target = deps.reach.person(p)
        if target is None:
            continue
        link = vote_url(deps, cid, p["household_id"])
        text = texts.render("messages/consult/reminder.j2", c=c, options=c["options"],
                            closes=at_parts(deps, c["closes_at"]), link=link)
        # the url rides along: an OA service notice (the fallback past the 48 h window) opens it
        rows.append(dict(key=f"consult:{cid}:remind:{p['id']}", channel=target[0], target=target[1],
                         payload={"text": text, "url": link}, purpose="consult_remind"))
    with store.transaction():
        if not consult_db.mark_reminded(store, cid, now):
            return 0
        deps.outbox.enqueue_many(rows)
        store.log(now, "consult.reminded", "consultation", cid, None, people=len(rows))
    deps.outbox.kick()
    deps.timers.rearm()
    return len(rows)
