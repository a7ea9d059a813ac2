"""One-to-one follow-ups of vulnerable residents (一对一上门).

Two ways a task is made:
- policy ("vulnerable first"): at the colours configured (default orange and red) every
  vulnerable resident in scope gets a task the moment the warning goes out, whatever they answer;
- silence: at lower colours, those whose household has not acknowledged by the follow-up time.

A task has a deadline per colour. A missed deadline climbs a level — social worker → grid lead →
staff — and whoever it reaches is told, with the list of residents still unvisited. A vulnerable
resident with no (reachable) social worker starts at the grid lead. A visit is told in chat
("已上门 3栋502 平安", "已上门 #12 不在家") or on the dashboard; its outcome is 平安 (safe),
需要帮助 (help: an urgent request), 不在家 (not_home: the task stays open and is asked again),
已转移 (moved). A visit is also an acknowledgement, through the same `acknowledge` every door uses.
"""
from __future__ import annotations

import json
import logging
import re

from bot.core import texts, vocabulary
from bot.core.filters import roles_of
from bot.data import followups as followups_db
from bot.data import org
from bot.data import people as people_db
from bot.domain.acks import acknowledge, parse_reply
from bot.domain.ports import Deps
from bot.domain.wording import render_context

log = logging.getLogger("linli.followups")

LEVEL_WORKER, LEVEL_GRID, LEVEL_STAFF = 0, 1, 2
OUTCOMES = {"safe": "平安", "help": "需要帮助", "not_home": "不在家", "moved": "已转移"}
DEFAULT_FIRST_COLOURS = ("orange", "red")
DEFAULT_DEADLINE_MIN = {"red": 60, "orange": 120, "yellow": 240, "blue": 480}
DEFAULT_RETRY_MIN = 30


def _policy(settings):
    e = settings.escalation
    return (tuple(getattr(e, "vulnerable_first_colours", DEFAULT_FIRST_COLOURS)),
            dict(DEFAULT_DEADLINE_MIN, **getattr(e, "followup_deadline_min", {})),
            float(getattr(e, "followup_retry_min", DEFAULT_RETRY_MIN)))


def deadline_for(settings, colour: str, now: float) -> float:
    return now + 60 * float(_policy(settings)[1].get(colour, DEFAULT_DEADLINE_MIN["yellow"]))


def create(deps: Deps, alert: dict, *, reason: str) -> int:
    """Tasks for the vulnerable residents in scope: all of them ('policy') or the silent ones
    ('silent'). Inside a transaction of its own; returns how many tasks are new."""
    store, now = deps.store, deps.clock.now()
    people = followups_db.vulnerable_in_scope(store, alert["id"], unacked_only=reason == "silent")
    if alert.get("audience"):  # a warning for some categories: their residents only
        wanted = set(json.loads(alert["audience"]))
        people = [p for p in people if "*" in wanted or wanted & set(re.split(r"[、,，]", p["vulnerable"]))]
    made = []
    with store.transaction():
        for p in people:
            worker = {"wecom_userid": p["worker_userid"], "oa_openid": p["worker_openid"]}
            reachable = p["worker_id"] and p["worker_active"] and deps.reach.person(worker)
            level = LEVEL_WORKER if reachable else LEVEL_GRID
            fid = followups_db.create(store, alert_id=alert["id"], resident_id=p["id"], household_id=p["household_id"],
                                      worker_id=p["worker_id"], at=now, level=level, reason=reason,
                                      deadline_at=deadline_for(deps.settings, alert["colour"], now))
            if fid is None:
                continue  # already a task (policy made it, or a restart)
            store.log(now, "followup.created", "followup", fid, p["worker_id"], alert_id=alert["id"],
                      resident_id=p["id"], reason=reason, level=level)
            made.append(fid)
        _notify(deps, alert, made, now)
    return len(made)


def vulnerable_first(deps: Deps, alert: dict) -> int:
    """At the configured colours, every vulnerable resident in scope is visited, answer or not."""
    colours = _policy(deps.settings)[0]
    if alert["action"] == "lift":
        return 0
    if alert["colour"] in colours or alert.get("audience"):
        # at these colours, or when the warning is for vulnerable households only, nobody waits
        return create(deps, alert, reason="policy")
    return 0


