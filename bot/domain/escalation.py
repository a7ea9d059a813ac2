"""Escalation of silence, derived from database state.

Nothing here remembers anything in memory: `run_due` looks at the rows (hop deadlines, alert
stage columns, request due times) and does whatever is due, each step exactly once (stage columns
and unique send keys). `rearm` computes the next due time and arms one named APScheduler job for
it, so a restart loses no timer: start-up just calls `rearm`.
"""
from __future__ import annotations

import logging

from bot.domain import alerts as alerts_mod
from bot.domain import relay
from bot.core import texts
from bot.domain import requests as requests_mod
from bot.domain.acks import coverage, unacked_households

log = logging.getLogger("linli.escalation")
JOB = "escalation:next"


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


def next_due_at(app) -> float | None:
    store = app.store
    times = [t for t in (
        store.scalar("SELECT MIN(h.deadline_at) FROM hops h JOIN alerts a ON a.id=h.alert_id "
                     "WHERE h.state='asked' AND h.deadline_at IS NOT NULL AND a.state='active'"),
        requests_mod.next_due_at(app)) if t is not None]
    for a in store.q("SELECT * FROM alerts WHERE summary_at IS NULL"):
        times.extend(_stages(app.settings, a).values())
    return min(times) if times else None


async def run_due(app) -> dict:
    """Do everything due at app.clock.now(). Returns counts of what was done."""
    store, now = app.store, app.clock.now()
    done = {"hops": 0, "reminders": 0, "followups": 0, "summaries": 0, "requests": 0}
    # a superseded or lifted warning stops chasing: its successor has its own hops
    for hop in store.q("SELECT h.* FROM hops h JOIN alerts a ON a.id=h.alert_id WHERE h.state='asked' "
                       "AND h.deadline_at <= ? AND a.state='active' ORDER BY h.id", (now,)):
        relay.escalate_hop(app, hop)
        done["hops"] += 1
    for a in store.q("SELECT * FROM alerts WHERE summary_at IS NULL ORDER BY id"):
        due = {stage for stage, at in _stages(app.settings, a).items() if now >= at}
        if "remind" in due:
            done["reminders"] += remind(app, a)
        if "followups" in due:
            done["followups"] += create_followups(app, a)
        if "summary" in due:
            send_summary(app, a, final=True)
            done["summaries"] += 1
    done["requests"] = await requests_mod.run_due(app, now)
    app.outbox.kick()
    return done


def rearm(app) -> float | None:
    """Arm the single escalation job at the next due time (or disarm it)."""
    at = next_due_at(app)
    if getattr(app, "scheduler", None) is not None:
        async def job() -> None:
            try:
                await run_due(app)
            finally:
                rearm(app)
        app.scheduler.arm(JOB, at, job)
    return at


def remind(app, alert: dict) -> int:
    """Remind un-acked households directly, and give each building lead their list."""
    store, now = app.store, app.clock.now()
    rows, per_building = [], {}
    for h in unacked_households(store, alert["id"]):
        per_building.setdefault(h["building_id"], []).append(h)
    text = texts.render("messages/alert_reminder.j2", **alerts_mod.render_context(store, alert))
    for building_id, households in per_building.items():
        ids = {h["id"] for h in households}
        for p in store.q(f"SELECT * FROM residents WHERE active=1 AND household_id IN "
                         f"({','.join('?' * len(ids))})", tuple(ids)):
            target = relay.dm_target(p)
            if target:
                rows.append(dict(key=f"remind:{alert['id']}:{p['id']}", channel=target[0], target=target[1],
                                 payload={"text": text}, purpose="remind", alert_id=alert["id"]))
        lead = relay.lead_of(store, building_id, 0)
        if lead and relay.dm_target(lead):
            building = store.q1("SELECT name FROM nodes WHERE id=?", (building_id,))
            lead_text = texts.render("messages/alert_lead_list.j2", lead_name=lead["name"],
                                     building=building["name"], households=[h["label"] for h in households],
                                     **alerts_mod.render_context(store, alert))
            channel, target = relay.dm_target(lead)
            rows.append(dict(key=f"leadlist:{alert['id']}:{building_id}", channel=channel, target=target,
                             payload={"text": lead_text}, purpose="leadlist", alert_id=alert["id"]))
    with store.transaction():
        store.conn.execute("UPDATE alerts SET reminded_at=? WHERE id=?", (now, alert["id"]))
        app.outbox.enqueue_many(rows)
        store.log(now, "alert.reminded", "alert", alert["id"], households=sum(map(len, per_building.values())))
    return len(rows)


