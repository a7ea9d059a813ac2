"""Answers to a warning: leads confirming a forward, proxy acks, social workers' visits, and
residents' own acks ("1", "收到", "2 需要帮助", "收到，地下车库进水了")."""
from __future__ import annotations

import re

from bot.domain import relay
from bot.domain import requests as requests_mod
from bot.domain.acks import find_household, parse_reply, record_ack
from bot.domain.alerts import active_alert_for_household
from bot.core.dispatcher import Ctx, Router
from bot.core.filters import has_role, known_resident, roles_of, text_regex
from bot.core.models import Inbound

router = Router("acks")


def _file_request(ctx: Ctx, text: str, alert_id: int, urgent: bool, resident: dict | None = None) -> int | None:
    """Hand the asking part of a reply to the requests workflow (it sends its own receipt)."""
    req = requests_mod.file_request(ctx.app, resident=resident or ctx.resident, text=text, alert_id=alert_id,
                                    force_urgent=urgent, key=f"inbound:{ctx.msg.inbound_id}")
    return req["id"] if req else None


def _was_asked(ctx: Ctx, msg: Inbound) -> bool:
    """The sender leads something or was asked to forward (a backup asked in an escalation)."""
    if ctx.resident is None:
        return False
    return bool(roles_of(ctx.resident) & {"building_lead", "grid_lead", "staff"}) or ctx.store.scalar(
        "SELECT 1 FROM events WHERE kind='hop.asked' AND actor_id=? LIMIT 1", (ctx.resident["id"],)) == 1


@router.text(text_regex(r"^(已转发|已转|转发了|已发|已发送|发了)[。!！]*$"), _was_asked)
async def forwarded(ctx: Ctx, msg: Inbound) -> None:
    names = relay.lead_forwarded(ctx.app, ctx.resident)
    await ctx.reply("messages/alert_forward_thanks.j2", hops=names)


def _lead_buildings(store, resident: dict) -> list[int]:
    """Buildings a person may confirm for: their led buildings, a grid lead's grid, staff all."""
    roles = roles_of(resident)
    if "staff" in roles:
        return [r["id"] for r in store.q("SELECT id FROM nodes WHERE kind='building'")]
    led = [r["node_id"] for r in store.q("SELECT node_id FROM node_leads WHERE resident_id=?", (resident["id"],))]
    if not led:
        return []
    return [r["id"] for r in store.q(
        f"""WITH RECURSIVE sub(id, kind) AS (SELECT id, kind FROM nodes WHERE id IN ({','.join('?' * len(led))})
            UNION SELECT n.id, n.kind FROM nodes n JOIN sub ON n.parent_id = sub.id)
            SELECT id FROM sub WHERE kind='building'""", led)]


@router.text(has_role("building_lead", "grid_lead", "staff"), text_regex(r"^代确认\s*(?P<room>.+)$"))
async def proxy_ack(ctx: Ctx, msg: Inbound) -> None:
    """A lead confirms for a neighbour without a phone: "代确认 3栋502"."""
    found = find_household(ctx.store, ctx.match["room"], _lead_buildings(ctx.store, ctx.resident))
    labels = [h["label"] for h in found]
    if len(found) == 1:
        alert = active_alert_for_household(ctx.store, found[0]["id"])
        if alert is not None:
            record_ack(ctx.app, alert=alert, household_id=found[0]["id"], resident_id=None, channel="proxy",
                       proxy_id=ctx.resident["id"], raw=msg.text)
        else:
            labels = []
    await ctx.reply("messages/proxy_ack.j2", households=labels, text=ctx.match["room"])


