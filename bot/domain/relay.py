"""The relay: an alert goes down the tree, hop by hop, and every hop is tracked.

For every group bound to a node in the alert's scope there is one hop:
- the bot can post there (WeCom app chat, group robot): it posts;
- it cannot (a personal WeChat group): it asks the group's lead to forward, and the lead answers
  "已转发"; a WeCom customer group: the send waits for the owner's confirmation, tracked the same way.
A hop not done by its deadline escalates: the backup lead, then the grid lead, then direct
messages to the building's households. Buildings with no group at all get direct messages at once.

Every send is an outbox row written in the same transaction as the hop, so a crash resumes where
it stopped: nothing is skipped and the unique send keys stop anything going out twice.
"""
from __future__ import annotations

import json
import logging

from bot.domain import alerts as alerts_mod
from bot.core import texts

log = logging.getLogger("linli.relay")

POST_CHANNEL = {"app_chat": "wecom_appchat", "robot": "robot"}
DIRECT_OA_CHANNEL = "oa_template"  # service notices reach residents outside the 48 h window
WECOM_BATCH = 1000  # message/send takes up to 1,000 userids per call
LAST_LEVEL = 3  # 0 lead, 1 backup lead, 2 grid lead, 3 direct to households


def _deadline_min(settings, kind: str) -> float:
    r = settings.relay
    return {"community": r.grid_deadline_min, "grid": r.grid_deadline_min,
            "compound": r.compound_deadline_min}.get(kind, r.building_deadline_min)


def dm_target(resident: dict) -> tuple[str, str] | None:
    """How to reach one person privately: staff and leads through WeCom, others through the OA."""
    if resident.get("wecom_userid"):
        return "wecom_user", resident["wecom_userid"]
    if resident.get("oa_openid"):
        return DIRECT_OA_CHANNEL, resident["oa_openid"]
    return None


def plan(app, alert_id: int) -> None:
    """Write the hops and their sends for a new alert (inside the caller's transaction)."""
    store, now = app.store, app.clock.now()
    alert = store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))
    scope = json.loads(alert["scope"]) or [r["id"] for r in store.q(
        "SELECT id FROM nodes WHERE parent_id IS NULL")]
    nodes = store.q(
        f"""WITH RECURSIVE sub(id) AS (SELECT id FROM nodes WHERE id IN ({','.join('?' * len(scope))})
                UNION SELECT n.id FROM nodes n JOIN sub ON n.parent_id = sub.id)
            SELECT n.* FROM nodes n JOIN sub ON sub.id = n.id ORDER BY n.id""", scope)
    groups = {}
    for g in store.q("SELECT * FROM chat_groups WHERE active=1 ORDER BY id"):
        groups.setdefault(g["node_id"], []).append(g)
    group_text = alerts_mod.render(store, alert)
    sends, direct_buildings = [], []
    for node in nodes:
        node_groups = groups.get(node["id"], [])
        if not node_groups and node["kind"] == "building":
            direct_buildings.append(node["id"])
            continue
        for g in node_groups:
            sends.extend(_plan_hop(app, alert, node, g, group_text, now))
    for building_id in direct_buildings:
        hop_id = store.conn.execute(
            "INSERT INTO hops (alert_id, node_id, method, state, escalation_level, created_at, done_at)"
            " VALUES (?,?,?,?,?,?,?)",
            (alert_id, building_id, "direct", "posted", LAST_LEVEL, now, now)).lastrowid
        sends.extend(direct_sends(app, alert, hop_id, building_id))
    app.outbox.enqueue_many(sends)


def _plan_hop(app, alert, node, group, group_text, now) -> list[dict]:
    store = app.store
    kind = group["kind"]
    method = "post" if kind in POST_CHANNEL else ("customer" if kind == "customer" else "ask_lead")
    lead = None
    if method != "post":
        lead = (store.q1("SELECT * FROM residents WHERE id=? AND active=1", (group["owner_id"],))
                if group["owner_id"] else None) or lead_of(store, node["id"], 0)
    deadline = None if method == "post" else now + 60 * _deadline_min(app.settings, node["kind"])
    hop_id = store.conn.execute(
        "INSERT INTO hops (alert_id, node_id, group_id, method, state, lead_id, deadline_at, created_at)"
        " VALUES (?,?,?,?,?,?,?,?)",
        (alert["id"], node["id"], group["id"], method, "pending" if method == "post" else "asked",
         lead["id"] if lead else None, deadline, now)).lastrowid
    if lead is not None:
        store.log(now, "hop.asked", "hop", hop_id, lead["id"], level=0, alert_id=alert["id"])
    base = {"alert_id": alert["id"]}
    if method == "post":
        return [dict(base, key=f"hop:{hop_id}:post", channel=POST_CHANNEL[kind], target=group["chat_id"],
                     payload={"text": group_text}, purpose="hop")]
    if lead is None or dm_target(lead) is None:  # nobody to ask: let the deadline escalate at once
        store.conn.execute("UPDATE hops SET deadline_at=? WHERE id=?", (now, hop_id))
        return []
    out = [_ask(app, alert, hop_id, group, lead, group_text, level=0)]
    if method == "customer" and lead.get("wecom_userid"):
        # the mass send waits in the owner's WeCom client; the ask tells them to confirm it
        out.insert(0, dict(base, key=f"hop:{hop_id}:customer", channel="customer_group", target=group["chat_id"],
                           payload={"text": group_text, "owner": lead["wecom_userid"]}, purpose="hop"))
    return out