def create_followups(app, alert: dict) -> int:
    """Every un-acked vulnerable resident becomes a one-to-one task for their social worker."""
    store, now = app.store, app.clock.now()
    people = store.q(
        """SELECT r.*, h.label AS room, w.id AS worker_id, w.name AS worker_name,
                  w.wecom_userid AS worker_userid, w.oa_openid AS worker_openid
           FROM residents r JOIN households h ON h.id = r.household_id AND h.active = 1
           JOIN alert_scope s ON s.building_id = h.building_id AND s.alert_id = ?
           LEFT JOIN residents w ON w.id = r.social_worker_id
           WHERE r.active = 1 AND r.vulnerable != ''
             AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.alert_id = ? AND a.household_id = h.id)
           ORDER BY r.id""", (alert["id"], alert["id"]))
    n = 0
    with store.transaction() as conn:
        conn.execute("UPDATE alerts SET followups_at=? WHERE id=?", (now, alert["id"]))
        for p in people:
            cur = conn.execute("INSERT OR IGNORE INTO followups (alert_id, resident_id, household_id, worker_id,"
                               " created_at) VALUES (?,?,?,?,?)",
                               (alert["id"], p["id"], p["household_id"], p["worker_id"], now))
            if not cur.rowcount:
                continue
            n += 1
            fid = cur.lastrowid
            store.log(now, "followup.created", "followup", fid, p["worker_id"], alert_id=alert["id"],
                      resident_id=p["id"])
            worker = {"wecom_userid": p["worker_userid"], "oa_openid": p["worker_openid"]}
            target = relay.dm_target(worker) if p["worker_id"] else None
            if target is None:
                log.warning("followup %s: resident %s has no reachable social worker", fid, p["id"])
                continue
            text = texts.render("messages/followup_task.j2", worker_name=p["worker_name"], name=p["name"],
                                room=p["room"], category=p["vulnerable"], phone=p["phone"] or "无",
                                followup_id=fid, **alerts_mod.render_context(store, alert))
            app.outbox.enqueue(f"followup:{fid}", target[0], target[1], {"text": text},
                               alert_id=alert["id"], purpose="followup")
    return n


def send_summary(app, alert: dict, *, final: bool) -> None:
    """Covered %, by level, who is still unreached, open follow-ups -> to the issuer."""
    store, now = app.store, app.clock.now()
    text = summary_text(store, alert)
    issuer = store.q1("SELECT * FROM residents WHERE id=?", (alert["issuer_id"],)) if alert["issuer_id"] else None
    with store.transaction() as conn:
        if final:
            conn.execute("UPDATE alerts SET summary_at=?, state=CASE WHEN state='active' THEN 'expired' "
                         "ELSE state END WHERE id=?", (now, alert["id"]))
        target = relay.dm_target(issuer) if issuer else None
        if target:
            app.outbox.enqueue(f"summary:{alert['id']}:{'final' if final else int(now)}", target[0], target[1],
                               {"text": text}, alert_id=alert["id"], purpose="summary")
        store.log(now, "alert.summary", "alert", alert["id"], final=final)


def summary_text(store, alert: dict) -> str:
    cov = coverage(store, alert["id"])
    grids = [n for root in cov["tree"] for n in ([root] if root["kind"] == "grid" else root["children"])]
    buildings = [b for g in grids for c in g["children"] for b in c["children"]]
    unreached = [b for b in buildings if b["reached"] == 0]
    followups = store.q("SELECT f.*, r.name, h.label AS room, w.name AS worker FROM followups f "
                        "JOIN residents r ON r.id=f.resident_id JOIN households h ON h.id=f.household_id "
                        "LEFT JOIN residents w ON w.id=f.worker_id WHERE f.alert_id=? AND f.state='open' "
                        "ORDER BY f.id", (alert["id"],))
    return texts.render("messages/alert_summary.j2", cov=cov, grids=grids, unreached=unreached,
                        followups=followups, **alerts_mod.render_context(store, alert))
