"""三单制 / 微心愿 in chat. Volunteers and party members (config [claims] roles): "心愿单" (the
open list with numbers and their own link), "认领 12", "放弃 12", "完成 12 2小时 已换好灯泡",
"我的服务" (this month). Staff and leads: "开放认领 12", "心愿 3栋502 帮独居老人换灯泡" (files a
wish for that household and opens it). A resident: "心愿：…" files their own wish as a request
of kind 'wish' (staff open it for claiming). Words: vocabulary [claims]; sentences:
templates/messages/claims/. Every act is bot.domain.claims; refusals are its errors, templated.
"""
from __future__ import annotations

from bot.core.dispatcher import REPLY_CHANNEL, Ctx, Router
from bot.core.filters import command, known_resident
from bot.core.models import Inbound
from bot.domain import claims
from bot.domain import requests as R

router = Router("claims")

T = "messages/claims/"
LIST_LIMIT = 10
_ID = r"\s*[#＃]?\s*(?P<id>\d{1,9})"
_HOURS = r"(?P<hours>[\d０-９]+(?:[.．][\d０-９]+)?\s*(?:个)?(?:小时|钟头|h|分钟|分)?|半(?:个)?(?:小时|钟头))"


async def _refuse(ctx: Ctx, err: R.RequestError) -> None:
    info = {"action": "", "what": "", "state": "", "mine": False, "reason": "", "limit": 0,
            **err.info}
    await ctx.reply(T + "refused.j2", code=err.code, request_id=err.request_id, **info)


def _is_manager(ctx: Ctx, msg: Inbound) -> bool:
    """Staff and leads: those who open requests for claiming and file wishes for households."""
    return R.has_duty(ctx.resident) and R.scope(ctx.store, ctx.resident) != set()


# -- volunteers -------------------------------------------------------------------------------
@router.text(known_resident, command("claims.list", r"^\s*{words}\s*$"))
async def open_list(ctx: Ctx, msg: Inbound) -> None:
    if not claims.eligible(ctx.app, ctx.resident):
        await _refuse(ctx, claims.NotEligible(None))
        return
    rows = claims.open_list(ctx.app, ctx.resident)
    await ctx.reply(T + "list.j2", rows=rows[:LIST_LIMIT], total=len(rows),
                    holding=claims.holding(ctx.app, ctx.resident),
                    url=claims.link_url(ctx.app, ctx.resident))


@router.text(known_resident, command("claims.claim", rf"^\s*{{words}}{_ID}\s*$"))
async def claim(ctx: Ctx, msg: Inbound) -> None:
    try:
        claims.claim(ctx.app, ctx.resident, int(ctx.match["id"]))
    except R.RequestError as e:
        await _refuse(ctx, e)
        return
    await _claimed(ctx, int(ctx.match["id"]))


async def _claimed(ctx: Ctx, request_id: int) -> None:
    row = claims.board_row(ctx.app, request_id)
    await ctx.reply(T + "claimed.j2", r=row, filer=R.filer_of(ctx.store, R.get(ctx.store, request_id)))


@router.text(known_resident, command("claims.release", rf"^\s*{{words}}{_ID}\s*$"))
async def release(ctx: Ctx, msg: Inbound) -> None:
    try:
        req = claims.release(ctx.app, ctx.resident, int(ctx.match["id"]))
    except R.RequestError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply(T + "released.j2", r=req)


@router.text(known_resident, command("claims.complete",
                                     rf"^\s*{{words}}{_ID}\s*(?:{_HOURS})?\s*(?P<note>.*?)\s*$"))
async def complete(ctx: Ctx, msg: Inbound) -> None:
    rid = int(ctx.match["id"])
    try:
        req = claims.complete(ctx.app, ctx.resident, rid, claims.parse_hours(ctx.match.get("hours")),
                              ctx.match.get("note") or "")
    except R.RequestError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply(T + "completed.j2", r=req)


@router.text(known_resident, command("claims.mine", r"^\s*{words}\s*$"))
async def mine(ctx: Ctx, msg: Inbound) -> None:
    if not claims.eligible(ctx.app, ctx.resident):
        await _refuse(ctx, claims.NotEligible(None))
        return
    await ctx.reply(T + "mine.j2", person=ctx.resident, m=claims.my_month(ctx.app, ctx.resident))


# -- staff and leads --------------------------------------------------------------------------
@router.text(known_resident, command("claims.open", rf"^\s*{{words}}{_ID}\s*$"))
async def open_for_claims(ctx: Ctx, msg: Inbound) -> None:
    rid = int(ctx.match["id"])
    before = R.get(ctx.store, rid)
    try:
        req = claims.open_for_claims(ctx.app, ctx.resident, rid)
    except R.RequestError as e:
        await _refuse(ctx, e)
        return
    told = claims.told_count(ctx.app, req) if before and before["claim_state"] is None else 0
    await ctx.reply(T + "opened.j2", r=req, told=told)


@router.text(known_resident, _is_manager,
             command("claims.wish", r"^\s*{words}\s+(?P<room>[^\s:：]+)\s+(?P<text>\S.*?)\s*$"))
async def wish_for_household(ctx: Ctx, msg: Inbound) -> None:
    found = claims.find_household(ctx.app, ctx.resident, ctx.match["room"])
    if len(found) != 1:
        await ctx.reply(T + "wish_which.j2", text=ctx.match["room"],
                        households=[h["label"] for h in found])
        return
    try:
        req = claims.file_wish(ctx.app, ctx.resident, ctx.match["text"],
                               household_id=found[0]["id"])
    except R.RequestError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply(T + "wish_opened.j2", r=claims.board_row(ctx.app, req["id"]),
                    told=claims.told_count(ctx.app, req))


# -- residents --------------------------------------------------------------------------------
@router.text(known_resident, lambda ctx, msg: msg.chat_id is None and not R.has_duty(ctx.resident),
             command("claims.wish", r"^\s*{words}(?:\s*[:：]|\s)\s*(?P<text>\S.+?)\s*$"))
async def own_wish(ctx: Ctx, msg: Inbound) -> None:
    """A resident's own small wish: filed like a request (receipt, leads told), kind 'wish'."""
    R.file_request(ctx.app, resident=ctx.resident, text=ctx.match["text"], key=msg.dedupe_key,
                   reply_via=(REPLY_CHANNEL[msg.channel], msg.user_id), kind="wish")


# "认领12 3" or "完成" alone: a claims verb, but not a command we can read
@router.text(known_resident, lambda ctx, msg: claims.eligible(ctx.app, ctx.resident) or _is_manager(ctx, msg),
             command("claims.claim", r"^\s*{words}\s*(?:[#＃\d]|$)"))
@router.text(known_resident, lambda ctx, msg: claims.eligible(ctx.app, ctx.resident) or _is_manager(ctx, msg),
             command("claims.release", r"^\s*{words}\s*(?:[#＃\d]|$)"))
@router.text(known_resident, lambda ctx, msg: claims.eligible(ctx.app, ctx.resident) or _is_manager(ctx, msg),
             command("claims.complete", r"^\s*{words}\s*(?:[#＃\d]|$)"))
@router.text(known_resident, _is_manager, command("claims.open", r"^\s*{words}"))
@router.text(known_resident, _is_manager, command("claims.wish", r"^\s*{words}\s*$"))
async def usage(ctx: Ctx, msg: Inbound) -> None:
    await ctx.reply(T + "usage.j2", staff=_is_manager(ctx, msg),
                    volunteer=claims.eligible(ctx.app, ctx.resident))
