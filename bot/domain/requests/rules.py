"""Reading a resident's words: category, urgency, place, and whether a message is a request at all.

Pure functions over text, no I/O, so the chat side, the ack side and the tests all agree on what
"地下车库进水了" means. Category and urgency keywords come from config ([requests]); the word lists
below are matching data (what people type), not text we show anyone.
"""
from __future__ import annotations

import re

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

# Openers that carry no request yet: they get one clarifying question.
_GREETINGS = {"在吗", "在不在", "有人吗", "有人在吗", "你好", "您好", "你好在吗", "您好在吗",
              "请问", "喂", "hello", "hi", "哈喽", "求助", "帮忙", "帮帮忙", "报事", "投诉",
              "我要报事"}
# Politeness and plain acknowledgements: not requests, nothing to clarify.
_PLEASANTRIES = {"谢谢", "谢谢你", "谢谢您", "多谢", "感谢", "好的", "好", "好滴", "嗯", "嗯嗯",
                 "哦", "ok", "okay", "收到", "收到谢谢", "已阅", "知道了", "明白", "辛苦了",
                 "好的谢谢", "没事了", "不用了", "1"}


def _norm(text: str) -> str:
    """Letters and digits only, lower-cased: punctuation, spaces and emoji are noise here."""
    return re.sub(r"[\W_]+", "", text or "").casefold()


def classify(text: str, settings) -> tuple[str, str]:
    """(category, urgency) by keyword hits; `settings` is Settings or its RequestSettings.
    Each hit scores its length, so a specific word ("停车") outweighs a vague one ("堵"); ties go
    to the category listed first in config, so that order is the community's priority."""
    rs = getattr(settings, "requests", settings)
    best, best_score = "other", 0
    for category, words in rs.categories.items():
        score = sum(len(w) for w in words if w and w in text)
        if score > best_score:
            best, best_score = category, score
    urgent = any(w and w in text for w in rs.urgent_words)
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
    return _norm(text) in _PLEASANTRIES


def is_unclear(text: str) -> bool:
    """Too little to act on: a greeting, a lone '?', one or two characters."""
    n = _norm(text)
    return len(n) <= 2 or n in _GREETINGS


def parse_score(word: str | None) -> int | None:
    """A rating 1–5, also as a full-width digit; None for anything else."""
    if not word:
        return None
    word = word.strip().translate(str.maketrans("１２３４５", "12345"))
    return int(word) if word in ("1", "2", "3", "4", "5") else None
