"""The relay: an alert goes down the tree, hop by hop, and every hop is tracked.

For every group bound to a node in the alert's scope there is one hop:
- the bot can post there (WeCom app chat, group robot): it posts;
- it cannot (a personal WeChat group): it asks the group's lead to forward, and the lead answers
  "已转发"; a WeCom customer group: the send waits for the owner's confirmation, tracked the same way.
A hop not done by its deadline escalates: the backup lead, then the grid lead, then direct
messages to the building's households. Buildings with no group at all get direct messages at once.

Stewards (党员中心户 / 红管家, households.steward_id), when `settings.relay.stewards` is on: each
steward of a building in scope is asked by a direct message to pass the warning to the households
they look after (a steward hop: method 'ask_lead', no group, lead_id the steward, the steward's
own deadline). Their "已转发" records exactly those households; a steward who misses the deadline
(or cannot be reached) has their households messaged directly. The building's own hop still goes
to its group, but its direct messages (no group, or the building hop escalated) are for the
households no steward looks after. With stewards off nothing of this happens.

Every send is an outbox row written in the same transaction as the hop, so a crash resumes where
it stopped: nothing is skipped and the unique send keys stop anything going out twice. How a
person is reached (which channel, how many per call) is the outbound transport's business,
asked through `deps.reach`.
"""
from __future__ import annotations

import json
import logging

from bot.core import texts
from bot.data import alerts as alerts_db
from bot.data import org
from bot.data import people as people_db
from bot.data import relay as relay_db
from bot.domain import links
from bot.domain.ports import Deps
from bot.domain.wording import render

log = logging.getLogger("linli.relay")

POST_CHANNEL = {"app_chat": "wecom_appchat", "robot": "robot"}
USER_CHANNELS = ("wecom_user", "oa_template", "oa_cs")
LAST_LEVEL = 3  # 0 lead, 1 backup lead, 2 grid lead, 3 direct to households


def _deadline_min(settings, kind: str) -> float:
    r = settings.relay
    return {"community": r.grid_deadline_min, "grid": r.grid_deadline_min,
            "compound": r.compound_deadline_min}.get(kind, r.building_deadline_min)


def plan(deps: Deps, alert_id: int) -> None:
    """Write the hops and their sends for a new alert (inside the caller's transaction)."""
    store, now = deps.store, deps.clock.now()
    alert = alerts_db.get(store, alert_id)
    scope = json.loads(alert["scope"]) or [r["id"] for r in org.roots(store)]
    groups = org.groups_by_node(store)
    group_text = render(store, alert, settings=deps.settings)
    sends, direct_buildings = [], []
    targets = alerts_db.targets(store, alert_id)
    if targets is not None:
        # vulnerable households only: a group post would reach everyone, so each one is messaged
        for building_id in alerts_db.scope_buildings(store, alert_id):
            mine = {h for h in targets if h in set(relay_db.households_of_building(store, building_id))}
            if not mine:
                continue
            hop_id = relay_db.create_hop(store, alert_id=alert_id, node_id=building_id, group_id=None,
                                         method="direct", state="posted", escalation_level=LAST_LEVEL,
                                         created_at=now, done_at=now)
            sends.extend(direct_sends(deps, alert, hop_id, building_id, only_households=mine))
        deps.outbox.enqueue_many(sends)
        return
    stewards_on = deps.settings.relay.stewards
    for node in org.subtree(store, scope):
        node_groups = groups.get(node["id"], [])
        if stewards_on and node["kind"] == "building":
            sends.extend(_plan_steward_hops(deps, alert, node, group_text, now))
        if not node_groups and node["kind"] == "building":
            direct_buildings.append(node["id"])
            continue
        for g in node_groups:
            sends.extend(_plan_hop(deps, alert, node, g, group_text, now))
    for building_id in direct_buildings:
        only = unstewarded(deps, building_id)
        if only is not None and not only:
            continue  # every household has a steward: theirs are the last hops
        hop_id = relay_db.create_hop(store, alert_id=alert_id, node_id=building_id, group_id=None,
                                     method="direct", state="posted", escalation_level=LAST_LEVEL,
                                     created_at=now, done_at=now)
        sends.extend(direct_sends(deps, alert, hop_id, building_id, only_households=only))
    deps.outbox.enqueue_many(sends)


