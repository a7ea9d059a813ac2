"""Escalation of silence, derived from database state.

Nothing here remembers anything in memory: `run_due` looks at the rows (hop deadlines, alert
stage columns, request due times) and does whatever is due, each step exactly once (stage columns
and unique send keys). `next_due_at` computes the next due time and arms one named
APScheduler job for it (bot/domain/timers.py), so a restart loses no timer: start-up just calls
`rearm`.
"""
from __future__ import annotations

import logging

from bot.core import texts
from bot.data import acks as acks_db
from bot.data import alerts as alerts_db
from bot.data import followups as followups_db
from bot.data import org
from bot.data import people as people_db
from bot.data import relay as relay_db
from bot.domain import followups, relay
from bot.domain import requests as requests_mod
from bot.domain.coverage import coverage
from bot.domain.ports import Deps
from bot.domain.timers import JOB  # noqa: F401  (the job name tests read)
from bot.domain.wording import render_context

log = logging.getLogger("linli.escalation")


def _after(settings, table: str, colour: str) -> float:
    minutes = getattr(settings.escalation, table)
    return 60.0 * float(minutes.get(colour, minutes.get("yellow", 30)))


def _stages(settings, alert: dict) -> dict[str, float]:
    """The alert's stages still to come and when each is due (the rows say which are done)."""
    out = {"summary": alert["expires_at"]}
    if alert["reminded_at"] is None:
        out["remind"] = alert["created_at"] + _after(settings, "remind_after_min", alert["colour"])
    if alert["followups_at"] is None:
        out["followups"] = alert["created_at"] + _after(settings, "followup_after_min", alert["colour"])
    return out


def next_due_at(deps: Deps) -> float | None:
    times = [t for t in (relay_db.next_deadline(deps.store), requests_mod.next_due_at(deps),
                         followups.next_due_at(deps)) if t is not None]
    for a in alerts_db.unsummarised(deps.store):
        times.extend(_stages(deps.settings, a).values())
    return min(times) if times else None


async def run_due(deps: Deps) -> dict:
    """Do everything due at deps.clock.now(). Returns counts of what was done."""
    store, now = deps.store, deps.clock.now()
    done = {"hops": 0, "reminders": 0, "followups": 0, "summaries": 0, "requests": 0, "followups_escalated": 0}
    # a superseded or lifted warning stops chasing: its successor has its own hops
    for hop in relay_db.overdue(store, now):
        relay.escalate_hop(deps, hop)
        done["hops"] += 1
    for a in alerts_db.unsummarised(store):
        due = {stage for stage, at in _stages(deps.settings, a).items() if now >= at}
        if "remind" in due:
            done["reminders"] += remind(deps, a)
        if "followups" in due:
            done["followups"] += create_followups(deps, a)
        if "summary" in due:
            send_summary(deps, a, final=True)
            done["summaries"] += 1
    done["followups_escalated"] = followups.escalate_due(deps)
    done["requests"] = await requests_mod.run_due(deps, now)
    deps.outbox.kick()
    return done