def _ask(app, alert, hop_id, group, lead, group_text, *, level: int) -> dict:
    channel, target = dm_target(lead)
    text = texts.render("messages/alert_ask_forward.j2", lead_name=lead["name"],
                        group_name=group["name"] if group else "", text=group_text, escalated=level > 0,
                        customer=bool(group and group["kind"] == "customer" and level == 0))
    return dict(key=f"hop:{hop_id}:ask:{level}", channel=channel, target=target,
                payload={"text": text}, purpose="ask", alert_id=alert["id"])


def lead_of(store, node_id: int, rank: int) -> dict | None:
    return store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id = l.resident_id "
                    "WHERE l.node_id=? AND r.active=1 ORDER BY l.rank LIMIT 1 OFFSET ?", (node_id, rank))


def ack_link(app, alert_id: int, household_id: int) -> str:
    from bot.web.ack import make_token

    token = make_token(app.settings.server.link_secret, alert_id, household_id)
    return f"{app.settings.server.public_url.rstrip('/')}/ack/{token}"


def direct_sends(app, alert: dict, hop_id: int, building_id: int,
                 only_households: set[int] | None = None) -> list[dict]:
    """Direct messages to every reachable resident of a building: OA users one by one (each with
    their household's ack link), WeCom users batched up to 1,000 per call."""
    store = app.store
    people = store.q("SELECT r.id, r.household_id, r.wecom_userid, r.oa_openid FROM residents r "
                     "JOIN households h ON h.id = r.household_id "
                     "WHERE h.building_id=? AND h.active=1 AND r.active=1 ORDER BY r.id", (building_id,))
    out, wecom = [], {}
    plain = None
    for p in people:
        if only_households is not None and p["household_id"] not in only_households:
            continue
        if p["wecom_userid"]:
            wecom[p["wecom_userid"]] = p["household_id"]
        elif p["oa_openid"]:
            link = ack_link(app, alert["id"], p["household_id"])
            text = alerts_mod.render(store, alert, "messages/alert_direct.j2", link=link)
            out.append(dict(key=f"hop:{hop_id}:direct:{p['id']}", channel=DIRECT_OA_CHANNEL,
                            target=p["oa_openid"], purpose="direct", alert_id=alert["id"],
                            payload={"text": text, "url": link}))
    ids = list(wecom)
    for i in range(0, len(ids), WECOM_BATCH):
        chunk = ids[i:i + WECOM_BATCH]
        plain = plain or alerts_mod.render(store, alert, "messages/alert_direct.j2", link="")
        out.append(dict(key=f"hop:{hop_id}:directw:{i // WECOM_BATCH}", channel="wecom_user",
                        target="|".join(chunk), purpose="direct", alert_id=alert["id"],
                        payload={"text": plain}))
    return out


# -- outcomes ---------------------------------------------------------------------------------
def reachable_households(store, building_id: int) -> list[int]:
    """Households with at least one member on WeChat/WeCom: a group message can reach them."""
    return [r["id"] for r in store.q(
        "SELECT DISTINCT h.id FROM households h JOIN residents r ON r.household_id = h.id "
        "WHERE h.building_id=? AND h.active=1 AND r.active=1 "
        "AND (r.oa_openid IS NOT NULL OR r.wecom_userid IS NOT NULL)", (building_id,))]