# -- stewards ---------------------------------------------------------------------------------
def is_steward_hop(hop: dict) -> bool:
    """A steward's hop: asked like a lead, for no group (a lead's hop always has its group)."""
    return hop["method"] == "ask_lead" and hop["group_id"] is None


def unstewarded(deps: Deps, building_id: int) -> set[int] | None:
    """With stewards on, the building's households no steward looks after (what its own direct
    messages are for); None when stewards are off or nobody in the building has one (everyone)."""
    if not deps.settings.relay.stewards:
        return None
    stewarded = org.stewarded_households(deps.store, building_id)
    if not stewarded:
        return None
    return set(relay_db.households_of_building(deps.store, building_id)) - set(stewarded)


def stewards_of_building(deps: Deps, building_id: int) -> list[dict]:
    """A building's stewards, each with the households they look after ("households": rows with
    label, room, unit and the members' "names"), for pages and the demo."""
    return org.stewards_of_building(deps.store, building_id)


def _plan_steward_hops(deps: Deps, alert, node, group_text, now) -> list[dict]:
    store, out = deps.store, []
    deadline = now + 60 * deps.settings.relay.steward_deadline_min
    for steward in org.stewards_of_building(store, node["id"]):
        hop_id = relay_db.create_hop(store, alert_id=alert["id"], node_id=node["id"], group_id=None,
                                     method="ask_lead", state="asked", lead_id=steward["id"],
                                     deadline_at=deadline, created_at=now)
        store.log(now, "hop.asked", "hop", hop_id, steward["id"], level=0, alert_id=alert["id"], steward=True)
        target = deps.reach.person(steward)
        if target is None:  # not on WeChat: their households are messaged directly at once
            relay_db.set_deadline(store, hop_id, now)
            continue
        text = texts.render("messages/stewards/ask_forward.j2", name=steward["name"],
                            households=steward["households"], building=node["name"], text=group_text,
                            notice=alert.get("kind") == "notice")
        out.append(dict(key=f"hop:{hop_id}:ask:0", channel=target[0], target=target[1],
                        payload={"text": text}, purpose="ask", alert_id=alert["id"]))
    return out


def _steward_household_ids(store, hop: dict) -> list[int]:
    return [h["id"] for h in org.steward_households(store, hop["lead_id"], hop["node_id"])]


def _plan_hop(deps: Deps, alert, node, group, group_text, now) -> list[dict]:
    store = deps.store
    kind = group["kind"]
    method = "post" if kind in POST_CHANNEL else ("customer" if kind == "customer" else "ask_lead")
    lead = None
    if method != "post":
        lead = (people_db.active(store, group["owner_id"]) if group["owner_id"] else None) \
            or org.lead_of(store, node["id"], 0)
    deadline = None if method == "post" else now + 60 * _deadline_min(deps.settings, node["kind"])
    hop_id = relay_db.create_hop(store, alert_id=alert["id"], node_id=node["id"], group_id=group["id"],
                                 method=method, state="pending" if method == "post" else "asked",
                                 lead_id=lead["id"] if lead else None, deadline_at=deadline, created_at=now)
    if lead is not None:
        store.log(now, "hop.asked", "hop", hop_id, lead["id"], level=0, alert_id=alert["id"])
    base = {"alert_id": alert["id"]}
    if method == "post":
        return [dict(base, key=f"hop:{hop_id}:post", channel=POST_CHANNEL[kind], target=group["chat_id"],
                     payload={"text": group_text}, purpose="hop")]
    if lead is None or deps.reach.person(lead) is None:  # nobody to ask: escalate at once
        relay_db.set_deadline(store, hop_id, now)
        return []
    out = [_ask(deps, alert, hop_id, group, lead, group_text, level=0)]
    if method == "customer" and lead.get("wecom_userid"):
        # the mass send waits in the owner's WeCom client; the ask tells them to confirm it
        out.insert(0, dict(base, key=f"hop:{hop_id}:customer", channel="customer_group", target=group["chat_id"],
                           payload={"text": group_text, "owner": lead["wecom_userid"]}, purpose="hop"))
    return out


