"""Residents' requests in chat: short commands for leads and residents, and free text from a
resident that no earlier router took, which becomes a request (or one clarifying question).

Order inside the router matters: exact commands first, then anything that merely starts like a
command (answered with the command formats, never filed as a request), then photos and voice,
and free text last. Permission checks are the domain's (bot.domain.requests); here a RequestError
becomes a templated refusal.
"""
from __future__ import annotations

import json

import xmltodict

from bot.domain.requests import access as request_access
from bot.domain import requests
from bot.core.dispatcher import REPLY_CHANNEL, Ctx, Router
from bot.core.filters import known_resident, msg_type_is, text_regex
from bot.core.models import Inbound
from bot.domain.requests.rules import is_pleasantry, is_unclear, parse_score

router = Router("requests")

T = "messages/requests/"
CLARIFY, CLARIFY_TTL_S = "request_clarify", 30 * 60
LIST_LIMIT = 10
_ID = r"\s*[#＃]?\s*(?P<id>\d{1,9})"
_WORDS = "接单|受理|派单|开始|办结|备注|查询|评价"


def _private(ctx: Ctx, msg: Inbound) -> bool:
    """Only one-to-one chats file requests: group chatter is not addressed to the bot."""
    return msg.chat_id is None


def _not_pleasantry(ctx: Ctx, msg: Inbound) -> bool:
    return not is_pleasantry(msg.text)


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
    await ctx.reply(T + "done.j2", action=action, r=request_access.view(ctx.app, req))


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
    store, me = ctx.store, ctx.resident
    rows = [r for r in requests.list_requests(store, me, open_only=True)
            if r["assignee_id"] == me["id"] or request_access.can_manage(store, me, r)]
    if not rows and request_access.scope(store, me) == set():
        await _refuse(ctx, requests.Forbidden(None, action="list"))
        return
    rows.reverse()  # oldest first: that is the one waiting longest
    await ctx.reply(T + "list.j2", mine=False, total=len(rows),
                    rows=[request_access.view(ctx.app, r) for r in rows[:LIST_LIMIT]])


# -- residents -----------------------------------------------------------------------------
@router.text(known_resident, text_regex(rf"^\s*查询{_ID}\s*$"))
async def show_request(ctx: Ctx, msg: Inbound) -> None:
    try:
        req = requests.load(ctx.store, ctx.resident, int(ctx.match["id"]))
    except requests.RequestError as e:
        await _refuse(ctx, e)
        return
    media = ctx.store.scalar("SELECT COUNT(*) FROM request_media WHERE request_id = ?",
                             (req["id"],))
    await ctx.reply(T + "detail.j2", r=request_access.view(ctx.app, req), media=media)


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
                    rows=[request_access.view(ctx.app, r) for r in rows[:LIST_LIMIT]])


# "开始 128 ..." or "评价#12": a command word followed by a number or nothing, but malformed
@router.text(known_resident, text_regex(rf"^\s*(?:{_WORDS})\s*(?:[#＃\d]|$)"))
async def command_usage(ctx: Ctx, msg: Inbound) -> None:
    lead = request_access.scope(ctx.store, ctx.resident) != set()
    await ctx.reply(T + "usage.j2", lead=lead)


# -- filing --------------------------------------------------------------------------------
@router.message(known_resident, _private, msg_type_is("image", "voice"), _has_media)
async def attach_media(ctx: Ctx, msg: Inbound) -> None:
    """A photo or voice note joins the sender's request of the last minutes, or files a new one
    (with the pending clarification's text, or the platform's speech recognition, if any)."""
    meta = _media_meta(msg)
    pending = _take_pending(ctx, msg)
    text = (pending if pending and not is_unclear(pending) else None) or meta.get("Recognition")
    requests.add_media(ctx.app, resident=ctx.resident, kind=msg.msg_type, media_id=msg.media_id,
                       meta=meta, text=text, reply_via=_reply_via(msg))


@router.text(known_resident, _private, _not_pleasantry)
async def file_or_clarify(ctx: Ctx, msg: Inbound) -> None:
    """Free text is a request. Too little to act on gets ONE clarifying question; whatever
    comes next completes the filing, however short."""
    text = msg.text.strip()
    pending = _take_pending(ctx, msg)
    if pending is None and is_unclear(text) and _ask(ctx, msg, text):
        await ctx.reply(T + "clarify.j2", person=ctx.resident)
        return
    if pending and not is_unclear(pending):
        text = f"{pending} {text}"
    requests.file_request(ctx.app, resident=ctx.resident, text=text, key=msg.dedupe_key,
                          reply_via=_reply_via(msg))


# -- the clarifying question's state (table `conversations`) -------------------------------
def _user_key(msg: Inbound) -> str:
    return f"{msg.channel}:{msg.user_id}"


def _ask(ctx: Ctx, msg: Inbound, text: str) -> bool:
    """Remember that we asked. Another concern's live conversation is never overwritten: then
    we return False and the caller files the message as it is instead of asking."""
    now = ctx.app.clock.now()
    cur = ctx.store.conn.execute(
        "INSERT INTO conversations (user_key, state, data, expires_at) VALUES (?,?,?,?) "
        "ON CONFLICT(user_key) DO UPDATE SET state = excluded.state, data = excluded.data, "
        "expires_at = excluded.expires_at "
        "WHERE conversations.state = excluded.state OR conversations.expires_at <= ?",
        (_user_key(msg), CLARIFY, json.dumps({"text": text}, ensure_ascii=False),
         now + CLARIFY_TTL_S, now))
    return cur.rowcount == 1


def _take_pending(ctx: Ctx, msg: Inbound) -> str | None:
    """The text that prompted our question, if one is open; the question is then answered."""
    row = ctx.store.q1("SELECT data FROM conversations WHERE user_key = ? AND state = ? "
                       "AND expires_at > ?", (_user_key(msg), CLARIFY, ctx.app.clock.now()))
    if row is None:
        return None
    ctx.store.conn.execute("DELETE FROM conversations WHERE user_key = ? AND state = ?",
                           (_user_key(msg), CLARIFY))
    return json.loads(row["data"])["text"]


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
