"""Reading a resident's words: category, urgency, place, and whether a message is a request at all.

Pure functions over text, no I/O, so the chat side, the ack side and the tests all agree on what
"地下车库进水了" means. Category and urgency keywords come from config ([requests]); the word lists
below are matching data (what people type), not text we show anyone. All of them are in one dict,
VOCABULARY, so they can move to the shared vocabulary in one piece.

Whether free text is a request (read_message) is measured against a labelled set of real-style
messages (tests/data/messages_labelled.csv, tests/test_requests_reading.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

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

# Everything this module matches on, by purpose. Words, not sentences we show anyone.
VOCABULARY: dict[str, Any] = {
    # openers that carry no request yet: they get one clarifying question
    "greetings": {"在吗", "在不在", "有人吗", "有人在吗", "你好", "您好", "你好在吗", "您好在吗",
                  "请问", "喂", "喂喂", "hello", "hi", "哈喽", "求助", "帮忙", "帮帮忙", "报事",
                  "投诉", "我要报事", "报修", "我要报修", "我要投诉", "我要求助"},
    # politeness and plain acknowledgements: not requests, nothing to clarify
    "pleasantries": {"谢谢", "谢谢你", "谢谢您", "多谢", "感谢", "好的", "好", "好滴", "嗯", "嗯嗯",
                     "哦", "ok", "okay", "收到", "收到谢谢", "已阅", "知道了", "明白", "辛苦了",
                     "好的谢谢", "没事了", "不用了", "1"},
    # a yes to "shall I file this as a request?"
    "yes": {"是", "是的", "是啊", "对", "对的", "对啊", "嗯", "嗯嗯", "要", "要的", "好", "好的", "行",
            "可以", "登记", "报", "麻烦了", "1", "ok", "yes", "确认"},
    # "报事 …": the explicit way to file, and the only one for leads, staff and social workers
    "explicit_prefixes": ("我要报事", "我要报修", "我要投诉", "我要求助", "报事", "报修", "求助",
                          "投诉"),
    # leading words that acknowledge or greet before the actual message ("收到，地下车库进水了")
    "lead_ins": ("收到收到", "收到了", "收到", "好的", "已阅", "ok", "嗯嗯", "嗯", "另外",
                 "你好", "您好", "有人吗", "在吗", "请问", "喂", "那个", "就是"),
    # words that say something is wrong by themselves
    "problem": ("坏", "壞", "不亮", "不动", "不了", "停了", "没电", "冇电", "没水", "冇水", "停水",
                "停电", "漏", "滴水", "渗水", "堵", "爆", "断", "掉", "裂", "碎", "塌", "倒了",
                "臭", "吵", "危险", "救命", "着火", "起火", "冒烟", "味道", "气味", "煤气味",
                "被人", "被占", "占了", "乱停", "乱扔", "乱放", "刷不开", "打不着", "打不开",
                "关不上", "关不紧", "不热", "不通", "长霉", "发霉", "满了", "冒出来", "走丢",
                "联系不上", "不知道怎么了", "担心", "摔倒", "晕倒", "受伤", "被困", "没人修",
                "没人管", "没人清", "好久没", "差点", "砸", "飞线", "假药", "骗", "陌生人",
                "咬人", "不安全", "吓人", "太吵", "熏", "进不来", "过不去", "下不了", "挡住",
                "困在", "卡在", "空转", "一闪一闪", "黑漆漆", "黑咕隆咚", "药吃完", "不便",
                "没法", "要掉", "摇摇晃晃", "松了", "不见了", "撬", "剪断", "湿了", "进水",
                "积水", "漏水", "施工", "装修",
                # added after the first held-out measurement (general signs of trouble)
                "破了", "怪味", "泡着", "找不到", "不见", "声音太大", "声音特别大", "大声", "恶心",
                "翘起", "绊倒", "偷", "丢了", "没人应", "没人接", "不让", "飞快", "脱落", "歪了",
                "烂了", "火花", "好黑", "太黑", "好滑", "摔了", "走失", "睡不着", "半夜", "结冰",
                "鸟屎", "吐痰", "小广告", "死猫", "死狗", "消防车道", "太高", "冒火"),
    # asking someone to do something, or where to get something done
    "asks": ("帮忙", "帮帮", "能帮", "麻烦", "能不能", "能否", "可不可以", "可以帮", "派人",
             "找人", "找谁", "怎么办", "去哪里", "在哪里", "需要什么", "怎么办理", "办理", "申请",
             "开证明", "证明", "需要帮助", "需要人", "来看一下", "来看看", "处理一下", "修一下",
             "通一下", "挪车", "请帮", "登记", "咨询", "补办", "能补", "能借", "借用"),
    # words of a message that is not asking for anything (weather talk, wishes, "all fine")
    "chitchat": ("天气", "下雨吗", "会下雨", "雨好大", "雨下得", "风好大", "快乐", "早上好",
                 "早安", "晚安", "午安", "晚上好", "机器人", "名字", "哈哈", "测试", "恭喜",
                 "吃了吗", "辛苦", "几点开始", "下班", "没事", "都好", "挺好", "不用担心",
                 "解决了", "知道了", "去看看", "看看再说", "随便看看", "问问", "会跟", "转告",
                 "转发给", "注意安全", "是真的吗", "到家了", "干什么的", "怎么用", "你好呀",
                 "书记好",
                 # thanks and "it's fine now" anywhere in a message without a problem word
                 "谢谢", "感谢", "多谢", "好了", "正常", "会注意", "上班", "有没有雨", "下雨",
                 "放学"),
    # phrases that contain a problem word but say there is none ("不用担心", "问题解决了");
    # blanked out before problem words are looked for
    "negated": ("不用担心", "别担心", "不担心", "没事", "都好", "解决了", "没问题", "不危险"),
    # category keywords too vague to count ("看看" is in config's elderly list, but "帮我看看
    #今天的天气" is no elderly care request): ignored by classify() and read_message()
    "weak_category_words": {"看看"},
    # what residents also write for a category: dialect, typos, near words (added to config's)
    "extra_category_words": {
        "water": ["冇水", "没水", "滴水", "渗水", "水龙头", "马桶", "水表", "漏雨", "潮", "霉",
                  "漏"],
        "electricity": ["电悌", "電梯", "燈", "没电", "冇电", "路灯"],
        "safety": ["天然气", "井盖", "窨井", "砸", "花盆", "瓷砖", "陌生人", "走丢", "假药",
                   "飞线", "充电", "消防栓", "流浪狗", "广告牌", "围墙"],
        "elderly": ["腿脚不便", "奶奶", "老太太", "爷爷", "送药", "药吃完", "陪去医院",
                    "联系不上"],
        "noise": ["装修", "广场舞", "蹦迪", "施工", "KTV"],
        "environment": ["臭", "化粪池", "老鼠", "灰", "打扫", "乱扔"],
        "parking": ["乱停", "僵尸车", "单车", "地库", "救护车"],
        "property": ["门锁", "信箱", "玻璃", "暖气", "网线", "修剪", "树枝", "单元门"],
    },
}

# a resident's message this short with no problem word in it is not filed ("让我看看", "123")
CHITCHAT_MAX_CHARS = 4
# roles whose free text is filed only when explicit ("报事 …"): they work on requests
DUTY_ROLES = frozenset({"building_lead", "grid_lead", "staff", "social_worker"})
_GREETINGS = VOCABULARY["greetings"]
_PLEASANTRIES = VOCABULARY["pleasantries"]


def _norm(text: str) -> str:
    """Letters and digits only, lower-cased: punctuation, spaces and emoji are noise here."""
    return re.sub(r"[\W_]+", "", text or "").casefold()


def classify(text: str, settings) -> tuple[str, str]:
    """(category, urgency) by keyword hits; `settings` is Settings or its RequestSettings.
    Each hit scores its length, so a specific word ("停车") outweighs a vague one ("堵"); ties go
    to the category listed first in config, so that order is the community's priority."""
    rs = getattr(settings, "requests", settings)
    weak, extra = VOCABULARY["weak_category_words"], VOCABULARY["extra_category_words"]
    best, best_score = "other", 0
    for category, words in rs.categories.items():
        words = {w for w in [*words, *extra.get(category, ())] if w and w not in weak}
        score = sum(len(w) for w in words if w in text)
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


