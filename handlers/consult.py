"""议事 / 定事: staff or a compound branch open a consultation; households vote (reply, link, a lead for them).

  议事 大龙一区/3栋                 (the scope; staff may leave it empty for the whole community)
  问题：3栋加装电梯，费用按楼层分摊
  选项：同意/不同意/弃权             (default; other options make a choice between them)
  投票：业主                         (or 住户, default: every household)
  通过：三分之二 按户                (按户 / 按业主 / 按面积; 相对多数 for a choice)
  截止：12月15日18:00                (default: [consult] default_days)
  公开：不记名                       (default 记名: staff may see each household's choice)
  确认 / 取消                        (answer to the preview; only to a pending consultation preview)

  同意 · 不同意 · 弃权 · 选2 · 议事3 同意   (a resident of a household with an open consultation)
  议事                                      (what is open for me, and how I voted)
  代投 3栋502 同意 · 代投 议事3 3栋502 选2  (a lead, staff, or the household's steward)
  截止议事 3 · 取消议事 3                    (staff: close now and publish / cancel without a result)

Every act is a bot.domain.consult function; this module only reads the words.
"""
from __future__ import annotations

import re

from bot.core import vocabulary
from bot.core.dispatcher import Ctx, Router
from bot.core.filters import command, has_role, known_resident
from bot.core.models import Inbound
from bot.data import conversations
from bot.domain import consult
from bot.domain.consult import ConsultError
from handlers.pending import pending, user_key

router = Router("consult")
CONFIRM_TTL_S = 600
STATE = "confirm_consult"
_NUMBERED = re.compile(r"^(?:议事|定事)\s*#?(?P<id>\d{1,9})(?![\d栋幢号单])\s*[:：,，]?\s*(?P<rest>.*)$", re.S)



def _field_pattern() -> re.Pattern:
    labels = {w: name for name in consult.FIELDS for w in vocabulary.words(f"consult.fields.{name}")}
    alternation = "|".join(re.escape(w) for w in sorted(labels, key=len, reverse=True))
    return re.compile(rf"(?:^|(?<=\s))({alternation})\s*[:：]"), labels


def split_command(text: str) -> tuple[list[str], dict[str, str]] | None:
    """'议事 范围\\n问题：…\\n选项：…' -> (scope words, {field: words}); None when no field is there."""
    rx, labels = _field_pattern()
    found = list(rx.finditer(text))
    if not found:
        return None
    head = text[:found[0].start()]
    for verb in sorted(vocabulary.words("consult.open"), key=len, reverse=True):
        if head.strip().startswith(verb):
            head = head.strip()[len(verb):]
            break
    fields = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        fields[labels[m.group(1)]] = text[m.end():end].strip()
    scope_words = [w for w in re.split(r"[\s、,，]+", head) if w and w not in ("全社区", "全部")]
    return scope_words, fields


def _is_open_command(ctx: Ctx, msg: Inbound) -> bool | dict:
    text = msg.text.strip()
    if not any(text.startswith(v) for v in vocabulary.words("consult.open")):
        return False
    parts = split_command(text)
    return {"parts": parts} if parts is not None else False


_pending = pending(STATE)  # only this concern's own preview


async def _refuse(ctx: Ctx, e: ConsultError) -> None:
    await ctx.reply_text(e.text())


@router.text(known_resident, _is_open_command)
async def open_command(ctx: Ctx, msg: Inbound) -> None:
    scope_words, fields = ctx.match["parts"]
    try:
        if not consult.may_open(ctx.store, ctx.resident):
            raise ConsultError("not_allowed")
        if not scope_words and consult.area_of(ctx.store, ctx.resident) is not None:
            raise ConsultError("need_scope")
        draft = consult.draft_from_words(ctx.app, scope_words, fields, opened_by=ctx.resident["id"])
        consult.check(ctx.app, draft, ctx.resident)
        shown = consult.preview(ctx.app, draft)
    except ConsultError as e:
        await _refuse(ctx, e)
        return
    conversations.remember(ctx.store, user_key(msg), STATE, consult.draft_as_dict(draft),
                           ctx.app.clock.now() + CONFIRM_TTL_S)
    await ctx.reply("messages/consult/preview.j2", text=shown["text"], households=shown["households"],
                    buildings=shown["buildings"], scope_words=scope_words, basis=draft.basis, total=shown["total"])


@router.text(known_resident, command("commands.confirm", r"^{words}$"), _pending)
async def confirm(ctx: Ctx, msg: Inbound) -> None:
    draft = consult.draft_of_dict(ctx.match["pending"])
    conversations.forget(ctx.store, user_key(msg))
    try:
        cid = consult.open(ctx.app, draft, ctx.resident)
    except ConsultError as e:
        await _refuse(ctx, e)
        return
    c = consult.get(ctx.app, cid)
    await ctx.reply("messages/consult/opened.j2", c=c, households=consult.tally(ctx.app, cid)["households"],
                    closes=consult.at_parts(ctx.app, c["closes_at"]))


@router.text(known_resident, command("commands.cancel", r"^{words}$"), _pending)
async def drop(ctx: Ctx, msg: Inbound) -> None:
    conversations.forget(ctx.store, user_key(msg))
    await ctx.reply("messages/consult/dropped.j2")


@router.text(has_role("staff"), command("consult.close", r"^{words}\s*#?(?P<id>\d{1,9})$"))
async def close_now(ctx: Ctx, msg: Inbound) -> None:
    """"截止议事 3": tally and publish now."""
    try:
        c = consult.close(ctx.app, int(ctx.match["id"]), actor_id=ctx.resident["id"])
    except ConsultError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply("messages/consult/ended_by_staff.j2", c=c, cancelled=False,
                    text=consult.result_text(ctx.app, c, c["result"]))


