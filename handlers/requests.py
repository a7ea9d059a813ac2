"""Residents' requests in chat: short commands for leads and residents, and free text that no
earlier router took, which may become a request.

Order inside the router matters: exact commands first, then anything that merely starts like a
command (answered with the command formats, never filed as a request), then photos and voice,
and free text last. What free text means is the domain's reading (bot.domain.requests.rules):
a resident's report is filed, a greeting gets one clarifying question, chit-chat a short help
reply; leads, staff and social workers file only explicitly ("报事 …"). Permission checks are the
domain's too; here a RequestError becomes a templated refusal. No SQL here.
"""
from __future__ import annotations

import xmltodict

from bot.core.dispatcher import REPLY_CHANNEL, Ctx, Router
from bot.core.filters import known_resident, msg_type_is, text_regex
from bot.core.models import Inbound
from bot.domain import requests
from bot.domain.requests.rules import is_pleasantry, is_unclear, is_yes, parse_score
from handlers.pending import user_key

router = Router("requests")

T = "messages/requests/"
LIST_LIMIT = 10
_ID = r"\s*[#＃]?\s*(?P<id>\d{1,9})"
_WORDS = "接单|受理|派单|开始|办结|备注|查询|评价"


def _private(ctx: Ctx, msg: Inbound) -> bool:
    """Only one-to-one chats file requests: group chatter is not addressed to the bot."""
    return msg.chat_id is None


def _not_pleasantry(ctx: Ctx, msg: Inbound) -> bool:
    """Politeness is left to the fallback, unless it answers our question ("好的" = yes)."""
    return not is_pleasantry(msg.text) or requests.clarification_open(ctx.app, user_key(msg))


def _has_media(ctx: Ctx, msg: Inbound) -> bool:
    return bool(msg.media_id)


def _reply_via(msg: Inbound) -> tuple[str, str]:
    return REPLY_CHANNEL[msg.channel], msg.user_id


async def _refuse(ctx: Ctx, err: requests.RequestError) -> None:
    info = {"action": "", "what": "", "state": "", **err.info}
    await ctx.reply(T + "refused.j2", code=err.code, request_id=err.request_id, **info)


async def _act(ctx: Ctx, action: str, fn, *args) -> None:
    """Run one lifecycle step for the sender and confirm it (the resident is told by the domain)."""
    try:
        req = fn(ctx.app, ctx.resident, int(ctx.match["id"]), *args)
    except requests.RequestError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply(T + "done.j2", action=action, r=requests.view(ctx.app, req))


# -- leads and staff -----------------------------------------------------------------------
@router.text(known_resident, text_regex(rf"^\s*(?:接单|受理){_ID}\s*$"))
async def accept_request(ctx: Ctx, msg: Inbound) -> None:
    await _act(ctx, "accept", requests.accept)


@router.text(known_resident, text_regex(rf"^\s*派单{_ID}\s*(?P<arg>.*?)\s*$"))
async def assign_request(ctx: Ctx, msg: Inbound) -> None:
    await _act(ctx, "assign", requests.assign, ctx.match["arg"])


@router.text(known_resident, text_regex(rf"^\s*开始{_ID}\s*$"))
async def start_request(ctx: Ctx, msg: Inbound) -> None:
    await _act(ctx, "start", requests.start)


@router.text(known_resident, text_regex(rf"^\s*办结{_ID}\s*(?P<arg>.*?)\s*$"))
async def resolve_request(ctx: Ctx, msg: Inbound) -> None:
    await _act(ctx, "resolve", requests.resolve, ctx.match["arg"])


@router.text(known_resident, text_regex(rf"^\s*备注{_ID}\s*(?P<arg>.*?)\s*$"))
async def comment_request(ctx: Ctx, msg: Inbound) -> None:
    await _act(ctx, "comment", requests.comment, ctx.match["arg"])


@router.text(known_resident, text_regex(r"^\s*(?:我的工单|待办|待办工单)\s*$"))
async def todo(ctx: Ctx, msg: Inbound) -> None:
    """Open requests the sender should act on: in the buildings they lead, or assigned to them."""
    rows = requests.todo(ctx.store, ctx.resident)
    if rows is None:
        await _refuse(ctx, requests.Forbidden(None, action="list"))
        return
    await ctx.reply(T + "list.j2", mine=False, total=len(rows),
                    rows=[requests.view(ctx.app, r) for r in rows[:LIST_LIMIT]])


# -- residents -----------------------------------------------------------------------------
@router.text(known_resident, text_regex(rf"^\s*查询{_ID}\s*$"))
async def show_request(ctx: Ctx, msg: Inbound) -> None:
    try:
        req = requests.load(ctx.store, ctx.resident, int(ctx.match["id"]))
    except requests.RequestError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply(T + "detail.j2", r=requests.view(ctx.app, req),
                    media=requests.media_count(ctx.store, req["id"]))


