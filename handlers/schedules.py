"""Staff schedule notices and warnings from chat, with a preview and a confirm step.

  定时 明天8点 通知 [范围:第一网格] 周六停水，请提前储水      (once)
  每月5号9点 通知 为老服务日 [staff's words]                  (recurring; a template title)
  定时 后天下午3点 发布 黄色 高温 [范围:…] [正文]             (a warning at a set time)
  … 错过:跳过   (anywhere; default 补发: a run missed while Linli was down goes late, marked)
  确认 / 取消                                                  (answer to the preview)
  定时列表 · 暂停定时 #3 · 恢复定时 #3 · 取消定时 #3
  修改定时 #3 时间 每月6号9点 | 内容 … | 范围 第一网格 | 错过 跳过

Every act is a bot.domain.schedules function; this module only reads the words.
"""
from __future__ import annotations

import re

from bot.core.dispatcher import Ctx, Router
from bot.core.filters import has_role, text_equals, text_regex
from bot.core.models import Inbound
from bot.data import conversations
from bot.domain import alerts as alerts_mod
from bot.domain import schedules
from bot.domain.alerts import AlertError
from bot.domain.schedules import Job, ScheduleError, When
from handlers.pending import pending, user_key

router = Router("schedules")
staff = has_role("staff")
CONFIRM_TTL_S = 600
STATE = "confirm_schedule"

_VERB = re.compile(r"(通知|发布)")
_MISSED = re.compile(r"\s*错过[:：]\s*(\S+)\s*")
_OPTION = re.compile(r"^(?P<key>范围|对象)[:：]\s*(?P<value>\S+)\s*")
_WARNING = re.compile(r"^(?P<colour>[^\s色]{1,2}色|[蓝黄橙红]|blue|yellow|orange|red)\s*(?P<type>\S+?)(?:预警)?"
                      r"(?:\s+(?P<rest>.*))?$", re.S)
_FIELDS = {"时间": "when", "内容": "text", "正文": "text", "范围": "scope", "错过": "missed"}
ALL_VULNERABLE = ("困难群众", "困难户家庭", "重点人群", "所有困难群众", "全部困难群众")



def _options(rest: str) -> tuple[list[str], list[str] | None, str]:
    scope_words, audience = [], None
    while (m := _OPTION.match(rest)) is not None:
        words = [w for w in re.split(r"[、,，]", m.group("value")) if w]
        if m.group("key") == "范围":
            scope_words += words
        else:
            audience = ["*"] if any(w in ALL_VULNERABLE for w in words) else words
        rest = rest[m.end():].strip()
    return scope_words, audience, rest


async def _refuse(ctx: Ctx, e: Exception) -> None:
    if isinstance(e, ScheduleError):
        await ctx.reply("messages/schedule_error.j2", code=e.code, **e.params)
    else:  # the alert's own reason (colour, type, place), with the schedule commands' format
        why = ctx.render("messages/alert_command_error.j2", code=e.code, **e.params).splitlines()[0]
        await ctx.reply("messages/schedule_error.j2", code="alert", why=why.removeprefix("没能完成：").rstrip("。"))


_pending = pending(STATE)  # only this concern's own preview


@router.text(staff, text_regex(r"^(?:定时|每)"), lambda ctx, msg: _VERB.search(msg.text) is not None)
async def schedule_command(ctx: Ctx, msg: Inbound) -> None:
    text = msg.text.strip()
    missed = None
    if (m := _MISSED.search(text)) is not None:
        missed, text = m.group(1), (text[:m.start()] + " " + text[m.end():]).strip()
    verb = _VERB.search(text)
    when_words, rest = text[:verb.start()].strip().removeprefix("定时").strip(), text[verb.end():].strip()
    try:
        rule = schedules.parse_missed(missed) if missed else None
        scope_words, audience, rest = _options(rest)
        if verb.group(1) == "通知":
            type_, colour = alerts_mod.NOTICE, "blue"
        else:
            w = _WARNING.match(rest)
            if w is None:
                raise AlertError("unknown_type", value=rest.split()[0] if rest else "",
                                 valid="、".join(alerts_mod.TYPES))
            colour, type_ = alerts_mod.parse_colour(w.group("colour")), alerts_mod.parse_type(w.group("type"))
            scope_more, audience_more, rest = _options((w.group("rest") or "").strip())
            scope_words, audience = scope_words + scope_more, audience_more or audience
        job = schedules.draft(ctx.app, when_words=when_words, type=type_, colour=colour, text=rest,
                              scope_words=scope_words, audience=audience, missed=rule,
                              issuer_id=ctx.resident["id"])
        shown = schedules.preview(ctx.app, job)
    except (ScheduleError, AlertError) as e:
        await _refuse(ctx, e)
        return
    conversations.remember(ctx.store, user_key(msg), STATE, {
        "kind": job.when.kind, "spec": job.when.spec, "words": job.when.words, "first_at": job.when.first_at,
        "type": job.type, "colour": job.colour, "text": job.text, "template": job.template, "scope": job.scope,
        "scope_names": job.scope_names, "audience": job.audience, "missed": job.missed,
        "issuer_id": job.issuer_id}, ctx.app.clock.now() + CONFIRM_TTL_S)
    tz = ctx.settings.timezone
    await ctx.reply("messages/schedule_preview.j2", describe=shown["describe"], body=shown["text"],
                    households=shown["households"], first=schedules.at_parts(shown["first_at"], tz),
                    later=[schedules.at_parts(t, tz) for t in shown["next"][1:]])


