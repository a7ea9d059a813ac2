"""Scheduled and recurring notices and warnings ("定时 明天8点 通知 …", "每月5号9点 通知 为老服务日").

A job is a row in `schedules`: what to issue (a notice or a warning, its scope and words, or one of
the recurring notice templates in templates/notices/) and when, as the fields of an APScheduler 3.x
trigger — a DateTrigger for "once", a CronTrigger for a calendar rule — evaluated in the
community's time zone. APScheduler only computes fire times here; the one escalation timer
(bot/domain/timers.py) runs `run_due`, because this module is a Timers source (`next_due_at`,
`run_due`) like escalation and the CAP feed.

Exactly once, across restarts: `next_at` is the next fire time. When it is due, one transaction
records the run under the key (schedule, fire time), moves `next_at` on (compare-and-set on the old
value) and issues the alert through bot.domain.alerts.issue (a savepoint inside it). A crash before
the commit leaves nothing done and the same fire time still due; after it, the fire time is done.

Missed runs (Linli was down at the fire time, more than ON_TIME_S late): each job has a rule,
`missed`: 'late' sends the most recent missed occurrence once, its text opened with
"（补发：原定 08:00）"; 'skip' records it as skipped and waits for the next. Older occurrences missed
in the same outage are recorded as skipped either way (nobody wants three 为老服务日 notices at once).
A paused job's occurrences are not "missed": resuming starts from the next one after now.

Every door (chat: handlers/schedules.py; the CLI; the dashboard) calls the functions below:
parse_when, draft, preview, create, list_schedules, get, edit, pause, resume, cancel.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from bot.core import texts
from bot.core.errors import CodedError
from bot.data import org
from bot.data import people as people_db
from bot.data import schedules as schedules_db
from bot.domain import alerts
from bot.domain.alerts import AlertError, Draft
from bot.domain.ports import Deps

log = logging.getLogger("linli.schedules")

ON_TIME_S = 120  # a fire this much after its time still counts as on time (timer latency, a slow start)
MAX_CATCH_UP = 1000  # occurrences walked through after an outage (a daily rule: about three years)
DEFAULT_HOUR = 9  # "每周一 …", "明天 …" without a time: 09:00, shown in the preview before anything is kept
MISSED_RULES = ("late", "skip")
EDITABLE_STATES = ("active", "paused")

# recurring notice templates: the title staff write -> templates/notices/<name>.j2
NOTICE_TEMPLATES = {"为老服务日": "elderly_service_day", "月月谈": "monthly_talk", "党员活动日": "party_day"}

_CN = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6,
            "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}
_DOW = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUM = r"[0-9零〇一二两三四五六七八九十]{1,3}"
_TIME = re.compile(rf"(?P<period>上午|早上|早晨|中午|下午|傍晚|晚上|夜里|凌晨|早|晚)?"
                   rf"(?:(?P<h>{_NUM})(?:(?:点|时)(?:(?P<half>半)|(?P<m>{_NUM})分?)?|[:：](?P<m2>\d\d)))?$")
_ONCE_DAY = re.compile(rf"^(?:(?P<rel>今天|今日|明天|明日|后天|大后天)"
                       rf"|(?P<iso>\d{{4}})-(?P<isom>\d{{1,2}})-(?P<isod>\d{{1,2}})"
                       rf"|(?:(?P<y>\d{{4}})年)?(?:(?P<mon>{_NUM})月)?(?P<d>{_NUM})[日号]"
                       rf"|(?P<next>下)?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天1-7]))?")
_CRON_DAY = re.compile(rf"^每(?:(?P<daily>天|日)|(?:个)?(?P<workday>工作日)"
                       rf"|(?:周|星期|礼拜)(?P<wd>[一二三四五六日天1-7](?:[、,，和][一二三四五六日天1-7])*)"
                       rf"|(?:个)?月(?P<md>{_NUM})[日号]"
                       rf"|年(?P<ym>{_NUM})月(?P<yd>{_NUM})[日号])")
_REL_DAYS = {"今天": 0, "今日": 0, "明天": 1, "明日": 1, "后天": 2, "大后天": 3}


class _AlreadyRun(Exception):
    """This fire time was acted on already (the unique key said so): undo this attempt."""


class ScheduleError(CodedError):
    """A staff input problem; `code` picks the Chinese sentence in messages/schedule_error.j2."""
    template = "messages/schedule_error.j2"


@dataclass
class When:
    kind: str  # 'once' or 'cron'
    spec: dict  # DateTrigger run_date (ISO, with offset) or CronTrigger fields
    words: str  # as staff wrote it
    first_at: float  # the first fire time after "now" (epoch seconds)


@dataclass
class Job:
    """What a schedule will issue, and when: the draft every door builds before `create`."""
    when: When
    type: str = alerts.NOTICE
    colour: str = "blue"
    text: str = ""
    template: str = ""  # a name in NOTICE_TEMPLATES' values; its words are rendered at fire time
    scope: list[int] = field(default_factory=list)
    scope_names: list[str] = field(default_factory=list)
    audience: list[str] | None = None
    missed: str = "late"
    issuer_id: int | None = None


# -- time words ------------------------------------------------------------------------------------
def cn_number(s: str) -> int:
    """'18', '十八', '二十五', '五' -> int (up to 99). Raises ValueError otherwise."""
    if s.isdigit():
        return int(s)
    if "十" in s:
        tens, _, ones = s.partition("十")
        if len(s) > 3 or (tens and tens not in _CN) or (ones and ones not in _CN):
            raise ValueError(s)
        return (_CN[tens] if tens else 1) * 10 + (_CN[ones] if ones else 0)
    if len(s) == 1 and s in _CN:
        return _CN[s]
    raise ValueError(s)


def _clock_time(part: str, words: str) -> tuple[int, int]:
    """'下午3点', '8点半', '18:30', '' (-> DEFAULT_HOUR:00) -> (hour, minute), refused when unclear."""
    m = _TIME.match(part)
    if m is None:
        raise ScheduleError("bad_time", value=words)
    if m.group("h") is None:
        if m.group("period"):
            raise ScheduleError("need_hour", value=words)
        return DEFAULT_HOUR, 0
    try:
        h = cn_number(m.group("h"))
        minute = 30 if m.group("half") else cn_number(m.group("m") or m.group("m2") or "0")
    except ValueError:
        raise ScheduleError("bad_time", value=words)
    period = m.group("period") or ""
    if period in ("下午", "傍晚", "晚上", "夜里", "晚") and h < 12:
        h += 12
    elif period == "中午" and h < 11:
        h += 12
    elif period in ("凌晨", "上午", "早上", "早晨", "早") and h == 12:
        h = 0
    if not (0 <= h <= 23) or not (0 <= minute <= 59):
        raise ScheduleError("bad_clock", value=words)
    return h, minute


def parse_when(words: str, now: float, tz: str = "Asia/Shanghai") -> When:
    """Chinese time words -> a trigger. Once: 明天8点, 后天下午3点, 6月5日9点, 2024-06-05 08:30, 周三18点,
    下周一9点, 20点 (today, if still to come). Recurring: 每天18点, 每周一 (09:00), 每周一、四 8点, 每个工作日8点,
    每月5号9点, 每年10月1日9点. Anything else is refused with the reason."""
    raw = words.strip()
    w = re.sub(r"\s+", "", raw).removeprefix("定时")
    if not w:
        raise ScheduleError("no_time")
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(now, zone).date()
    if w.startswith("每"):
        m = _CRON_DAY.match(w)
        if m is None:
            raise ScheduleError("bad_repeat", value=raw)
        h, minute = _clock_time(w[m.end():], raw)
        spec: dict = {"hour": h, "minute": minute}
        if m.group("workday"):
            spec["day_of_week"] = "mon-fri"
        elif m.group("wd"):
            days = sorted({_WEEKDAY[c] for c in re.split(r"[、,，和]", m.group("wd"))})
            spec["day_of_week"] = ",".join(_DOW[d] for d in days)
        elif m.group("md"):
            day = _num(m.group("md"), raw)
            if not 1 <= day <= 31:
                raise ScheduleError("bad_date", value=raw)
            spec["day"] = day  # 29-31: months without that day are passed over (CronTrigger's rule)
        elif m.group("ym"):
            month, day = _num(m.group("ym"), raw), _num(m.group("yd"), raw)
            try:
                date(2024, month, day)  # a leap year: 2月29日 is a date, just not every year
            except ValueError:
                raise ScheduleError("bad_date", value=raw)
            spec.update(month=month, day=day)
        first = next_fire("cron", spec, now, tz)
        if first is None:
            raise ScheduleError("bad_repeat", value=raw)
        return When("cron", spec, raw, first)
    m = _ONCE_DAY.match(w)
    h, minute = _clock_time(w[m.end():], raw)
    day = _once_day(m, today, h, minute, now, zone, raw)
    try:
        at = datetime(day.year, day.month, day.day, h, minute, tzinfo=zone)
    except ValueError:
        raise ScheduleError("bad_date", value=raw)
    if at.timestamp() <= now:
        raise ScheduleError("past", value=raw)
    return When("once", {"run_date": at.isoformat()}, raw, at.timestamp())


def _num(s: str, words: str) -> int:
    try:
        return cn_number(s)
    except ValueError:
        raise ScheduleError("bad_date", value=words)


def _once_day(m: re.Match, today: date, h: int, minute: int, now: float, zone: ZoneInfo, words: str) -> date:
    if m.group("rel"):
        return today + timedelta(days=_REL_DAYS[m.group("rel")])
    try:
        if m.group("iso"):
            return date(int(m.group("iso")), int(m.group("isom")), int(m.group("isod")))
        if m.group("d"):
            month = _num(m.group("mon"), words) if m.group("mon") else today.month
            d = date(int(m.group("y")) if m.group("y") else today.year, month, _num(m.group("d"), words))
            if not m.group("y") and d < today:
                # "1月5日" written in December means next January; "5号" written on the 20th, next month
                d = (date(d.year + 1, d.month, d.day) if m.group("mon")
                     else _next_month_day(today, d.day, words))
            return d
    except ValueError:
        raise ScheduleError("bad_date", value=words)
    if m.group("wd"):
        target = _WEEKDAY[m.group("wd")]
        if m.group("next"):  # 下周X: that weekday in the week after this one (weeks start on Monday)
            return today - timedelta(days=today.weekday()) + timedelta(days=7 + target)
        ahead = (target - today.weekday()) % 7
        d = today + timedelta(days=ahead)
        if ahead == 0 and datetime(d.year, d.month, d.day, h, minute, tzinfo=zone).timestamp() <= now:
            d += timedelta(days=7)
        return d
    return today  # a time alone: today (refused as past if it has gone)


def _next_month_day(today: date, day: int, words: str) -> date:
    y, mo = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return date(y, mo, day)


def next_fire(kind: str, spec: dict, after: float, tz: str = "Asia/Shanghai") -> float | None:
    """The first fire time strictly after `after` (epoch seconds), or None when there is none."""
    zone = ZoneInfo(tz)
    if kind == "once":
        # a DateTrigger names its one time whatever "now" is: it is next only if still ahead
        at = DateTrigger(run_date=datetime.fromisoformat(spec["run_date"]), timezone=zone).get_next_fire_time(
            None, datetime.fromtimestamp(after, zone))
        return at.timestamp() if at is not None and at.timestamp() > after else None
    trigger = CronTrigger(timezone=zone, **spec)
    # CronTrigger answers "at or after now", to the second: one second on is "strictly after"
    nxt = trigger.get_next_fire_time(None, datetime.fromtimestamp(after + 1, zone))
    return nxt.timestamp() if nxt is not None else None


def upcoming(kind: str, spec: dict, after: float, tz: str, n: int = 3) -> list[float]:
    out, t = [], after
    while len(out) < n:
        t = next_fire(kind, spec, t, tz)
        if t is None:
            break
        out.append(t)
    return out


# -- building a job --------------------------------------------------------------------------------
def draft(deps: Deps, *, when_words: str, type: str = alerts.NOTICE, colour: str = "blue", text: str = "",
          scope_words: list[str] | None = None, audience: list[str] | None = None, missed: str | None = None,
          issuer_id: int | None = None) -> Job:
    """Check everything a door collected and return the Job to preview and create. A notice whose text
    starts with a template title (为老服务日, 月月谈, 党员活动日) uses that template; the rest of the
    text is added to it."""
    when = parse_when(when_words, deps.clock.now(), deps.settings.timezone)
    missed = missed or "late"
    if missed not in MISSED_RULES:
        raise ScheduleError("bad_missed", value=missed)
    if type != alerts.NOTICE:
        alerts.check_colour(type, colour)
    scope_words = [w for w in (scope_words or []) if w.strip()]
    scope = alerts.resolve_scope(deps.store, scope_words)
    template, text = _template_of(type, text.strip())
    if type == alerts.NOTICE and not text and not template:
        raise ScheduleError("empty_notice")
    if not alerts.scope_buildings(deps.store, scope):
        raise AlertError("empty_scope")
    return Job(when=when, type=type, colour=colour, text=text, template=template, scope=scope,
               scope_names=scope_words, audience=audience, missed=missed, issuer_id=issuer_id)


def _template_of(type_: str, text: str) -> tuple[str, str]:
    if type_ != alerts.NOTICE:
        return "", text
    for title, name in NOTICE_TEMPLATES.items():
        if text.startswith(title):
            return name, text[len(title):].strip(" ，,：:")
    return "", text


def body_for(deps: Deps, row: dict, at: float) -> str:
    """The words issued at fire time `at`: a template's rendered for that date, or staff's text."""
    if not row["template"]:
        return row["text"]
    if row["template"] not in NOTICE_TEMPLATES.values():
        raise ScheduleError("no_template", value=row["template"])
    local = datetime.fromtimestamp(at, ZoneInfo(deps.settings.timezone))
    scope = json.loads(row["scope"]) if isinstance(row["scope"], str) else row["scope"]
    buildings = alerts.scope_buildings(deps.store, scope)
    return texts.render(f"notices/{row['template']}.j2", extra=row["text"],
                        community=org.community_name(deps.store, buildings[0] if buildings else None),
                        month=local.month, day=local.day, weekday=local.weekday(), time=local.strftime("%H:%M"))


def _as_row(job: Job) -> dict:
    return dict(kind=job.when.kind, spec=job.when.spec, words=job.when.words, type=job.type, colour=job.colour,
                text=job.text, template=job.template, scope=job.scope, scope_names=job.scope_names,
                audience=job.audience, missed=job.missed, id=None, state="active", next_at=job.when.first_at)


def preview(deps: Deps, job: Job) -> dict:
    """What the job will send at its first fire time, to how many households, and its next times."""
    row = _as_row(job)
    body = body_for(deps, row, job.when.first_at)
    shown = alerts.preview(deps.store, Draft(type=job.type, colour=job.colour, text=body, scope=job.scope,
                                             audience=job.audience), deps.settings)
    return {"text": shown["text"], "households": shown["households"], "first_at": job.when.first_at,
            "next": upcoming(job.when.kind, job.when.spec, job.when.first_at - 1, deps.settings.timezone),
            "describe": describe(deps, row)}


def create(deps: Deps, job: Job) -> int:
    """Keep the job; the timer fires it. Returns its number."""
    store, now = deps.store, deps.clock.now()
    first = next_fire(job.when.kind, job.when.spec, now, deps.settings.timezone)
    if first is None:
        raise ScheduleError("past", value=job.when.words)
    with store.transaction():
        sid = schedules_db.create(store, kind=job.when.kind, spec=job.when.spec, words=job.when.words,
                                  type=job.type, colour=job.colour, text=job.text, template=job.template,
                                  scope=job.scope, scope_names=job.scope_names, audience=job.audience,
                                  missed=job.missed, next_at=first, created_by=job.issuer_id, now=now)
        store.log(now, "schedule.created", "schedule", sid, job.issuer_id, words=job.when.words, type=job.type,
                  next_at=first)
    deps.timers.rearm()
    return sid


# the recurring notices a community office typically runs, as examples (the demo and `linli schedule
# examples` create them paused, so nothing goes out until staff resume one)
EXAMPLES = (("每月5号9点", "为老服务日"), ("每月15号19点半", "月月谈"), ("每月1号15点", "党员活动日"))


def seed_examples(deps: Deps, *, issuer_id: int | None = None) -> list[int]:
    """Create the EXAMPLES as paused jobs, once (a template already scheduled is left alone)."""
    have = {r["template"] for r in schedules_db.listing(deps.store, include_ended=False)}
    ids = []
    for words, title in EXAMPLES:
        if NOTICE_TEMPLATES[title] in have:
            continue
        sid = create(deps, draft(deps, when_words=words, text=title, issuer_id=issuer_id))
        pause(deps, sid, actor_id=issuer_id)
        ids.append(sid)
    return ids


# -- managing jobs -----------------------------------------------------------------------------------
def get(deps: Deps, schedule_id: int) -> dict:
    row = schedules_db.get(deps.store, schedule_id)
    if row is None:
        raise ScheduleError("no_schedule", value=schedule_id)
    return _enrich(deps, row)


def list_schedules(deps: Deps, *, include_ended: bool = False) -> list[dict]:
    """Active and paused jobs (and cancelled/done ones with include_ended), each with `describe`."""
    return [_enrich(deps, r) for r in schedules_db.listing(deps.store, include_ended=include_ended)]


def runs(deps: Deps, schedule_id: int) -> list[dict]:
    return schedules_db.runs(deps.store, schedule_id)


def _enrich(deps: Deps, row: dict) -> dict:
    out = dict(row)
    out["spec"] = json.loads(row["spec"])
    out["scope"] = json.loads(row["scope"])
    out["scope_names"] = json.loads(row["scope_names"])
    out["audience"] = json.loads(row["audience"]) if row["audience"] else None
    out["describe"] = describe(deps, out)
    return out


def at_parts(at: float | None, tz: str) -> dict | None:
    """A time for templates (they word it): year, month, day, weekday 0-6, HH:MM."""
    if at is None:
        return None
    d = datetime.fromtimestamp(at, ZoneInfo(tz))
    return {"year": d.year, "month": d.month, "day": d.day, "weekday": d.weekday(), "hm": d.strftime("%H:%M")}


def describe(deps: Deps, row: dict) -> str:
    """One line for listings: number, state, rule, next time, what."""
    spec = row["spec"] if isinstance(row["spec"], dict) else json.loads(row["spec"])
    names = row["scope_names"] if isinstance(row["scope_names"], list) else json.loads(row["scope_names"])
    tz = deps.settings.timezone
    once = at_parts(datetime.fromisoformat(spec["run_date"]).timestamp(), tz) if row["kind"] == "once" else None
    return texts.render("messages/schedule_line.j2", row=row, spec=spec, scope_names=names, once=once,
                        next=at_parts(row.get("next_at"), tz),
                        title={v: k for k, v in NOTICE_TEMPLATES.items()}.get(row["template"], ""))


def _editable(deps: Deps, schedule_id: int) -> dict:
    row = schedules_db.get(deps.store, schedule_id)
    if row is None:
        raise ScheduleError("no_schedule", value=schedule_id)
    if row["state"] not in EDITABLE_STATES:
        raise ScheduleError("ended", value=schedule_id, state=row["state"])
    return row


def _change(deps: Deps, schedule_id: int, event: str, actor_id: int | None, **fields) -> dict:
    store, now = deps.store, deps.clock.now()
    with store.transaction():
        schedules_db.update(store, schedule_id, now, **fields)
        store.log(now, f"schedule.{event}", "schedule", schedule_id, actor_id,
                  changed={k: v for k, v in fields.items() if k != "spec"})
    deps.timers.rearm()
    return get(deps, schedule_id)


def pause(deps: Deps, schedule_id: int, *, actor_id: int | None = None) -> dict:
    row = _editable(deps, schedule_id)
    if row["state"] == "paused":
        raise ScheduleError("already_paused", value=schedule_id)
    return _change(deps, schedule_id, "paused", actor_id, state="paused")


def resume(deps: Deps, schedule_id: int, *, actor_id: int | None = None) -> dict:
    """Occurrences while paused are not missed runs: the next one after now is the next fire."""
    row = _editable(deps, schedule_id)
    if row["state"] == "active":
        raise ScheduleError("not_paused", value=schedule_id)
    nxt = next_fire(row["kind"], json.loads(row["spec"]), deps.clock.now(), deps.settings.timezone)
    if nxt is None:
        raise ScheduleError("past", value=row["words"])
    return _change(deps, schedule_id, "resumed", actor_id, state="active", next_at=nxt)


def cancel(deps: Deps, schedule_id: int, *, actor_id: int | None = None) -> dict:
    _editable(deps, schedule_id)
    return _change(deps, schedule_id, "cancelled", actor_id, state="cancelled", next_at=None)


def edit(deps: Deps, schedule_id: int, *, when_words: str | None = None, text: str | None = None,
         missed: str | None = None, scope_words: list[str] | None = None, actor_id: int | None = None) -> dict:
    """Change the time, the words, the missed-run rule or the scope of an active or paused job."""
    row = _editable(deps, schedule_id)
    fields: dict = {}
    if when_words is not None:
        when = parse_when(when_words, deps.clock.now(), deps.settings.timezone)
        fields.update(kind=when.kind, spec=when.spec, words=when.words)
        if row["state"] == "active":
            fields["next_at"] = when.first_at
        elif when.kind == "once":
            fields["next_at"] = None  # recomputed on resume
    if text is not None:
        template, words = _template_of(row["type"], text.strip())
        if row["type"] == alerts.NOTICE and not words and not (template or row["template"]):
            raise ScheduleError("empty_notice")
        fields["text"] = words
        if template:
            fields["template"] = template
    if missed is not None:
        if missed not in MISSED_RULES:
            raise ScheduleError("bad_missed", value=missed)
        fields["missed"] = missed
    if scope_words is not None:
        scope = alerts.resolve_scope(deps.store, scope_words)
        if not alerts.scope_buildings(deps.store, scope):
            raise AlertError("empty_scope")
        fields.update(scope=scope, scope_names=scope_words)
    if not fields:
        raise ScheduleError("nothing_to_change", value=schedule_id)
    return _change(deps, schedule_id, "edited", actor_id, **fields)


def parse_missed(word: str) -> str:
    """补发 / 跳过 (or late / skip) -> the rule."""
    w = word.strip().lower()
    rule = {"补发": "late", "late": "late", "跳过": "skip", "不补发": "skip", "skip": "skip"}.get(w)
    if rule is None:
        raise ScheduleError("bad_missed", value=word)
    return rule


# -- the timer ---------------------------------------------------------------------------------------
def next_due_at(deps: Deps) -> float | None:
    return schedules_db.next_due(deps.store)


async def run_due(deps: Deps) -> dict:
    """Fire every job whose time has come, each fire time once. Returns counts."""
    done = {"schedules_sent": 0, "schedules_late": 0, "schedules_skipped": 0, "schedules_failed": 0}
    for row in schedules_db.due(deps.store, deps.clock.now()):
        outcome = _fire(deps, row)
        if outcome:
            done[f"schedules_{outcome}"] += 1
    return done


def _fire(deps: Deps, row: dict) -> str | None:
    store, now, tz = deps.store, deps.clock.now(), deps.settings.timezone
    spec = json.loads(row["spec"])
    # walk the occurrences that came due (more than one after an outage): act on the newest
    due_at, older, nxt = row["next_at"], [], next_fire(row["kind"], spec, row["next_at"], tz)
    while nxt is not None and nxt <= now and len(older) < MAX_CATCH_UP:
        older.append(due_at)
        due_at, nxt = nxt, next_fire(row["kind"], spec, nxt, tz)
    if len(older) >= MAX_CATCH_UP:  # still behind: jump to the first occurrence after now
        nxt = next_fire(row["kind"], spec, now, tz)
    late = now - due_at > ON_TIME_S
    outcome = "skipped" if late and row["missed"] == "skip" else ("late" if late else "sent")
    note = texts.render("messages/schedule_late_note.j2", at=at_parts(due_at, tz)) if late else ""
    alert_id, error = None, None
    try:
        with store.transaction():
            if not schedules_db.advance(store, row["id"], row["next_at"], nxt, due_at, now):
                return None  # another process took this fire time
            for t in older:
                schedules_db.record_run(store, row["id"], t, now, "skipped", note="missed_while_down")
            if outcome != "skipped":
                body = body_for(deps, row, due_at)
                text = f"{note}\n{body}".strip() if note else body
                alert_id = alerts.issue(deps, Draft(
                    type=row["type"], colour=row["colour"], text=text, scope=json.loads(row["scope"]),
                    issuer_id=row["created_by"], audience=json.loads(row["audience"]) if row["audience"] else None))
            if not schedules_db.record_run(store, row["id"], due_at, now, outcome, alert_id):
                raise _AlreadyRun()  # the (schedule, fire time) key: roll the alert back, never twice
            store.log(now, f"schedule.{outcome}", "schedule", row["id"], None, due_at=due_at, alert_id=alert_id,
                      skipped=len(older))
    except _AlreadyRun:
        return None
    except (AlertError, ScheduleError) as e:  # the scope emptied, a template gone …: recorded, staff told
        error = e
    if error is not None:
        with store.transaction():
            if schedules_db.advance(store, row["id"], row["next_at"], nxt, due_at, now):
                for t in older:
                    schedules_db.record_run(store, row["id"], t, now, "skipped", note="missed_while_down")
                schedules_db.record_run(store, row["id"], due_at, now, "failed", note=error.code)
                store.log(now, "schedule.failed", "schedule", row["id"], None, due_at=due_at, code=error.code)
        _tell_creator(deps, row, due_at, error)
        outcome = "failed"
    deps.timers.rearm()
    return outcome


def _tell_creator(deps: Deps, row: dict, due_at: float, error: AlertError | ScheduleError) -> None:
    who = people_db.get(deps.store, row["created_by"]) if row["created_by"] else None
    target = deps.reach.person(who) if who else None
    if target is None:
        log.warning("schedule #%s failed at %s (%s) and its creator cannot be told", row["id"], due_at, error.code)
        return
    page = "messages/alert_command_error.j2" if isinstance(error, AlertError) else "messages/schedule_error.j2"
    why = texts.render(page, code=error.code, **error.params).splitlines()[0].removeprefix("没能完成：")
    text = texts.render("messages/schedule_failed.j2", id=row["id"], at=at_parts(due_at, deps.settings.timezone),
                        why=why)
    deps.outbox.enqueue(f"schedule_failed:{row['id']}:{int(due_at)}", target[0], target[1], {"text": text},
                        purpose="schedule_failed")
    deps.outbox.kick()
