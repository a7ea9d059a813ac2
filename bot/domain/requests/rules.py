"""Reading a resident's words: category, urgency, place, and whether a message is a request at all.

Pure functions over text, no I/O, so the chat side, the ack side and the tests all agree on what
"地下车库进水了" means. Category and urgency keywords come from config ([requests]); the word lists
they use come from the shared vocabulary (bot/core/vocabulary.toml, [requests]), which the config
extends; they are matching data (what people type), not text we show anyone.

Whether free text is a request (read_message) is measured against a labelled set of real-style
messages (tests/data/messages_labelled.csv, tests/test_requests_reading.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from bot.core import vocabulary
from bot.core.filters import roles_of

# Digits as residents write them: Arabic or Chinese numerals.
_N = r"(?:\d+|[一二三四五六七八九十]+)"
# "一区3栋2单元502", "3号楼", "5栋", "2单元501", "一区502": the register's own way of naming places.
_PLACE_CODE = re.compile(
    rf"(?:{_N}区)?{_N}(?:栋|幢|座|号楼)(?:{_N}单元)?(?:\d{{3,4}}(?:室|号)?)?"
    rf"|(?:{_N}区)?{_N}单元\d{{3,4}}(?:室|号)?"
    rf"|{_N}区\d{{3,4}}(?:室|号)?")
# Shared spaces, longest first so "地下车库" wins over "车库".
_LANDMARKS = sorted([
    "地下车库", "地下停车场", "地下室", "停车场", "车库", "楼道", "楼梯间", "楼梯", "电梯间",
    "电梯", "天台", "楼顶", "小区大门", "小区门口", "大门", "门口", "单元门", "门禁", "花园",
    "广场", "绿化带", "垃圾站", "垃圾房", "配电房", "水泵房", "消防通道", "走廊", "过道", "阳台",
    "屋顶",
], key=len, reverse=True)
_LANDMARK_RE = re.compile("|".join(map(re.escape, _LANDMARKS)))

# Everything this module matches on, by purpose, from the shared vocabulary (bot/core/vocabulary.toml,
# [requests]): words, not sentences we show anyone. Rebuilt when the config adds words.
_SETS = ("greetings", "pleasantries", "yes", "weak_category_words")
_cache: tuple[int, dict] | None = None


def vocab() -> dict[str, Any]:
    global _cache
    if _cache is None or _cache[0] != vocabulary.version():
        v: dict[str, Any] = {k: vocabulary.words(f"requests.{k}") for k in (
            "greetings", "pleasantries", "yes", "explicit_prefixes", "lead_ins", "problem", "asks", "chitchat",
            "negated", "weak_category_words", "urgent")}
        for k in _SETS:
            v[k] = set(v[k])
        v["extra_category_words"] = vocabulary.table("requests.categories")
        _cache = (vocabulary.version(), v)
    return _cache[1]


# a resident's message this short with no problem word in it is not filed ("让我看看", "123")
CHITCHAT_MAX_CHARS = 4
# roles whose free text is filed only when explicit ("报事 …"): they work on requests
DUTY_ROLES = frozenset({"building_lead", "grid_lead", "staff", "social_worker"})


def _norm(text: str) -> str:
    """Letters and digits only, lower-cased: punctuation, spaces and emoji are noise here."""
    return re.sub(r"[\W_]+", "", text or "").casefold()


def classify(text: str, settings) -> tuple[str, str]:
    """(category, urgency) by keyword hits; `settings` is Settings or its RequestSettings.
    Each hit scores its length, so a specific word ("停车") outweighs a vague one ("堵"); ties go
    to the category listed first in config, so that order is the community's priority."""
    rs = getattr(settings, "requests", settings)
    weak, extra = vocab()["weak_category_words"], vocab()["extra_category_words"]
    best, best_score = "other", 0
    categories = {**{c: () for c in extra}, **rs.categories}  # config's order first: its priority
    for category in categories:
        words = {w for w in [*rs.categories.get(category, ()), *extra.get(category, ())] if w and w not in weak}
        score = sum(len(w) for w in words if w in text)
        if score > best_score:
            best, best_score = category, score
    urgent = any(w and w in text for w in [*rs.urgent_words, *vocab()["urgent"]])
    return best, "urgent" if urgent else "normal"


def extract_place(text: str) -> str:
    """The most specific place named in the text, or ''. A landmark right after a building code
    is kept with it ("3栋地下车库"), because the lead needs both."""
    m = _PLACE_CODE.search(text or "")
    if m:
        rest = text[m.end():]
        lm = _LANDMARK_RE.match(rest)
        return m.group(0) + (lm.group(0) if lm else "")
    lm = _LANDMARK_RE.search(text or "")
    return lm.group(0) if lm else ""


def is_pleasantry(text: str) -> bool:
    """'谢谢', '好的', '收到': answer nothing as a request (the ack router sees acks first)."""
    return _norm(text) in vocab()["pleasantries"]