def remind(deps: Deps, alert: dict) -> int:
    """Remind un-acked households directly, and give each building lead their list. With stewards
    on (settings.relay.stewards), a steward gets the list of their own silent households and the
    building lead's list leaves those out."""
    store, now = deps.store, deps.clock.now()
    rows, per_building = [], {}
    for h in acks_db.unacked_households(store, alert["id"]):
        per_building.setdefault(h["building_id"], []).append(h)
    ctx = render_context(store, alert, deps.settings)
    text = texts.render("messages/alert_reminder.j2", **ctx)
    per_steward: dict[int, list[dict]] = {}
    reachable: dict[int, tuple | None] = {}
    for building_id, households in per_building.items():
        members = people_db.in_households(store, {h["id"] for h in households})
        for p in members:
            target = deps.reach.person(p)
            if target:
                rows.append(dict(key=f"remind:{alert['id']}:{p['id']}", channel=target[0], target=target[1],
                                 payload={"text": text}, purpose="remind", alert_id=alert["id"]))
        if deps.settings.relay.stewards:
            # a steward nobody can message leaves their households on the lead's list
            stewarded = {h: sid for h, sid in org.stewarded_households(store, building_id).items()
                         if reachable.setdefault(sid, _reach_of(deps, sid)) is not None}
            names: dict[int, list[str]] = {}
            for p in members:
                names.setdefault(p["household_id"], []).append(p["name"])
            for h in households:
                if h["id"] in stewarded:
                    per_steward.setdefault(stewarded[h["id"]], []).append(
                        dict(h, names="、".join(names.get(h["id"], []))))
            households = [h for h in households if h["id"] not in stewarded]
        lead = org.lead_of(store, building_id, 0)
        target = deps.reach.person(lead) if lead and households else None
        if target:
            lead_text = texts.render("messages/alert_lead_list.j2", lead_name=lead["name"],
                                     building=org.node(store, building_id)["name"],
                                     households=[h["label"] for h in households], **ctx)
            rows.append(dict(key=f"leadlist:{alert['id']}:{building_id}", channel=target[0], target=target[1],
                             payload={"text": lead_text}, purpose="leadlist", alert_id=alert["id"]))
    for steward_id, households in per_steward.items():
        steward, target = people_db.active(store, steward_id), reachable[steward_id]
        if target:
            rows.append(dict(key=f"stewardlist:{alert['id']}:{steward_id}", channel=target[0], target=target[1],
                             payload={"text": texts.render("messages/stewards/silent_list.j2", name=steward["name"],
                                                           households=households, **ctx)},
                             purpose="leadlist", alert_id=alert["id"]))
    with store.transaction():
        alerts_db.set_stage(store, alert["id"], "reminded_at", now)
        deps.outbox.enqueue_many(rows)
        store.log(now, "alert.reminded", "alert", alert["id"], households=sum(map(len, per_building.values())))
    return len(rows)


def _reach_of(deps: Deps, resident_id: int):
    person = people_db.active(deps.store, resident_id)
    return deps.reach.person(person) if person else None


def create_followups(deps: Deps, alert: dict) -> int:
    """The follow-up stage: every silent vulnerable resident gets a one-to-one task."""
    with deps.store.transaction():
        alerts_db.set_stage(deps.store, alert["id"], "followups_at", deps.clock.now())
    return followups.create(deps, alert, reason="silent")


def send_summary(deps: Deps, alert: dict, *, final: bool) -> None:
    """Covered %, by level, who is still unreached, open follow-ups -> to the issuer."""
    store, now = deps.store, deps.clock.now()
    text = summary_text(store, alert, settings=deps.settings)
    issuer = people_db.get(store, alert["issuer_id"]) if alert["issuer_id"] else None
    with store.transaction():
        if final:
            alerts_db.finish(store, alert["id"], now)
        target = deps.reach.person(issuer) if issuer else None
        if target:
            deps.outbox.enqueue(f"summary:{alert['id']}:{'final' if final else int(now)}", target[0], target[1],
                                {"text": text}, alert_id=alert["id"], purpose="summary")
        store.log(now, "alert.summary", "alert", alert["id"], final=final)


def summary_text(store, alert: dict, *, settings=None, within: list[int] | None = None) -> str:
    """The coverage summary; `within` (building ids) limits it to what the reader may see."""
    cov = coverage(store, alert["id"], within=within)
    grids = [n for root in cov["tree"] for n in ([root] if root["kind"] == "grid" else root["children"])]
    buildings = [b for g in grids for c in g["children"] for b in c["children"]]
    unreached = [b for b in buildings if b["reached"] == 0]
    tasks = followups_db.open_for_alert(store, alert["id"])
    if within is not None:
        allowed = set(within)
        tasks = [f for f in tasks if f["building_id"] in allowed]
    return texts.render("messages/alert_summary.j2", cov=cov, grids=grids, unreached=unreached,
                        followups=tasks, **render_context(store, alert, settings))