@router.text(staff, text_equals("确认", "确认发布"), _pending)
async def confirm(ctx: Ctx, msg: Inbound) -> None:
    d = ctx.match["pending"]
    conversations.forget(ctx.store, user_key(msg))
    job = Job(when=When(d["kind"], d["spec"], d["words"], d["first_at"]), type=d["type"], colour=d["colour"],
              text=d["text"], template=d["template"], scope=d["scope"], scope_names=d["scope_names"],
              audience=d["audience"], missed=d["missed"], issuer_id=d["issuer_id"])
    try:
        sid = schedules.create(ctx.app, job)
    except (ScheduleError, AlertError) as e:
        await _refuse(ctx, e)
        return
    row = schedules.get(ctx.app, sid)
    await ctx.reply("messages/schedule_created.j2", id=sid,
                    first=schedules.at_parts(row["next_at"], ctx.settings.timezone))


@router.text(staff, text_equals("取消"), _pending)
async def drop(ctx: Ctx, msg: Inbound) -> None:
    conversations.forget(ctx.store, user_key(msg))
    await ctx.reply("messages/alert_cancelled.j2")


@router.text(staff, text_regex(r"^(?:定时列表|定时任务|查看定时)$"))
async def listing(ctx: Ctx, msg: Inbound) -> None:
    await ctx.reply("messages/schedule_list.j2", rows=schedules.list_schedules(ctx.app))


_ACTS = {"暂停": ("paused", schedules.pause), "恢复": ("resumed", schedules.resume),
         "取消": ("cancelled", schedules.cancel), "删除": ("cancelled", schedules.cancel)}


@router.text(staff, text_regex(r"^(?P<act>暂停|恢复|取消|删除)定时\s*#?(?P<id>\d+)$"))
async def manage(ctx: Ctx, msg: Inbound) -> None:
    what, act = _ACTS[ctx.match["act"]]
    try:
        row = act(ctx.app, int(ctx.match["id"]), actor_id=ctx.resident["id"])
    except ScheduleError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply("messages/schedule_changed.j2", what=what, row=row)


@router.text(staff, text_regex(r"^修改定时\s*#?(?P<id>\d+)\s*(?P<field>[^\s:：]*)[:：]?\s*(?P<value>.*)$", re.S))
async def edit(ctx: Ctx, msg: Inbound) -> None:
    field, value = ctx.match["field"], (ctx.match["value"] or "").strip()
    try:
        if field not in _FIELDS:
            raise ScheduleError("bad_field" if field else "nothing_to_change", value=field or ctx.match["id"])
        key = _FIELDS[field]
        if not value and key != "text":
            raise ScheduleError("nothing_to_change", value=ctx.match["id"])
        kw = {"when_words": value} if key == "when" else {"text": value} if key == "text" else \
            {"scope_words": [w for w in re.split(r"[、,，\s]", value) if w and w != "全社区"]} if key == "scope" else \
            {"missed": schedules.parse_missed(value)}
        row = schedules.edit(ctx.app, int(ctx.match["id"]), actor_id=ctx.resident["id"], **kw)
    except (ScheduleError, AlertError) as e:
        await _refuse(ctx, e)
        return
    await ctx.reply("messages/schedule_changed.j2", what="edited", row=row)
