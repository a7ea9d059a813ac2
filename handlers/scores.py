"""流动小红旗: compound branches enter cross-evaluation scores; staff see and publish the month's ranking.

  评分 大龙二区/3栋 安全9 卫生8 文明10 [11月]   a compound lead's (or staff's) 互评 of a building of
                                               another compound; again: replaces theirs
  红旗榜 [11月]                                 the month's ranking (staff: all; a lead: their area)
  发布红旗榜 [11月] / 公布红旗榜 [11月]          staff: a preview of the 通知 (the top ones) that would go
                                               out to the whole community; nothing is sent yet
  确认 / 取消                                   the answer to that preview (only to a pending scores
                                               preview, kept CONFIRM_TTL_S): 确认 sends the notice and
                                               freezes the month, 取消 drops it

The verbs are vocabulary [scores]; every act is a bot.domain.scores function.
"""
from __future__ import annotations

import re

from bot.core import vocabulary
from bot.core.dispatcher import Ctx, Router
from bot.core.filters import command, has_role, roles_of
from bot.core.models import Inbound
from bot.data import conversations
from bot.domain import areas, scores
from bot.domain.scores import ScoreError
from handlers.pending import pending, user_key

router = Router("scores")
CHAT_ROWS = 10  # the ranking in chat: the first ten (the page has them all)
CONFIRM_TTL_S = 600  # a publishing preview waits this long for 确认
STATE = "confirm_scores"
_leadish = has_role("staff", "grid_lead", "building_lead")


def _lead_or_staff(ctx: Ctx, msg: Inbound) -> bool:
    """Staff and anyone leading a node: they get an answer (or a refusal) instead of a filed request.
    (After the command filter: the lookup runs only for a message that is one of these commands.)"""
    return bool(_leadish(ctx, msg)) or scores.may_evaluate(ctx.store, ctx.resident)


def _month_pattern() -> re.Pattern:
    words = [*vocabulary.words("scores.this_month"), *vocabulary.words("scores.last_month")]
    named = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?:\d{{4}}\s*年\s*)?\d{{1,2}}\s*月份?|\d{{4}}-\d{{1,2}}|{named}")


def _score_pattern() -> re.Pattern:
    cats = "|".join(re.escape(w) for w in scores.category_words())
    return re.compile(rf"(?P<cat>{cats})\s*[:：]?\s*(?P<score>\d+(?:\.\d+)?)\s*分?")


def parse_entry(rest: str) -> tuple[str, str | None, dict[str, str]]:
    """'大龙二区/3栋 安全9 卫生8 文明10 11月' -> (building words, month words or None, {category: score})."""
    month = None
    if (m := _month_pattern().search(rest)) is not None:
        month, rest = m.group(0), rest[:m.start()] + " " + rest[m.end():]
    found: dict[str, str] = {}
    kept = []
    last = 0
    for m in _score_pattern().finditer(rest):
        found[scores.category_of(m.group("cat"))] = m.group("score")
        kept.append(rest[last:m.start()])
        last = m.end()
    kept.append(rest[last:])
    words = " ".join(kept).replace("，", " ").replace(",", " ").split()
    return "/".join(words), month, found


async def _refuse(ctx: Ctx, e: ScoreError, *, usage: bool = False) -> None:
    await ctx.reply("messages/scores/error.j2", code=e.code, usage=usage, **e.params)


@router.text(command("scores.enter", r"^\s*{words}\s*(?P<rest>.*)$"), _lead_or_staff)
async def enter(ctx: Ctx, msg: Inbound) -> None:
    building, month_words, found = parse_entry(ctx.match.get("rest") or "")
    try:
        if not scores.may_evaluate(ctx.store, ctx.resident):
            raise ScoreError("not_allowed")
        if not building:
            raise ScoreError("no_building")
        if not found:
            raise ScoreError("no_scores")
        month = scores.parse_month(month_words, ctx.app.clock.now(), ctx.settings.timezone)
        done = scores.enter_peer_scores(ctx.app, ctx.resident, building, month, found)
    except ScoreError as e:
        await _refuse(ctx, e, usage=e.code in ("no_building", "no_scores", "unknown_building", "bad_month"))
        return
    await ctx.reply("messages/scores/entered.j2", building=done["building"], month=scores.month_zh(done["month"]),
                    scores=done["scores"])


@router.text(command("scores.ranking", r"^\s*{words}\s*(?P<month>\S*)\s*$"), _lead_or_staff)
async def ranking(ctx: Ctx, msg: Inbound) -> None:
    try:
        month = scores.parse_month(ctx.match.get("month"), ctx.app.clock.now(), ctx.settings.timezone)
    except ScoreError as e:
        await _refuse(ctx, e)
        return
    within = areas.buildings_of(ctx.store, ctx.resident)
    await ctx.reply_text(scores.ranking_text(ctx.app, month, within, limit=CHAT_ROWS,
                                             staff="staff" in roles_of(ctx.resident)))



_pending = pending(STATE)  # only this concern's own preview


async def _preview(ctx: Ctx, msg: Inbound, month: str, *, changed: bool = False) -> None:
    """Show the notice publishing would send now, and remember it for 确认."""
    try:
        shown = scores.preview(ctx.app, ctx.resident, month)
    except ScoreError as e:
        await _refuse(ctx, e)
        return
    conversations.remember(ctx.store, user_key(msg), STATE, {"month": shown["month"], "text": shown["text"]},
                           ctx.app.clock.now() + CONFIRM_TTL_S)
    await ctx.reply("messages/scores/preview.j2", month=scores.month_zh(shown["month"]), text=shown["text"],
                    top=shown["top"], left_out=shown["left_out"], minutes=CONFIRM_TTL_S // 60, changed=changed)


@router.text(command("scores.publish", r"^\s*{words}\s*(?P<month>\S*)\s*$"), _lead_or_staff)
async def publish(ctx: Ctx, msg: Inbound) -> None:
    try:
        month = scores.parse_month(ctx.match.get("month"), ctx.app.clock.now(), ctx.settings.timezone)
    except ScoreError as e:
        await _refuse(ctx, e)
        return
    await _preview(ctx, msg, month)


@router.text(has_role("staff"), command("commands.confirm", r"^{words}$"), _pending)
async def confirm(ctx: Ctx, msg: Inbound) -> None:
    """确认 to this user's pending preview: checked again now (published meanwhile: refused; the
    figures moved so the notice would read otherwise: the new preview, nothing sent)."""
    pending = ctx.match["pending"]
    conversations.forget(ctx.store, user_key(msg))
    try:
        done = scores.publish(ctx.app, ctx.resident, pending["month"], expected_text=pending["text"])
    except ScoreError as e:
        if e.code == "changed":
            await _preview(ctx, msg, pending["month"], changed=True)
        else:
            await _refuse(ctx, e)
        return
    await ctx.reply("messages/scores/published.j2", month=scores.month_zh(done["month"]), alert_id=done["alert_id"],
                    top=done["top"])


@router.text(has_role("staff"), command("commands.cancel", r"^{words}$"), _pending)
async def drop(ctx: Ctx, msg: Inbound) -> None:
    pending = ctx.match["pending"]
    conversations.forget(ctx.store, user_key(msg))
    await ctx.reply("messages/scores/dropped.j2", month=scores.month_zh(pending["month"]))