def _ask(deps: Deps, alert, hop_id, group, lead, group_text, *, level: int) -> dict:
    channel, target = deps.reach.person(lead)
    text = texts.render("messages/alert_ask_forward.j2", lead_name=lead["name"],
                        group_name=group["name"] if group else "", text=group_text, escalated=level > 0,
                        customer=bool(group and group["kind"] == "customer" and level == 0),
                        notice=alert.get("kind") == "notice")
    return dict(key=f"hop:{hop_id}:ask:{level}", channel=channel, target=target,
                payload={"text": text}, purpose="ask", alert_id=alert["id"])


def ack_link(deps: Deps, alert_id: int, household_id: int) -> str:
    s = deps.settings.server
    return links.ack_url(s.public_url, s.link_secret, alert_id, household_id)


def direct_sends(deps: Deps, alert: dict, hop_id: int, building_id: int,
                 only_households: set[int] | None = None) -> list[dict]:
    """Direct messages to every reachable resident of a building. A message to one person carries
    their household's ack link; a batch to many (WeCom) carries none."""
    store = deps.store
    people = [p for p in relay_db.building_people(store, building_id)
              if only_households is None or p["household_id"] in only_households]
    out, plain = [], None
    for channel, target, members in deps.reach.fan_out(people):
        if len(members) == 1 and channel != "wecom_user":
            p = members[0]
            link = ack_link(deps, alert["id"], p["household_id"])
            text = render(store, alert, "messages/alert_direct.j2", settings=deps.settings, link=link)
            out.append(dict(key=f"hop:{hop_id}:direct:{p['id']}", channel=channel, target=target,
                            purpose="direct", alert_id=alert["id"], payload={"text": text, "url": link}))
        else:
            plain = plain or render(store, alert, "messages/alert_direct.j2", settings=deps.settings, link="")
            out.append(dict(key=f"hop:{hop_id}:directw:{members[0]['id']}", channel=channel, target=target,
                            purpose="direct", alert_id=alert["id"], payload={"text": plain}))
    return out


# -- outcomes ---------------------------------------------------------------------------------
def deliver_building(store, alert_id: int, node_id: int, via: str, at: float) -> int:
    """Record the households a done hop reached (only those in the alert's scope count)."""
    node = org.node(store, node_id)
    households = relay_db.member_households(store, node_id, node["kind"])
    if households and node["kind"] != "building":
        households = relay_db.in_scope(store, alert_id, households)
    return relay_db.deliver(store, alert_id, households, via, at)


def hop_done(deps: Deps, hop: dict, state: str, by: int | None = None) -> None:
    """Mark a hop posted/forwarded and record the households its group reached. A forward that
    comes after the hop moved on (escalated, failed) keeps that state but still counts: the
    group did get the warning."""
    store, now = deps.store, deps.clock.now()
    with store.transaction():
        moved = relay_db.mark_done(store, hop["id"], state, now, by)
        event = f"hop.{state}"
        if not moved and state == "forwarded":
            moved = relay_db.mark_forwarded_late(store, hop["id"], now, by)
            event = "hop.forwarded_late"
        if moved:
            if is_steward_hop(hop):  # exactly the households the steward looks after
                relay_db.deliver(store, hop["alert_id"],
                                 relay_db.in_scope(store, hop["alert_id"], _steward_household_ids(store, hop)),
                                 state, now)
            else:
                deliver_building(store, hop["alert_id"], hop["node_id"], state, now)
            store.log(now, event, "hop", hop["id"], by, alert_id=hop["alert_id"])


def on_send_result(deps: Deps, row: dict, result) -> None:
    """Outbox hook, called inside the transaction that records the send's outcome: the outcome and
    its effect on the relay commit together (a crash between them cannot leave a hop pending)."""
    store = deps.store
    if row["state"] == "sent" and row["alert_id"] and row["channel"] in USER_CHANNELS:
        targets = deps.reach.delivered(row, result)
        if targets:
            column = "wecom_userid" if row["channel"] == "wecom_user" else "oa_openid"
            households = relay_db.households_of_accounts(store, row["alert_id"], column, targets)
            relay_db.deliver(store, row["alert_id"], households, row["purpose"], deps.clock.now())
    if row["purpose"] not in ("hop", "ask"):
        return
    hop = relay_db.hop(store, int(row["key"].split(":")[1]))
    if hop is None:
        return
    if row["purpose"] == "hop" and row["state"] == "sent" and hop["method"] == "post":
        hop_done(deps, hop, "posted")
    elif row["state"] in ("failed", "dead"):
        log.warning("relay send %s %s (%s); escalating hop %s", row["key"], row["state"],
                    row["error_code"], hop["id"])
        escalate_hop(deps, hop)