@router.text(has_role("staff"), command("consult.cancel", r"^{words}\s*#?(?P<id>\d{1,9})$"))
async def cancel_now(ctx: Ctx, msg: Inbound) -> None:
    """"取消议事 3": no result; the households are told."""
    try:
        c = consult.cancel(ctx.app, int(ctx.match["id"]), actor_id=ctx.resident["id"])
    except ConsultError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply("messages/consult/ended_by_staff.j2", c=c, cancelled=True, text="")


# -- proxy votes ----------------------------------------------------------------------------------------
@router.text(known_resident, command("consult.proxy", r"^{words}\s*(?P<rest>.+)$", re.S))
async def proxy(ctx: Ctx, msg: Inbound) -> None:
    """"代投 3栋502 同意" / "代投 议事3 3栋502 选2": a vote for a household without a phone."""
    rest = ctx.match["rest"].strip()
    cid = None
    if (m := re.search(r"(?:议事|定事)\s*#?(\d{1,9})", rest)) is not None:
        cid, rest = int(m.group(1)), (rest[:m.start()] + " " + rest[m.end():]).strip()
    room, _, choice_words = rest.rpartition(" ")
    if not room:
        await ctx.reply("messages/consult/proxy_help.j2")
        return
    candidates = consult.open_ones(ctx.app)
    if cid is not None:
        candidates = [c for c in candidates if c["id"] == cid]
    matches = []
    for c in candidates:
        for hh in consult.find_household(ctx.app, c["id"], room):
            matches.append((c, hh))
    if not matches:
        await ctx.reply("messages/consult/proxy_no_household.j2", room=room, id=cid)
        return
    if len({c["id"] for c, _ in matches}) > 1:
        await ctx.reply("messages/consult/which.j2", consultations=[c for c, _ in matches], words=f"代投 {rest}",
                        proxy=True)
        return
    if len(matches) > 1:
        await ctx.reply("messages/consult/proxy_no_household.j2", room=room, id=cid,
                        several=[hh["label"] for _, hh in matches])
        return
    c, hh = matches[0]
    choice = consult.parse_choice(choice_words, c)
    try:
        if choice is None:
            raise ConsultError("bad_choice", id=c["id"], options=c["options"])
        out = consult.proxy_vote(ctx.app, c["id"], hh["id"], choice, actor=ctx.resident)
    except ConsultError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply("messages/consult/voted.j2", out=out, option=c["options"][choice], proxy=True,
                    closes=consult.at_parts(ctx.app, c["closes_at"]))


# -- residents ------------------------------------------------------------------------------------------
@router.text(known_resident, command("consult.open", r"^{words}$"))
async def listing(ctx: Ctx, msg: Inbound) -> None:
    """"议事": a resident sees what is open for their household (and their vote); staff and leads
    see the open ones in their area with turnout."""
    hid = ctx.resident.get("household_id")
    mine = [c for c in consult.for_household(ctx.app, hid) if c["state"] == "open"] if hid else []
    rows = [{"c": c, "choice": consult.current_choice(ctx.app, c["id"], hid),
             "link": consult.vote_url(ctx.app, c["id"], hid),
             "closes": consult.at_parts(ctx.app, c["closes_at"])} for c in mine]
    led = []
    if consult.may_open(ctx.store, ctx.resident) or consult.area_of(ctx.store, ctx.resident):
        led = [{"c": c, "t": consult.tally(ctx.app, c["id"]), "closes": consult.at_parts(ctx.app, c["closes_at"])}
               for c in consult.listing(ctx.app, ctx.resident) if c["state"] == "open"]
    await ctx.reply("messages/consult/list.j2", rows=rows, led=led)


def _vote_words(ctx: Ctx, msg: Inbound) -> bool | dict:
    """A vote from a registered household member: an option word for one of its consultations (open,
    or closed in the last days, to be told it closed). Anything else is left to the acks and
    requests routers ("1" and "收到" are never votes)."""
    if ctx.resident is None or ctx.resident.get("household_id") is None or msg.chat_id:
        return False
    text = msg.text.strip()
    if len(text) > 40:
        return False
    cid = None
    if (m := _NUMBERED.match(text)) is not None:
        cid, text = int(m.group("id")), m.group("rest")
    candidates = consult.for_household(ctx.app, ctx.resident["household_id"])
    if cid is not None:
        candidates = [c for c in candidates if c["id"] == cid]
        if not candidates:
            return {"votes": [], "asked": cid}
    votes = [(c, choice) for c in candidates if (choice := consult.parse_choice(text, c)) is not None]
    if not votes:
        return {"votes": [], "asked": cid} if cid is not None else False
    open_votes = [v for v in votes if consult.is_open(ctx.app, v[0])]
    return {"votes": open_votes or votes[:1], "asked": cid, "words": text}


@router.text(_vote_words)
async def resident_vote(ctx: Ctx, msg: Inbound) -> None:
    votes = ctx.match["votes"]
    if not votes:
        await ctx.reply_text(ConsultError("no_consultation", id=ctx.match["asked"]).text())
        return
    if len(votes) > 1:
        await ctx.reply("messages/consult/which.j2", consultations=[c for c, _ in votes], words=ctx.match["words"],
                        proxy=False)
        return
    c, choice = votes[0]
    try:
        out = consult.vote(ctx.app, c["id"], ctx.resident["household_id"], choice, channel=msg.channel,
                           resident=ctx.resident)
    except ConsultError as e:
        await _refuse(ctx, e)
        return
    await ctx.reply("messages/consult/voted.j2", out=out, option=c["options"][choice], proxy=False,
                    closes=consult.at_parts(ctx.app, c["closes_at"]))