@router.text(has_role("social_worker", "staff", "grid_lead"), text_regex(r"^已(?:上门|联系|电话|走访)\s*(?P<rest>.*)$"))
async def visited(ctx: Ctx, msg: Inbound) -> None:
    """A social worker closes a one-to-one follow-up: "已上门 502 平安" (logged like an ack)."""
    store, now, rest = ctx.store, ctx.app.clock.now(), ctx.match["rest"]
    opened = store.q("SELECT f.*, r.name, h.label AS room, h.room AS room_no FROM followups f "
                     "JOIN residents r ON r.id=f.resident_id JOIN households h ON h.id=f.household_id "
                     "WHERE f.worker_id=? AND f.state='open' ORDER BY f.id", (ctx.resident["id"],))
    matches = _match_followups(opened, rest)
    note = rest
    for f in matches:  # what is left after the room is the worker's note ("平安", "家里进水了")
        note = note.replace(f["room"], "")
    note = re.sub(r"#\d+|(?:\d+栋)?(?:\d+单元)?\d{3,4}", "", note).strip(" ，,。")
    request_id = None
    for f in matches:
        with store.transaction():
            store.conn.execute("UPDATE followups SET state='closed', closed_at=?, note=? WHERE id=?",
                               (now, rest, f["id"]))
            store.log(now, "followup.closed", "followup", f["id"], ctx.resident["id"], note=rest)
        alert = store.q1("SELECT * FROM alerts WHERE id=?", (f["alert_id"],))
        help_ = parse_reply(note) if note else None
        answer = "help" if help_ and help_[0] == "help" else "ok"
        if note and note not in ("平安", "安全", "无事", "没事", "一切正常", "正常") and request_id is None:
            person = store.q1("SELECT * FROM residents WHERE id=?", (f["resident_id"],))
            request_id = _file_request(ctx, f"{f['room']} {f['name']}：{note}", f["alert_id"], answer == "help",
                                       resident=person)
        record_ack(ctx.app, alert=alert, household_id=f["household_id"], resident_id=f["resident_id"],
                   channel="visit", proxy_id=ctx.resident["id"], answer=answer, raw=msg.text, request_id=request_id)
    await ctx.reply("messages/followup_closed.j2", closed=matches, text=rest, request_id=request_id)


def _match_followups(opened: list[dict], text: str) -> list[dict]:
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


def _ack_for_alert(ctx: Ctx, msg: Inbound) -> bool | dict:
    """A reply that acknowledges (or asks for help) while an alert covers the sender's household."""
    if ctx.resident is None or ctx.resident.get("household_id") is None or msg.chat_id:
        return False
    parsed = parse_reply(msg.text)
    if parsed is None:
        return False
    alert = active_alert_for_household(ctx.store, ctx.resident["household_id"])
    if alert is None:
        return False
    return {"alert": alert, "answer": parsed[0], "rest": parsed[1]}


@router.text(known_resident, _ack_for_alert)
async def resident_ack(ctx: Ctx, msg: Inbound) -> None:
    alert, answer, rest = ctx.match["alert"], ctx.match["answer"], ctx.match["rest"]
    prev = ctx.store.q1("SELECT answer FROM acks WHERE alert_id=? AND resident_id=? ORDER BY id DESC LIMIT 1",
                        (alert["id"], ctx.resident["id"]))
    request_id = None
    if answer == "help" or rest:
        request_id = _file_request(ctx, rest or msg.text, alert["id"], urgent=answer == "help")
    ack = record_ack(ctx.app, alert=alert, household_id=ctx.resident["household_id"],
                     resident_id=ctx.resident["id"], channel=msg.channel, answer=answer, raw=msg.text,
                     request_id=request_id)
    if ack.get("duplicate"):
        return  # a second "1" needs no second thank-you
    await ctx.reply("messages/ack_thanks.j2", answer=answer, request_id=request_id,
                    changed=prev is not None and prev["answer"] != answer)


def _plain_ack_without_alert(ctx: Ctx, msg: Inbound) -> bool:
    """"收到"/"1" when no warning covers the sender: nothing to record, nothing to file."""
    if ctx.resident is None or msg.chat_id:
        return False
    parsed = parse_reply(msg.text)
    return parsed is not None and parsed[0] == "ok" and not parsed[1]


@router.text(known_resident, _plain_ack_without_alert)
async def ack_without_alert(ctx: Ctx, msg: Inbound) -> None:
    await ctx.reply("messages/ack_no_alert.j2")