def _notify(deps: Deps, alert: dict, followup_ids: list[int], now: float, *, again: bool = False) -> None:
    """Tell whoever holds each task: the worker one message per task (the old format), a grid lead
    or staff one list per person."""
    store = deps.store
    ctx = render_context(store, alert, deps.settings)
    lists: dict[int, list[dict]] = {}
    holders: dict[int, dict] = {}
    for fid in followup_ids:
        f = followups_db.get(store, fid)
        for person in _holders(deps, f):
            if f["level"] == LEVEL_WORKER:
                target = deps.reach.person(person)
                text = texts.render("messages/followup_task.j2", worker_name=person["name"], name=f["name"],
                                    room=f["room"], category=f["vulnerable"], phone=f["phone"] or "无",
                                    followup_id=fid, policy=f["reason"] == "policy", again=again, **ctx)
                key = f"followup:{fid}" + (f":again:{int(now)}" if again else "")
                deps.outbox.enqueue(key, target[0], target[1], {"text": text},
                                    alert_id=alert["id"], purpose="followup")
            else:
                lists.setdefault(person["id"], []).append(f)
                holders[person["id"]] = person
    for pid, tasks in lists.items():
        person = holders[pid]
        target = deps.reach.person(person)
        level = max(t["level"] for t in tasks)
        text = texts.render("messages/followup_escalated.j2", name=person["name"], tasks=tasks,
                            level=level, again=again, **ctx)
        key = f"followup-list:{alert['id']}:{pid}:{level}:{int(now)}:{min(t['id'] for t in tasks)}"
        deps.outbox.enqueue(key, target[0], target[1], {"text": text}, alert_id=alert["id"], purpose="followup")
        store.log(now, "followup.told", "person", pid, pid, alert_id=alert["id"], level=level,
                  followups=[t["id"] for t in tasks])


def _holders(deps: Deps, f: dict) -> list[dict]:
    """Who holds a task at its level and can be reached."""
    store = deps.store
    if f["level"] == LEVEL_WORKER:
        worker = people_db.active(store, f["worker_id"]) if f["worker_id"] else None
        return [worker] if worker and deps.reach.person(worker) else []
    if f["level"] == LEVEL_GRID:
        grid = org.ancestor(store, org.node(store, f["building_id"]), "grid")
        lead = org.lead_of(store, grid["id"], 0) if grid else None
        if lead and deps.reach.person(lead):
            return [lead]
        f = dict(f, level=LEVEL_STAFF)  # no grid lead to tell: staff hear at once
    return [p for p in people_db.with_role(store, "staff") if deps.reach.person(p)]


def escalate_due(deps: Deps) -> int:
    """Tasks past their deadline: a 不在家 task is asked again once; others climb a level."""
    store, now = deps.store, deps.clock.now()
    moved_up: dict[int, list[int]] = {}
    asked_again: dict[int, list[int]] = {}
    n = 0
    with store.transaction():
        for f in followups_db.due(store, now):
            if f["outcome"] == "not_home":
                # 不在家: the same person is asked to try again; the next miss climbs a level
                followups_db.record_outcome(store, f["id"], "not_home_asked", f["note"] or "", now, close=False,
                                            deadline_at=deadline_for(deps.settings, _colour(store, f), now))
                store.log(now, "followup.asked_again", "followup", f["id"], None, alert_id=f["alert_id"])
                asked_again.setdefault(f["alert_id"], []).append(f["id"])
                continue
            if f["level"] >= LEVEL_STAFF:
                followups_db.ask_again(store, f["id"], None, now)  # staff hold it now: no more timers
                continue
            level = f["level"] + 1
            followups_db.raise_level(store, f["id"], level, deadline_for(deps.settings, _colour(store, f), now), now)
            store.log(now, "followup.escalated", "followup", f["id"], None, alert_id=f["alert_id"], level=level)
            moved_up.setdefault(f["alert_id"], []).append(f["id"])
            n += 1
        for alert_id, ids in asked_again.items():
            _notify(deps, _alert(store, alert_id), ids, now, again=True)
        for alert_id, ids in moved_up.items():
            _notify(deps, _alert(store, alert_id), ids, now)
    return n


def _alert(store, alert_id: int) -> dict:
    from bot.data import alerts as alerts_db

    return alerts_db.get(store, alert_id)


def _colour(store, f: dict) -> str:
    return _alert(store, f["alert_id"])["colour"]


def next_due_at(deps: Deps) -> float | None:
    return followups_db.next_deadline(deps.store)


def outcome_of(note: str) -> str:
    """What a visit note says: 'help', 'not_home', 'moved', 'safe' (a plain note counts as seen, safe)."""
    parsed = parse_reply(note) if note else None
    if parsed and parsed[0] == "help":
        return "help"
    for outcome in ("not_home", "moved", "safe"):
        if any(w in note for w in vocabulary.words(f"visits.{outcome}")):
            return outcome
    return "safe" if not note else "noted"