def is_yes(text: str) -> bool:
    """'是', '对', '要', '嗯': a yes to "shall we file this?"."""
    return _norm(text) in vocab()["yes"]


def is_unclear(text: str) -> bool:
    """Too little to act on: a greeting, a lone '?', one or two characters."""
    n = _norm(text)
    return len(n) <= 2 or n in vocab()["greetings"]


def parse_score(word: str | None) -> int | None:
    """A rating 1–5, also as a full-width digit; None for anything else."""
    if not word:
        return None
    word = word.strip().translate(str.maketrans("１２３４５", "12345"))
    return int(word) if word in ("1", "2", "3", "4", "5") else None


# -- is it a request at all? ---------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """What free text in a private chat means for the requests workflow.
    kind: 'request' (file it, with `text`), 'unclear' (ask once what they need),
    'uncertain' (ask once whether to file it: a yes files `text`), 'chitchat' (a short help
    reply, no ticket). `explicit`: it began with 报事/报修/求助/投诉;
    `duty`: the sender works on requests (lead, staff, social worker)."""

    kind: str
    text: str
    explicit: bool = False
    duty: bool = False


def _strip_explicit(text: str) -> tuple[bool, str]:
    t = text.strip()
    for p in vocab()["explicit_prefixes"]:
        if t.startswith(p):
            return True, t[len(p):].lstrip(" \t:：，,。.、-—!！")
    return False, t


def _strip_lead_ins(text: str) -> str:
    """Remove acknowledging and greeting words in front ("收到！", "您好，请问"), repeatedly."""
    t = text.strip()
    changed = True
    while changed and t:
        changed = False
        for w in vocab()["lead_ins"]:
            if t.casefold().startswith(w):
                rest = re.sub(r"^[\s\W_]+", "", t[len(w):])
                if rest != t:
                    t, changed = rest, True
                break
    return t


def _has_issue(text: str, settings) -> tuple[bool, bool]:
    """(strong, topical): a problem or an ask is named; a category's subject is named."""
    for phrase in vocab()["negated"]:
        text = text.replace(phrase, " ")
    strong = any(w in text for w in vocab()["problem"]) or \
        any(w in text for w in vocab()["asks"])
    rs = getattr(settings, "requests", settings)
    weak = vocab()["weak_category_words"]
    topics = [w for ws in rs.categories.values() for w in ws]
    topics += [w for ws in vocab()["extra_category_words"].values() for w in ws]
    urgent = any(w and w in text for w in [*rs.urgent_words, *vocab()["urgent"]])
    return strong or urgent, any(w and w not in weak and w in text for w in topics)


def _only_a_place(text: str) -> bool:
    place = extract_place(text)
    return bool(place) and len(_norm(text.replace(place, ""))) <= 2


def read_message(text: str, sender: Mapping[str, Any] | None, settings, *,
                 answering: bool = False) -> Reading:
    """Whether free text from `sender` becomes a request. Residents: a named problem, an ask or
    a request's subject ("二单元电梯") is filed; greetings and near-empty text are 'unclear';
    the rest is chit-chat. Leads, staff and social workers talk to the bot about their work all
    day, so their words are filed only after 报事/报修/求助/投诉. `answering`: this message
    answers our clarifying question, so anything with content in it completes the filing."""
    duty = bool(DUTY_ROLES & roles_of(sender))
    explicit, body = _strip_explicit(text or "")
    if explicit:
        if is_unclear(body) and not _has_issue(body, settings)[0]:
            return Reading("unclear", body, explicit=True, duty=duty)
        return Reading("request", body, explicit=True, duty=duty)
    core = _strip_lead_ins(body)
    strong, topical = _has_issue(core, settings)
    chat = any(w in core for w in vocab()["chitchat"])
    if not core or is_pleasantry(core) or (is_unclear(core) and not (strong or topical)):
        kind = "unclear" if not is_pleasantry(core) else "chitchat"
    elif strong or (topical and not chat):
        kind = "request"
    elif chat:
        kind = "chitchat"
    elif _only_a_place(core):
        kind = "unclear"  # "5栋302" and nothing else: ask what is wrong there
    elif len(_norm(core)) <= CHITCHAT_MAX_CHARS:
        kind = "chitchat"
    else:
        # a sentence with neither a problem word nor chit-chat in it: may be a report in words
        # we have no list for ("插座冒火花了"), may be small talk ("今天好冷啊"). Filing small talk
        # puts a ticket in a lead's queue that escalates if nobody accepts it; dropping a report
        # may leave someone alone with a hazard. So we ask: "是" files it.
        kind = "uncertain"
    if answering and kind in ("unclear", "uncertain") and len(_norm(core)) > 2:
        kind = "request"  # we asked what they need; this is the answer
    if duty and not answering and kind in ("request", "uncertain"):
        kind = "chitchat"  # not explicit: a lead's words are not a ticket
    return Reading(kind, body, explicit=False, duty=duty)