_RATE = rf"^\s*评价{_ID}\s*(?P<score>\d+|[１-５])?\s*(?P<arg>.*?)\s*$"


@router.text(known_resident, text_regex(_RATE))
async def rate_request(ctx: Ctx, msg: Inbound) -> None:
    """The domain answers the resident itself (thanks, or reopened); only refusals come here."""
    try:
        requests.rate(ctx.app, ctx.resident, int(ctx.match["id"]),
                      parse_score(ctx.match.get("score")), ctx.match["arg"])
    except requests.RequestError as e:
        await _refuse(ctx, e)


@router.text(known_resident, text_regex(r"^\s*(?:我的报事|我的报修|我的求助)\s*$"))
async def my_requests(ctx: Ctx, msg: Inbound) -> None:
    rows = requests.list_requests(ctx.store, ctx.resident, mine=True)
    await ctx.reply(T + "list.j2", mine=True, total=len(rows),
                    rows=[requests.view(ctx.app, r) for r in rows[:LIST_LIMIT]])


# "开始 128 ..." or "评价#12": a command word followed by a number or nothing, but malformed
@router.text(known_resident, text_regex(rf"^\s*(?:{_WORDS})\s*(?:[#＃\d]|$)"))
async def command_usage(ctx: Ctx, msg: Inbound) -> None:
    lead = requests.scope(ctx.store, ctx.resident) != set()
    await ctx.reply(T + "usage.j2", lead=lead)


# -- filing --------------------------------------------------------------------------------
@router.message(known_resident, _private, msg_type_is("image", "voice"), _has_media)
async def attach_media(ctx: Ctx, msg: Inbound) -> None:
    """A photo or voice note joins the sender's request of the last minutes, or files a new one
    (with the pending clarification's text, or the platform's speech recognition, if any)."""
    meta = _media_meta(msg)
    pending = requests.take_clarification(ctx.app, user_key(msg))
    text = (pending.text if pending and not is_unclear(pending.text) else None) \
        or meta.get("Recognition")
    requests.add_media(ctx.app, resident=ctx.resident, kind=msg.msg_type, media_id=msg.media_id,
                       meta=meta, text=text, reply_via=_reply_via(msg))


@router.text(known_resident, _private, _not_pleasantry)
async def file_or_clarify(ctx: Ctx, msg: Inbound) -> None:
    """Free text. A report is filed. A greeting gets ONE question (what do you need?), and a
    real answer completes the filing; a message we cannot place gets ONE question (file this?),
    and a yes files it. Chit-chat, and a lead's words without "报事", get a short help reply
    and no ticket."""
    key = user_key(msg)
    pending = requests.take_clarification(ctx.app, key)
    if pending is not None and pending.ask == "confirm" and is_yes(msg.text):
        await _file(ctx, msg, pending.text)
        return
    reading = requests.read_message(msg.text, ctx.resident, ctx.settings,
                                    answering=pending is not None)
    if reading.kind == "request":
        earlier = pending.text if pending and not is_unclear(pending.text) else ""
        await _file(ctx, msg, f"{earlier} {reading.text}".strip())
        return
    if reading.kind in ("unclear", "uncertain") and pending is None:
        ask = "what" if reading.kind == "unclear" else "confirm"
        if requests.ask_clarification(ctx.app, key, msg.text.strip(), ask=ask):
            template = "clarify.j2" if ask == "what" else "confirm.j2"
            await ctx.reply(T + template, person=ctx.resident, text=msg.text.strip())
            return
    await ctx.reply(T + "not_filed.j2", person=ctx.resident, duty=reading.duty,
                    lead=reading.duty and requests.scope(ctx.store, ctx.resident) != set())


async def _file(ctx: Ctx, msg: Inbound, text: str) -> None:
    requests.file_request(ctx.app, resident=ctx.resident, text=text, key=msg.dedupe_key,
                          reply_via=_reply_via(msg))



def _media_meta(msg: Inbound) -> dict:
    """What the platform told us about the media besides its id (picture URL, voice format,
    OA speech recognition), from the decrypted XML the transport kept."""
    try:
        data = xmltodict.parse(msg.raw)["xml"] if msg.raw else {}
    except Exception:  # already parsed once by the transport; a failure only loses metadata
        data = {}
    meta = {k: data[k] for k in ("PicUrl", "Format", "Recognition", "MsgId")
            if isinstance(data.get(k), str) and data[k]}
    return {**meta, "channel": msg.channel, "at": msg.at}
