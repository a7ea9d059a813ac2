"""Alerts: what a warning is, and the acts on it — issue, update (升级/降级), lift (解除), expire.

Each act is one function with all its effects: the rows (alert, scope, coverage denominators),
the relay plan (hops and their sends, in the same transaction, so a crash either leaves no alert
or one whose outbox the worker will finish), and the escalation timer. Every door — chat, CLI,
JSON API, dashboard, CAP feed — calls these and nothing else.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from bot.core import texts
from bot.core.errors import CodedError
from bot.data import alerts as alerts_db
from bot.data import org
from bot.data.store import Store
from bot.domain import escalation, followups, relay, signals
from bot.domain.ports import Deps
from bot.domain.signals import NOTICE, TYPES  # noqa: F401  (re-exported)
from bot.domain.status import is_live  # noqa: F401  (re-exported)
from bot.domain.wording import COLOURS, render, render_context  # noqa: F401  (re-exported)

SEVERE = ("orange", "red")


class AlertError(CodedError):
    """A staff input problem. `code` picks the Chinese sentence in alert_command_error.j2."""
    template = "messages/alert_command_error.j2"


@dataclass
class Draft:
    type: str
    colour: str
    text: str = ""  # staff override of the body; empty = the template's words
    scope: list[int] = field(default_factory=list)  # node ids; empty = the whole community
    poll: bool | None = None  # None = automatic (orange/red)
    expires_h: float | None = None
    issuer_id: int | None = None
    action: str = "issue"
    supersedes_id: int | None = None
    status: str = "actual"  # 'exercise': a drill
    audience: list[str] | None = None  # vulnerable households only: categories, or ["*"] for all
    carries: str = ""  # 'consultation': a notice carrying a 议事 (worded with how to vote, no "reply 1")

    @property
    def kind(self) -> str:
        return "notice" if self.type == NOTICE else "warning"

    @property
    def is_poll(self) -> bool:
        if self.kind == "notice":
            return False
        return self.colour in SEVERE if self.poll is None else self.poll


def parse_colour(word: str) -> str:
    w = word.strip().lower()
    if w in COLOURS:
        return w
    colour = texts.COLOUR_FROM_ZH.get(w.removesuffix("预警"))
    if colour is None:
        raise AlertError("unknown_colour", value=word)
    return colour


def parse_type(word: str) -> str:
    w = word.strip().removesuffix("预警").removesuffix("信号")
    w = signals.ALIASES.get(w, w)
    if w not in TYPES:
        raise AlertError("unknown_type", value=word, valid="、".join(TYPES))
    return w


def check_colour(type_: str, colour: str) -> None:
    """A colour the signal does not have is refused, naming the ones it has."""
    if type_ != NOTICE and not signals.has_colour(type_, colour):
        raise AlertError("colour_not_for_signal", value=colour, type=type_,
                         valid="、".join(texts.COLOUR_ZH[c] for c in signals.colours_of(type_)))


def resolve_scope(store: Store, names_or_ids: list) -> list[int]:
    """Scope words ("第一网格", "大龙一区", "大龙一区/3栋", node ids) -> node ids."""
    ids = []
    for item in names_or_ids:
        row = org.find_place(store, item)
        if row is None:
            raise AlertError("unknown_place", value=str(item).strip())
        ids.append(row["id"])
    return ids


def scope_buildings(store: Store, node_ids: list[int]) -> list[int]:
    """All building ids under the given nodes (the whole tree when empty)."""
    return org.buildings_under(store, node_ids)


def preview(store: Store, draft: Draft, settings=None) -> dict:
    """What issuing `draft` would send and to how many: text, buildings, households."""
    buildings = scope_buildings(store, draft.scope)
    alert_like = dict(type=draft.type, colour=draft.colour, action=draft.action, text=draft.text, kind=draft.kind,
                      poll=draft.is_poll and draft.action != "lift", supersedes_id=draft.supersedes_id,
                      buildings=buildings, status=draft.status)
    households = (len(alerts_db.vulnerable_households(store, buildings, draft.audience)) if draft.audience
                  else alerts_db.households_in(store, buildings))
    return {"text": render(store, alert_like, settings=settings), "buildings": len(buildings),
            "households": households}


def get(store: Store, alert_id: int) -> dict:
    alert = alerts_db.get(store, alert_id)
    if alert is None:
        raise AlertError("no_alert", value=alert_id)
    return alert


def issue(deps: Deps, draft: Draft) -> int:
    """Create the alert and its relay plan atomically, arm its timers. Returns the alert id."""
    if draft.type not in TYPES:
        raise AlertError("unknown_type", value=draft.type, valid="、".join(TYPES))
    if draft.kind == "notice":
        draft.colour = draft.colour if draft.colour in COLOURS else "blue"  # stored, never shown
    if draft.colour not in COLOURS:
        raise AlertError("unknown_colour", value=draft.colour)
    check_colour(draft.type, draft.colour)
    store, now = deps.store, deps.clock.now()
    expires_h = draft.expires_h or deps.settings.escalation.default_expiry_h
    buildings = scope_buildings(store, draft.scope)
    if not buildings:
        raise AlertError("empty_scope")
    old = alerts_db.get(store, draft.supersedes_id) if draft.supersedes_id else None
    summarise_old = draft.action == "lift" and old is not None and old["summary_at"] is None
    with store.transaction():
        alert_id = alerts_db.create(
            store, type=draft.type, colour=draft.colour, action=draft.action, text=draft.text,
            scope=draft.scope, poll=draft.is_poll and draft.action != "lift", issuer_id=draft.issuer_id,
            supersedes_id=draft.supersedes_id, created_at=now, expires_at=now + expires_h * 3600,
            buildings=buildings, kind=draft.kind, status=draft.status, audience=draft.audience,
            carries=draft.carries if draft.kind == "notice" else "")
        if draft.action == "lift":  # nothing to remind, follow up or sum up after a lift
            alerts_db.mark_stages_done(store, alert_id, now)
        elif draft.kind == "notice":  # a notice is not chased: no reminders, no follow-ups
            alerts_db.mark_chasing_done(store, alert_id, now)
        if old is not None:
            # the old warning ends here: no more reminders; a lift reports its figures
            alerts_db.end(store, old["id"], "lifted" if draft.action == "lift" else "superseded", now,
                          keep_summary=summarise_old)
            if summarise_old:
                escalation.send_summary(deps, alerts_db.get(store, old["id"]), final=True)
        store.log(now, f"alert.{draft.action}", "alert", alert_id, draft.issuer_id,
                  type=draft.type, colour=draft.colour, buildings=len(buildings))
        relay.plan(deps, alert_id)
        if draft.action != "lift" and draft.kind == "warning":
            followups.vulnerable_first(deps, alerts_db.get(store, alert_id))
    deps.outbox.kick()
    deps.timers.rearm()
    return alert_id


def follow_on(deps: Deps, alert_id: int, action: str, *, colour: str | None = None, text: str = "",
              issuer_id: int | None = None) -> int:
    """Update (升级/降级) or lift (解除) an alert: a new alert superseding the old one."""
    old = get(deps.store, alert_id)
    if old["state"] != "active" or old["action"] == "lift":
        raise AlertError("not_active", value=alert_id)
    return issue(deps, Draft(type=old["type"], colour=colour or old["colour"], text=text,
                             scope=json.loads(old["scope"]), issuer_id=issuer_id or old["issuer_id"],
                             action=action, supersedes_id=alert_id, status=old["status"],
                             audience=json.loads(old["audience"]) if old["audience"] else None,
                             poll=None if colour else bool(old["poll"])))


def live_for_household(deps: Deps, household_id: int) -> list[dict]:
    """Every live warning covering this household, newest first."""
    return alerts_db.live_for_household(deps.store, household_id, deps.clock.now())



def find(store: Store, alert_id: int) -> dict | None:
    return alerts_db.get(store, alert_id)


def latest(store: Store) -> dict | None:
    """The newest warning that is not a lift (what "汇总" means without a number)."""
    return alerts_db.latest(store)


def all_alerts(store: Store) -> list[dict]:
    return alerts_db.all_alerts(store)


def hop_states(store: Store, alert_id: int) -> dict[str, int]:
    from bot.data import relay as relay_db

    return relay_db.counts_by_state(store, alert_id)


def sends_count(store: Store, alert_id: int) -> int:
    return alerts_db.sends_count(store, alert_id)


def issuer_named(store: Store, name: str | None) -> dict | None:
    """The person issuing from the CLI: by name, or the first staff member."""
    from bot.data import people as people_db

    if name:
        return people_db.active_named(store, name)
    staff = people_db.with_role(store, "staff")
    return staff[0] if staff else None