def record_visit(deps: Deps, f: dict, by: dict, outcome: str, note: str, *, raw: str = "",
                 request_key: str | None = None) -> int | None:
    """Record one visit's outcome (any door: chat, dashboard). Returns the request id it opened."""
    store, now = deps.store, deps.clock.now()
    _, _, retry_min = _policy(deps.settings)
    if outcome == "not_home":
        # the task stays open and comes back to the same person after a while
        with store.transaction():
            followups_db.record_outcome(store, f["id"], "not_home", note, now, close=False,
                                        deadline_at=now + 60 * retry_min)
            store.log(now, "followup.not_home", "followup", f["id"], by["id"], note=note)
        return None
    with store.transaction():
        followups_db.record_outcome(store, f["id"], outcome, note, now, close=True)
        store.log(now, "followup.closed", "followup", f["id"], by["id"], note=note, outcome=outcome)
    ask = ""
    if outcome == "help" or outcome == "noted":
        ask = f"{f['room']} {f['name']}：{note or '需要帮助'}"
    kind = "help" if outcome == "help" else ("safe" if outcome in ("safe", "moved") else "ok")
    result = acknowledge(deps, household_id=f["household_id"], door="visit", kind=kind, alert_id=f["alert_id"],
                         resident=people_db.get(store, f["resident_id"]), proxy=by, raw=raw or note, ask=ask,
                         request_key=request_key)
    return result.request_id


def visit(deps: Deps, worker: dict, rest: str, *, raw: str = "", request_key: str | None = None
          ) -> tuple[list[dict], int | None]:
    """Chat: "已上门 3栋502 平安". Closes (or, for 不在家, keeps open) the follow-ups `rest` names
    among those the sender holds. Returns (tasks touched, request id)."""
    store = deps.store
    opened = followups_db.open_of_worker(store, worker["id"])
    # a grid lead or staff member holding escalated tasks may report the visit too
    from bot.domain import areas

    area = areas.buildings_of(store, worker)
    if roles_of(worker) & {"grid_lead", "staff"} and (area is None or area):
        opened += [f for f in followups_db.open_escalated_to(store, area, LEVEL_GRID)
                   if f["id"] not in {o["id"] for o in opened}]
    matches = match(opened, rest)
    note = rest
    for f in matches:  # what is left after the room is the worker's note ("平安", "家里进水了")
        note = note.replace(f["room"], "")
    note = re.sub(r"#\d+|(?:\d+栋)?(?:\d+单元)?\d{3,4}", "", note).strip(" ，,。")
    outcome = outcome_of(note)
    request_id = None
    for f in matches:
        rid = record_visit(deps, f, worker, outcome, note, raw=raw,
                           request_key=request_key if request_id is None else None)
        request_id = request_id or rid
    for f in matches:
        f["outcome"] = outcome
    return matches, request_id


def match(opened: list[dict], text: str) -> list[dict]:
    """Open follow-ups named by "#12" or by a room ("502", "3栋502"); one household only."""
    m = re.search(r"#(\d+)", text)
    if m:
        return [f for f in opened if f["id"] == int(m.group(1))]
    exact = [f for f in opened if f["room"] in text]  # the full label, as the task message gave it
    if exact:
        return exact if len({f["household_id"] for f in exact}) == 1 else []
    room = re.search(r"(?:(\d+)栋)?\s*(?:\d+单元)?\s*(\d{3,4})", text)
    if room is None:
        return []
    found = [f for f in opened if f["room_no"] == room.group(2)
             and (room.group(1) is None or f"{room.group(1)}栋" in f["room"])]
    return found if len({f["household_id"] for f in found}) == 1 else []


def board(deps: Deps, viewer: dict | None, alert_id: int | None = None) -> list[dict]:
    """Every task the viewer may see, with its state for the board: open / overdue / done."""
    from bot.domain import areas

    now = deps.clock.now()
    rows = followups_db.board(deps.store, areas.buildings_of(deps.store, viewer), alert_id)
    for r in rows:
        r["board_state"] = ("done" if r["state"] == "closed" else
                            "overdue" if r["deadline_at"] is not None and r["deadline_at"] <= now or r["level"] > 0
                            else "open")
        r["outcome_zh"] = OUTCOMES.get(r["outcome"] or "", "")
    return rows
