"""China's meteorological warning signals and the colours each one has.

From the China Meteorological Administration's 《气象灾害预警信号发布与传播办法》 (CMA Order No. 16,
2007) and its annex of signals and defence guides, plus Guangdong's 雷雨大风 signal (Guangdong's
provincial signal rules), which the Dalong story uses. A colour a signal does not have is refused:
there is no blue heat-wave signal, no blue drought signal.

The CMA also numbers the signals: a 4-digit code "TTLL" (type, level 01 blue … 04 red) is how many
weather feeds (and China's CAP profile's eventCode) name a signal; SIGNAL_CODES maps the type part.
"""
from __future__ import annotations

COLOURS = ("blue", "yellow", "orange", "red")
ALL = COLOURS

SIGNALS: dict[str, tuple[str, ...]] = {
    "台风": ALL,
    "暴雨": ALL,
    "暴雪": ALL,
    "寒潮": ALL,
    "大风": ALL,
    "沙尘暴": ("yellow", "orange", "red"),
    "高温": ("yellow", "orange", "red"),
    "干旱": ("orange", "red"),
    "雷电": ("yellow", "orange", "red"),
    "冰雹": ("orange", "red"),
    "霜冻": ("blue", "yellow", "orange"),
    "大雾": ("yellow", "orange", "red"),
    "霾": ("yellow", "orange"),
    "道路结冰": ("yellow", "orange", "red"),
    "雷雨大风": ALL,  # Guangdong
    "其他": ALL,  # a warning from another authority (flood control, geology …): staff choose the colour
}
NOTICE = "通知"  # not a warning: no colour, no "预警" in its heading, no poll
TYPES = tuple(SIGNALS) + (NOTICE,)

# CMA signal type codes (the first two digits of "TTLL")
SIGNAL_CODES = {"01": "台风", "02": "暴雨", "03": "暴雪", "04": "寒潮", "05": "大风", "06": "沙尘暴",
                "07": "高温", "08": "干旱", "09": "雷电", "10": "冰雹", "11": "霜冻", "12": "大雾",
                "13": "霾", "14": "道路结冰"}
LEVEL_CODES = {"01": "blue", "02": "yellow", "03": "orange", "04": "red"}
# Roman level names used beside colours ("III级/较重")
LEVEL_NAMES = {"IV": "blue", "Ⅳ": "blue", "III": "yellow", "Ⅲ": "yellow", "II": "orange", "Ⅱ": "orange",
               "I": "red", "Ⅰ": "red"}
# other names a feed may use for the same signal
ALIASES = {"雷暴大风": "雷雨大风", "雷雨": "雷雨大风", "雾": "大雾", "冰冻": "道路结冰", "道路冰冻": "道路结冰",
           "沙尘": "沙尘暴", "低温": "寒潮", "雪": "暴雪", "灰霾": "霾"}


def colours_of(signal: str) -> tuple[str, ...]:
    return SIGNALS.get(signal, ())


def has_colour(signal: str, colour: str) -> bool:
    return signal == NOTICE or colour in SIGNALS.get(signal, ())


def signal_in(text: str) -> str | None:
    """The signal a text names ("番禺区气象台发布雷雨大风黄色预警" -> 雷雨大风), longest name first."""
    names = sorted(list(SIGNALS) + list(ALIASES), key=len, reverse=True)
    for name in names:
        if name != "其他" and name in text:
            return ALIASES.get(name, name)
    return None


def from_code(code: str) -> tuple[str | None, str | None]:
    """(signal, colour) from a CMA "TTLL" code such as "0902" (雷电 yellow); (None, None) if not one."""
    code = (code or "").strip()
    if len(code) == 4 and code.isdigit():
        return SIGNAL_CODES.get(code[:2]), LEVEL_CODES.get(code[2:])
    return None, None
