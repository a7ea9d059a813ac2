"""Answers to a warning: leads confirming a forward, proxy acks, social workers' visits, and
residents' own acks ("1", "收到", "2 需要帮助", "收到，地下车库进水了"). Every ack goes through
bot.domain.acks.acknowledge, the same act the ack link and the dashboard call."""
from __future__ import annotations

from bot.core.dispatcher import Ctx, Router
from bot.core.filters import command, has_role, known_resident, roles_of
from bot.core.models import Inbound
from bot.data import org
from bot.domain import acks, areas, followups, relay, requests
from bot.domain.acks import parse_reply

router = Router("acks")


def _was_asked(ctx: Ctx, msg: Inbound) -> bool:
    """The sender leads something or was asked to forward (a backup asked in an escalation)."""
    if ctx.resident is None:
        return False
    return bool(roles_of(ctx.resident) & {"building_lead", "grid_lead", "staff"}) or relay.was_asked(
        ctx.store, ctx.resident["id"])


@router.text(command("commands.forwarded", r"^{words}[。!！]*$"), _was_asked)
async def forwarded(ctx: Ctx, msg: Inbound) -> None:
    done = relay.forwarded(ctx.app, ctx.resident)
    if done["households"]:  # a steward (党员中心户 / 红管家) passed it on to their households
        await ctx.reply("messages/stewards/forward_thanks.j2", **done)
    else:
        await ctx.reply("messages/alert_forward_thanks.j2", hops=done["groups"])


def _confirmable_buildings(ctx: Ctx) -> list[int]:
    """Buildings a person may confirm for: their led buildings, a grid lead's grid, staff all."""
    area = areas.buildings_of(ctx.store, ctx.resident)
    return acks.all_buildings(ctx.store) if area is None else area


def _may_proxy(ctx: Ctx, msg: Inbound) -> bool:
    """Leads and staff (in their area), and stewards (党员中心户 / 红管家) for their own households."""
    if ctx.resident is None:
        return False
    return bool(roles_of(ctx.resident) & {"building_lead", "grid_lead", "staff"}) or org.is_steward(
        ctx.store, ctx.resident["id"])


def _confirmable(ctx: Ctx, text: str) -> tuple[list[dict], bool]:
    """The households "代确认 <text>" may mean for this person, and whether they confirm only as a
    steward (which the refusal says). A steward who is also a lead has both."""
    lead = bool(roles_of(ctx.resident) & {"building_lead", "grid_lead", "staff"})
    found = acks.find_household(ctx.store, text, _confirmable_buildings(ctx)) if lead else []
    mine = {h["id"]: h for h in org.steward_households(ctx.store, ctx.resident["id"])}
    if mine:
        buildings = sorted({h["building_id"] for h in mine.values()})
        found += [h for h in acks.find_household(ctx.store, text, buildings)
                  if h["id"] in mine and h["id"] not in {f["id"] for f in found}]
    return found, not lead


@router.text(command("commands.proxy_ack", r"^{words}\s*(?P<room>.+)$"), _may_proxy)
async def proxy_ack(ctx: Ctx, msg: Inbound) -> None:
    """A lead confirms for a neighbour without a phone: "代确认 3栋502"; a steward for one of the
    households they look after."""
    found, steward_only = _confirmable(ctx, ctx.match["room"])
    labels = [h["label"] for h in found]
    outcome = None
    if len(found) == 1:
        outcome = acks.acknowledge(ctx.app, household_id=found[0]["id"], door="proxy", kind="ok",
                                   proxy=ctx.resident, raw=msg.text)
        if outcome.refused:
            labels = []
    await ctx.reply("messages/proxy_ack.j2", households=labels, text=ctx.match["room"],
                    alerts=[a.alert for a in outcome.acked] if outcome else [], steward=steward_only)


@router.text(has_role("social_worker", "staff", "grid_lead"), command("commands.visited", r"^{words}\s*(?P<rest>.*)$"))
async def visited(ctx: Ctx, msg: Inbound) -> None:
    """A social worker closes a one-to-one follow-up: "已上门 502 平安" (logged like an ack)."""
    closed, request_id = followups.visit(ctx.app, ctx.resident, ctx.match["rest"], raw=msg.text,
                                         request_key=f"inbound:{msg.inbound_id}")
    await ctx.reply("messages/followup_closed.j2", closed=closed, text=ctx.match["rest"], request_id=request_id)


def _ack_reply(ctx: Ctx, msg: Inbound) -> bool | dict:
    """A reply that acknowledges (or asks for help) from a registered household member. With no live
    warning for the household, only a plain ack is ours (to say so); anything that asks for something
    falls through to the requests router."""
    if ctx.resident is None or ctx.resident.get("household_id") is None or msg.chat_id:
        return False
    parsed = parse_reply(msg.text)
    if parsed is None:
        return False
    live = bool(acks.live_alerts(ctx.app, ctx.resident["household_id"]))
    if not live and (parsed[0] == "help" or parsed[1]):
        return False
    if not live and requests.clarification_open(ctx.app, f"{msg.channel}:{msg.user_id}"):
        return False  # "好的" / "1" answers the requests router's "file this?" question
    return {"kind": parsed[0], "rest": parsed[1], "live": live}


@router.text(known_resident, _ack_reply)
async def resident_ack(ctx: Ctx, msg: Inbound) -> None:
    kind, rest = ctx.match["kind"], ctx.match["rest"]
    if not ctx.match["live"]:
        ended = acks.recently_ended(ctx.app, ctx.resident["household_id"])
        await ctx.reply("messages/ack_no_alert.j2", ended=ended)
        return
    outcome = acks.acknowledge(ctx.app, household_id=ctx.resident["household_id"], door=msg.channel, kind=kind,
                               resident=ctx.resident, raw=msg.text, ask=rest,
                               request_key=f"inbound:{msg.inbound_id}")
    if not outcome.new and outcome.request_id is None:
        return  # a second "1" needs no second thank-you
    answer = "help" if kind == "help" else (outcome.acked[0].answer if outcome.acked else "ok")
    await ctx.reply("messages/ack_thanks.j2", answer=answer, request_id=outcome.request_id,
                    changed=outcome.changed, alerts=[a.alert for a in outcome.new])
