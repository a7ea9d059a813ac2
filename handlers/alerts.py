"""Staff issue, update and lift warnings from chat, with a preview and a confirm step.

  发布 黄色 雷雨大风 [范围:第一网格、大龙一区] [正文]
  升级 #12 橙色 [正文] / 降级 #12 蓝色 / 解除 #12 [正文]
  确认 / 取消           (answer to the preview)
  汇总 [#12]            (coverage summary now)
"""
from __future__ import annotations

import json
import re

from bot.core.dispatcher import Ctx, Router
from bot.core.filters import has_role, text_equals, text_regex
from bot.core.models import Inbound
from bot.data import conversations
from bot.data import relay as relay_db
from bot.domain import alerts as alerts_mod
from bot.domain import areas, escalation
from bot.domain.alerts import AlertError, Draft
from handlers.pending import pending, user_key

router = Router("alerts")
staff = has_role("staff")
CONFIRM_TTL_S = 600

_ISSUE = r"^(?P<verb>发布|演练)(?!\s*(?:流动)?红旗榜)\s*(?P<colour>[^\s色]{1,2}色|[蓝黄橙红]|blue|yellow|orange|red)\s*(?P<type>[^\s]+?)(?:预警)?(?:\s+(?P<rest>.*))?$"
_FOLLOW = r"^(?P<verb>升级|降级|更新|解除)\s*#?(?P<id>\d+)\s*(?P<colour>[蓝黄橙红]色?)?\s*(?P<rest>.*)$"
_OPTION = re.compile(r"^(?P<key>范围|对象)[:：]\s*(?P<value>\S+)\s*")
ALL_VULNERABLE = ("困难群众", "困难户家庭", "重点人群", "所有困难群众", "全部困难群众")


def _options(rest: str) -> tuple[list[str], list[str] | None, str]:
    """Leading "范围:第一网格、大龙一区" and "对象:独居老人、低保户" (or 对象:困难群众 for all
    vulnerable households); returns (scope words, audience, the rest)."""
    scope_words, audience = [], None
    while True:
        m = _OPTION.match(rest)
        if m is None:
            return scope_words, audience, rest
        words = [w for w in re.split(r"[、,，]", m.group("value")) if w]
        if m.group("key") == "范围":
            scope_words += words
        else:
            audience = ["*"] if any(w in ALL_VULNERABLE for w in words) else words
        rest = rest[m.end():].strip()



def _remember(ctx: Ctx, data: dict) -> None:
    conversations.remember(ctx.store, user_key(ctx.msg), "confirm_alert", data,
                           ctx.app.clock.now() + CONFIRM_TTL_S)


_pending = pending("confirm_alert")  # only this concern's own preview


async def _preview(ctx: Ctx, data: dict) -> None:
    draft = Draft(type=data["type"], colour=data["colour"], text=data["text"], scope=data["scope"],
                  action=data["action"], supersedes_id=data.get("supersedes_id"), audience=data.get("audience"),
                  status=data.get("status", "actual"))
    shown = alerts_mod.preview(ctx.store, draft, ctx.settings)
    _remember(ctx, data)
    await ctx.reply("messages/alert_preview.j2", body=shown["text"], households=shown["households"],
                    scope_names=data.get("scope_names") or [], audience=data.get("audience"))


@router.text(staff, text_regex(_ISSUE))
async def issue_command(ctx: Ctx, msg: Inbound) -> None:
    scope_words, audience, rest = _options((ctx.match.get("rest") or "").strip())
    try:
        colour = alerts_mod.parse_colour(ctx.match["colour"])
        type_ = alerts_mod.parse_type(ctx.match["type"])
        alerts_mod.check_colour(type_, colour)
        scope = alerts_mod.resolve_scope(ctx.store, scope_words)
    except AlertError as e:
        await ctx.reply("messages/alert_command_error.j2", code=e.code, **e.params)
        return
    await _preview(ctx, dict(type=type_, colour=colour, text=rest, scope=scope, scope_names=scope_words,
                             action="issue", issuer_id=ctx.resident["id"], audience=audience,
                             status="exercise" if ctx.match.get("verb") == "演练" else "actual"))