def forwarded(deps: Deps, resident: dict) -> dict:
    """"已转发" from a lead or a steward: {"groups": group names, "households": how many households
    the steward's hops covered}."""
    hops = _forward(deps, resident)
    return {"groups": [h["group_name"] or "" for h in hops if not is_steward_hop(h)],
            "households": sum(len(_steward_household_ids(deps.store, h)) for h in hops if is_steward_hop(h))}


def _forward(deps: Deps, resident: dict) -> list[dict]:
    hops = relay_db.open_asks_of(deps.store, resident["id"])
    for hop in hops:
        if hop["method"] == "customer":  # the owner confirmed the mass send in their client
            send_id = relay_db.waiting_send(deps.store, f"hop:{hop['id']}:customer")
            if send_id:
                deps.outbox.mark_confirmed(send_id)
        hop_done(deps, hop, "forwarded", by=resident["id"])
    return hops


def was_asked(store, resident_id: int) -> bool:
    return relay_db.was_ever_asked(store, resident_id)


def escalate_hop(deps: Deps, hop: dict) -> None:
    """One step up the ladder for a hop that missed its deadline or whose send failed."""
    store, now = deps.store, deps.clock.now()
    alert = alerts_db.get(store, hop["alert_id"])
    node = org.node(store, hop["node_id"])
    if is_steward_hop(hop):  # a steward has no backup: their households are messaged directly
        with store.transaction():
            relay_db.give_up(store, hop["id"], "escalated", LAST_LEVEL)
            store.log(now, "hop.escalated", "hop", hop["id"], level=LAST_LEVEL, alert_id=alert["id"], steward=True)
            deps.outbox.enqueue_many(direct_sends(deps, alert, hop["id"], node["id"],
                                                  only_households=set(_steward_household_ids(store, hop))))
        return
    group = org.group(store, hop["group_id"]) if hop["group_id"] else None
    asked = ({hop["lead_id"]} if hop["lead_id"] else set()) | relay_db.asked_people(store, hop["id"])
    if hop["method"] == "customer":  # the owner never confirmed: that mass send is abandoned
        send_id = relay_db.waiting_send(store, f"hop:{hop['id']}:customer")
        if send_id:
            deps.outbox.mark_confirmed(send_id, ok=False, error="owner did not confirm before the deadline")
    level, lead = hop["escalation_level"], None
    while level < LAST_LEVEL - 1 and lead is None:
        level += 1
        if level == 1:
            cand = org.lead_of(store, node["id"], 1) if node["kind"] != "grid" else None
        else:
            grid = org.ancestor(store, node, "grid")
            cand = org.lead_of(store, grid["id"], 0) if grid else None
        if cand and cand["id"] not in asked and deps.reach.person(cand):
            lead = cand
    with store.transaction():
        if lead is not None:
            deadline = now + 60 * _deadline_min(deps.settings, node["kind"])
            relay_db.ask_next(store, hop["id"], lead["id"], level, deadline)
            store.log(now, "hop.asked", "hop", hop["id"], lead["id"], level=level, alert_id=alert["id"])
            deps.outbox.enqueue_many([_ask(deps, alert, hop["id"], group, lead,
                                           render(store, alert, settings=deps.settings), level=level)])
        elif node["kind"] == "building":
            relay_db.give_up(store, hop["id"], "escalated", LAST_LEVEL)
            store.log(now, "hop.escalated", "hop", hop["id"], level=LAST_LEVEL, alert_id=alert["id"])
            deps.outbox.enqueue_many(direct_sends(deps, alert, hop["id"], node["id"],
                                                  only_households=unstewarded(deps, node["id"])))
        else:
            relay_db.give_up(store, hop["id"], "failed", LAST_LEVEL)
            store.log(now, "hop.failed", "hop", hop["id"], alert_id=alert["id"])


def reconcile(deps: Deps) -> int:
    """At start-up: posts recorded as sent whose hop is still pending (a crash between the two, from
    before outcome and effect shared a transaction) are done now. Returns how many were fixed."""
    fixed = 0
    for hop in relay_db.pending_posts_already_sent(deps.store):
        hop_done(deps, hop, "posted")
        fixed += 1
    return fixed