def is_yes(text: str) -> bool:
    """'是', '对', '要', '嗯': a yes to "shall we file this?"."""
    return _norm(text) in VOCABULARY["yes"]


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
    for p in VOCABULARY["explicit_prefixes"]:
        if t.startswith(p):
            return True, t[len(p):].lstrip(" \t:：，,。.、-—!！")
    return False, t


def _strip_lead_ins(text: str) -> str:
    """Remove acknowledging and greeting words in front ("收到！", "您好，请问"), repeatedly."""
    t = text.strip()
    changed = True
    while changed and t:
        changed = False
        for w in VOCABULARY["lead_ins"]:
            if t.casefold().startswith(w):
                rest = re.sub(r"^[\s\W_]+", "", t[len(w):])
                if rest != t:
                    t, changed = rest, True
                break
    return t


def _has_issue(text: str, settings) -> tuple[bool, bool]:
    """(strong, topical): a problem or an ask is named; a category's subject is named."""
    for phrase in VOCABULARY["negated"]:
        text = text.replace(phrase, " ")
    strong = any(w in text for w in VOCABULARY["problem"]) or \
        any(w in text for w in VOCABULARY["asks"])
    rs = getattr(settings, "requests", settings)
    weak = VOCABULARY["weak_category_words"]
    topics = [w for ws in rs.categories.values() for w in ws]
    topics += [w for ws in VOCABULARY["extra_category_words"].values() for w in ws]
    urgent = any(w and w in text for w in rs.urgent_words)
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
    chat = any(w in core for w in VOCABULARY["chitchat"])
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