def member_households(store, node_id: int, kind: str) -> list[int]:
    """Households a group message on this node reaches, from the register: a building group holds
    the building's residents on WeChat; a compound group the leads of its buildings; a grid group
    its grid leads; the community group its staff (those two mostly live elsewhere)."""
    if kind == "building":
        return reachable_households(store, node_id)
    if kind == "compound":
        sql = ("SELECT DISTINCT r.household_id AS id FROM node_leads l JOIN nodes b ON b.id=l.node_id "
               "JOIN residents r ON r.id=l.resident_id WHERE b.parent_id=? AND r.active=1 "
               "AND r.household_id IS NOT NULL AND r.wecom_userid IS NOT NULL")
    elif kind == "grid":
        sql = ("SELECT DISTINCT r.household_id AS id FROM node_leads l JOIN residents r ON r.id=l.resident_id "
               "WHERE l.node_id=? AND r.active=1 AND r.household_id IS NOT NULL AND r.wecom_userid IS NOT NULL")
    else:
        sql = ("SELECT DISTINCT household_id AS id FROM residents WHERE ? IS NOT NULL AND active=1 AND "
               "roles LIKE '%staff%' AND household_id IS NOT NULL AND wecom_userid IS NOT NULL")
    return [r["id"] for r in store.q(sql, (node_id,))]


def deliver_building(store, alert_id: int, node_id: int, via: str, at: float) -> int:
    """Record the households a done hop reached (only those in the alert's scope count)."""
    kind = store.scalar("SELECT kind FROM nodes WHERE id=?", (node_id,))
    households = member_households(store, node_id, kind)
    if households and kind != "building":
        households = [r["id"] for r in store.q(
            f"SELECT id FROM households WHERE id IN ({','.join('?' * len(households))}) AND building_id IN "
            "(SELECT building_id FROM alert_scope WHERE alert_id=?)", (*households, alert_id))]
    rows = [(alert_id, h, via, at) for h in households]
    store.conn.executemany("INSERT OR IGNORE INTO deliveries (alert_id, household_id, via, at) "
                           "VALUES (?,?,?,?)", rows)
    return len(rows)


def hop_done(app, hop: dict, state: str, by: int | None = None) -> None:
    """Mark a hop posted/forwarded and record the households its group reached. A forward that
    comes after the hop moved on (escalated, failed) keeps that state but still counts: the
    group did get the warning."""
    store, now = app.store, app.clock.now()
    with store.transaction() as conn:
        n = conn.execute(
            "UPDATE hops SET state=?, done_at=?, done_by=?, deadline_at=NULL WHERE id=? "
            "AND state IN ('pending','asked')", (state, now, by, hop["id"])).rowcount
        event = f"hop.{state}"
        if not n and state == "forwarded":
            n = conn.execute("UPDATE hops SET done_at=?, done_by=? WHERE id=? AND done_by IS NULL",
                             (now, by, hop["id"])).rowcount
            event = "hop.forwarded_late"
        if n:
            deliver_building(store, hop["alert_id"], hop["node_id"], state, now)
            store.log(now, event, "hop", hop["id"], by, alert_id=hop["alert_id"])


USER_CHANNELS = ("wecom_user", "oa_template", "oa_cs")


def deliver_people(store, alert_id: int, channel: str, targets: list[str], via: str, at: float) -> int:
    """A message about the alert reached these people: their households (in scope) are reached."""
    column = "wecom_userid" if channel == "wecom_user" else "oa_openid"
    rows = store.q(
        f"SELECT DISTINCT r.household_id AS id FROM residents r JOIN households h ON h.id=r.household_id "
        f"JOIN alert_scope s ON s.building_id=h.building_id AND s.alert_id=? "
        f"WHERE r.{column} IN ({','.join('?' * len(targets))})", (alert_id, *targets))
    store.conn.executemany("INSERT OR IGNORE INTO deliveries (alert_id, household_id, via, at) VALUES (?,?,?,?)",
                           [(alert_id, r["id"], via, at) for r in rows])
    return len(rows)


async def on_send_result(app, row: dict, result) -> None:
    """Outbox hook: react to the outcome of a relay send."""
    store = app.store
    if row["state"] == "sent" and row["alert_id"] and row["channel"] in USER_CHANNELS:
        invalid = set((result.detail or {}).get("invaliduser", "").split("|")) - {""}
        targets = [t for t in row["target"].split("|") if t not in invalid]
        if targets:
            deliver_people(store, row["alert_id"], row["channel"], targets, row["purpose"], app.clock.now())
    if row["purpose"] not in ("hop", "ask"):
        return
    hop = store.q1("SELECT * FROM hops WHERE id=?", (int(row["key"].split(":")[1]),))
    if hop is None:
        return
    if row["purpose"] == "hop" and row["state"] == "sent" and hop["method"] == "post":
        hop_done(app, hop, "posted")
    elif row["state"] in ("failed", "dead"):
        log.warning("relay send %s %s (%s); escalating hop %s", row["key"], row["state"],
                    row["error_code"], hop["id"])
        escalate_hop(app, hop)