@router.text(staff, text_regex(r"^(?:发布\s*)?通知\s*(?P<rest>.+)$", re.S))
async def notice_command(ctx: Ctx, msg: Inbound) -> None:
    """"通知 范围:第一网格 本周六上午为老服务日": a notice, not a warning (no colour, no poll)."""
    scope_words, audience, rest = _options(ctx.match["rest"].strip())
    try:
        scope = alerts_mod.resolve_scope(ctx.store, scope_words)
    except AlertError as e:
        await ctx.reply("messages/alert_command_error.j2", code=e.code, **e.params)
        return
    await _preview(ctx, dict(type=alerts_mod.NOTICE, colour="blue", text=rest, scope=scope, scope_names=scope_words,
                             action="issue", issuer_id=ctx.resident["id"], audience=audience))


@router.text(staff, text_regex(_FOLLOW))
async def follow_command(ctx: Ctx, msg: Inbound) -> None:
    old = alerts_mod.find(ctx.store, int(ctx.match["id"]))
    if old is None or old["state"] != "active" or old["action"] == "lift":
        await ctx.reply("messages/alert_command_error.j2", code="not_active", value=ctx.match["id"])
        return
    verb = ctx.match["verb"]
    colour = old["colour"]
    if verb != "解除":
        if not ctx.match.get("colour"):
            await ctx.reply("messages/alert_command_error.j2", code="need_colour")
            return
        colour = alerts_mod.parse_colour(ctx.match["colour"])
    await _preview(ctx, dict(type=old["type"], colour=colour, text=(ctx.match.get("rest") or "").strip(),
                             scope=json.loads(old["scope"]), action="lift" if verb == "解除" else "update",
                             supersedes_id=old["id"], issuer_id=ctx.resident["id"]))


@router.text(staff, text_equals("确认", "确认发布", "发布"), _pending)
async def confirm(ctx: Ctx, msg: Inbound) -> None:
    data = ctx.match["pending"]
    conversations.forget(ctx.store, user_key(msg))
    try:
        if data["action"] == "issue":
            alert_id = alerts_mod.issue(ctx.app, Draft(type=data["type"], colour=data["colour"], text=data["text"],
                                                       scope=data["scope"], issuer_id=data["issuer_id"],
                                                       audience=data.get("audience"),
                                                       status=data.get("status", "actual")))
        else:
            alert_id = alerts_mod.follow_on(ctx.app, data["supersedes_id"], data["action"],
                                            colour=data["colour"] if data["action"] == "update" else None,
                                            text=data["text"], issuer_id=data["issuer_id"])
    except AlertError as e:
        await ctx.reply("messages/alert_command_error.j2", code=e.code, **e.params)
        return
    hops = relay_db.count(ctx.store, alert_id)
    await ctx.reply("messages/alert_issued.j2", alert_id=alert_id, action=data["action"], hops=hops)


@router.text(staff, text_equals("取消"), _pending)
async def cancel(ctx: Ctx, msg: Inbound) -> None:
    conversations.forget(ctx.store, user_key(msg))
    await ctx.reply("messages/alert_cancelled.j2")


@router.text(has_role("staff", "grid_lead"), text_regex(r"^(?:汇总|进度)\s*#?(?P<id>\d+)?$"))
async def summary(ctx: Ctx, msg: Inbound) -> None:
    alert = alerts_mod.find(ctx.store, int(ctx.match["id"])) if ctx.match.get("id") else alerts_mod.latest(ctx.store)
    if alert is None:
        await ctx.reply("messages/alert_command_error.j2", code="no_alert_yet")
        return
    # a grid lead sees their own grid only, as on the dashboard
    within = areas.buildings_of(ctx.store, ctx.resident)
    await ctx.reply_text(escalation.summary_text(ctx.store, alert, settings=ctx.settings, within=within))