def install(app) -> None:
    """Subscribe the relay to the outbox's results."""
    async def hook(row: dict, result) -> None:
        await on_send_result(app, row, result)

    app.outbox.subscribe("*", hook)


def lead_forwarded(app, resident: dict) -> list[str]:
    """A lead says "已转发": every hop they were asked about is done (see hop_done for late ones)."""
    store = app.store
    hops = store.q(
        "SELECT h.*, g.name AS group_name FROM hops h LEFT JOIN chat_groups g ON g.id = h.group_id "
        "WHERE h.state IN ('asked','escalated','failed') AND h.done_by IS NULL AND (h.lead_id=? OR h.id IN "
        "(SELECT ref_id FROM events WHERE ref_type='hop' AND kind='hop.asked' AND actor_id=?)) ORDER BY h.id",
        (resident["id"], resident["id"]))
    for hop in hops:
        if hop["method"] == "customer":  # the owner confirmed the mass send in their client
            send = store.q1("SELECT id FROM sends WHERE key=? AND state='waiting'", (f"hop:{hop['id']}:customer",))
            if send:
                app.outbox.mark_confirmed(send["id"])
        hop_done(app, hop, "forwarded", by=resident["id"])
    return [h["group_name"] or "" for h in hops]


def escalate_hop(app, hop: dict) -> None:
    """One step up the ladder for a hop that missed its deadline or whose send failed."""
    store, now = app.store, app.clock.now()
    alert = store.q1("SELECT * FROM alerts WHERE id=?", (hop["alert_id"],))
    node = store.q1("SELECT * FROM nodes WHERE id=?", (hop["node_id"],))
    group = store.q1("SELECT * FROM chat_groups WHERE id=?", (hop["group_id"],)) if hop["group_id"] else None
    asked = {hop["lead_id"]} if hop["lead_id"] else set()
    asked |= {e["actor_id"] for e in store.q(
        "SELECT actor_id FROM events WHERE ref_type='hop' AND ref_id=? AND kind='hop.asked'", (hop["id"],))}
    if hop["method"] == "customer":  # the owner never confirmed: that mass send is abandoned
        send = store.q1("SELECT id FROM sends WHERE key=? AND state='waiting'", (f"hop:{hop['id']}:customer",))
        if send:
            app.outbox.mark_confirmed(send["id"], ok=False, error="owner did not confirm before the deadline")
    level, lead = hop["escalation_level"], None
    while level < LAST_LEVEL - 1 and lead is None:
        level += 1
        if level == 1:
            cand = lead_of(store, node["id"], 1) if node["kind"] != "grid" else None
        else:
            grid = _ancestor(store, node, "grid")
            cand = lead_of(store, grid["id"], 0) if grid else None
        if cand and cand["id"] not in asked and dm_target(cand):
            lead = cand
    with store.transaction():
        if lead is not None:
            deadline = now + 60 * _deadline_min(app.settings, node["kind"])
            store.conn.execute("UPDATE hops SET state='asked', lead_id=?, escalation_level=?, deadline_at=? "
                               "WHERE id=?", (lead["id"], level, deadline, hop["id"]))
            store.log(now, "hop.asked", "hop", hop["id"], lead["id"], level=level, alert_id=alert["id"])
            app.outbox.enqueue_many([_ask(app, alert, hop["id"], group, lead,
                                          alerts_mod.render(store, alert), level=level)])
        elif node["kind"] == "building":
            store.conn.execute("UPDATE hops SET state='escalated', escalation_level=?, deadline_at=NULL "
                               "WHERE id=?", (LAST_LEVEL, hop["id"]))
            store.log(now, "hop.escalated", "hop", hop["id"], level=LAST_LEVEL, alert_id=alert["id"])
            app.outbox.enqueue_many(direct_sends(app, alert, hop["id"], node["id"]))
        else:
            store.conn.execute("UPDATE hops SET state='failed', escalation_level=?, deadline_at=NULL "
                               "WHERE id=?", (LAST_LEVEL, hop["id"]))
            store.log(now, "hop.failed", "hop", hop["id"], alert_id=alert["id"])


def _ancestor(store, node: dict, kind: str) -> dict | None:
    while node is not None and node["kind"] != kind:
        node = store.q1("SELECT * FROM nodes WHERE id=?", (node["parent_id"],)) if node["parent_id"] else None
    return node
