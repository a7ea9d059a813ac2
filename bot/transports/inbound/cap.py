"""CAP 1.2 (OASIS Common Alerting Protocol) as a weather service sends it: XML in, a CapMessage out.

China's national early-warning release system (国家突发事件预警信息发布系统, 12379) and the
meteorological bureaus publish warnings in a CAP profile. This module only reads the format; what
a message means here (status, references, areas, onset) is bot.domain.feed's business.

Reading rules:
- namespaces are dropped (cap:info and a default namespace read the same); entity declarations are
  refused (no billion laughs, no external entities); 256 KiB at most;
- of several <info> blocks the zh-CN one (then any zh-*, then the first) is used;
- the signal and colour come from the signal's own code where present (eventCode or parameter
  value "TTLL", the CMA numbering: "0902" = 雷电 yellow), then a colour parameter, then the FINAL
  colour the headline states ("…黄色预警信号升级为橙色" is orange), then the event/description
  text, and only then <severity> (Minor blue, Moderate yellow, Severe orange, Extreme red).
"""
from __future__ import annotations

import datetime as dt
import re

import xmltodict

from bot.core import texts
from bot.domain import feed, signals
from bot.domain.alerts import AlertError
from bot.domain.feed import CapArea, CapMessage, FeedOutcome

SEVERITY_COLOUR = {"minor": "blue", "moderate": "yellow", "severe": "orange", "extreme": "red"}
STATUSES = ("actual", "exercise", "system", "test", "draft")
MSG_TYPES = ("alert", "update", "cancel", "ack", "error")
MAX_BYTES = 256 * 1024
_COLOUR_WORDS = re.compile("|".join(texts.COLOUR_ZH.values()))
_COLOUR_PARAM = re.compile(r"colou?r|level|颜色|级别|等级|signal", re.I)
_EN_COLOUR = {"blue": "blue", "yellow": "yellow", "orange": "orange", "red": "red"}


def _strip(d):
    """Drop namespace prefixes (cap:info -> info) so both prefixed and default-namespace files read."""
    if isinstance(d, dict):
        return {k.split(":")[-1]: _strip(v) for k, v in d.items() if not k.startswith("@xmlns")}
    if isinstance(d, list):
        return [_strip(x) for x in d]
    return d


def _list(v) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _text(v) -> str:
    if isinstance(v, dict):
        v = v.get("#text", "")
    return str(v or "").strip()


def _pairs(v) -> list[tuple[str, str]]:
    out = []
    for p in _list(v):
        if isinstance(p, dict):
            out.append((_text(p.get("valueName")), _text(p.get("value"))))
    return out


def _time(v, what: str) -> float | None:
    s = _text(v)
    if not s:
        return None
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        raise AlertError("bad_cap", value=f"bad <{what}>") from None
    if t.tzinfo is None:
        raise AlertError("bad_cap", value=f"<{what}> without a time zone")
    return t.timestamp()


def _pick_info(infos: list[dict]) -> dict:
    def rank(info: dict) -> int:
        lang = _text(info.get("language")).lower()
        return 0 if lang in ("zh-cn", "zh-hans-cn") else 1 if lang.startswith("zh") else 2
    return sorted(infos, key=rank)[0]


def colour_from_words(text: str) -> str | None:
    """The final colour a sentence states: "黄色预警信号升级为橙色" -> orange."""
    found = _COLOUR_WORDS.findall(text or "")
    return texts.COLOUR_FROM_ZH[found[-1]] if found else None


def _colour_from_value(v: str) -> str | None:
    v = v.strip()
    if v.lower() in _EN_COLOUR:
        return _EN_COLOUR[v.lower()]
    if v in signals.LEVEL_NAMES or v.removesuffix("级") in signals.LEVEL_NAMES:
        return signals.LEVEL_NAMES.get(v, signals.LEVEL_NAMES.get(v.removesuffix("级")))
    return colour_from_words(v) or (texts.COLOUR_FROM_ZH.get(v) if v else None)


def parse(xml: bytes | str) -> CapMessage:
    """Read one CAP 1.2 message. Raises AlertError('bad_cap', value=why) on anything else."""
    if len(xml) > MAX_BYTES:
        raise AlertError("bad_cap", value="too large")
    try:
        # xmltodict refuses entity declarations (no billion laughs, no external entities)
        doc = _strip(xmltodict.parse(xml, disable_entities=True))
    except Exception as e:  # expat errors, entity refusals
        raise AlertError("bad_cap", value=type(e).__name__) from None
    alert = doc.get("alert") if isinstance(doc, dict) else None
    if not isinstance(alert, dict):
        raise AlertError("bad_cap", value="no <alert>")
    status = _text(alert.get("status")).lower() or "actual"
    msg_type = _text(alert.get("msgType")).lower() or "alert"
    if status not in STATUSES:
        raise AlertError("bad_cap", value=f"status {status}")
    if msg_type not in MSG_TYPES:
        raise AlertError("bad_cap", value=f"msgType {msg_type}")
    refs = []
    for ref in _text(alert.get("references")).split():
        parts = ref.split(",")
        if len(parts) != 3:
            raise AlertError("bad_cap", value=f"bad reference {ref}")
        refs.append((parts[0], parts[1], parts[2]))
    m = CapMessage(identifier=_text(alert.get("identifier")), sender=_text(alert.get("sender")),
                   sent=_text(alert.get("sent")), sent_at=_time(alert.get("sent"), "sent"), status=status,
                   msg_type=msg_type, refs=refs)
    if not m.identifier:
        raise AlertError("bad_cap", value="no <identifier>")
    infos = [i for i in _list(alert.get("info")) if isinstance(i, dict)]
    if not infos:
        if msg_type in ("ack", "error", "cancel") or status not in ("actual", "exercise"):
            return m  # nothing to relay: an info block is optional there
        raise AlertError("bad_cap", value="no <info>")
    info = _pick_info(infos)
    m.language = _text(info.get("language"))
    m.event, m.headline = _text(info.get("event")), _text(info.get("headline"))
    m.text, m.instruction = _text(info.get("description")), _text(info.get("instruction"))
    m.sender_name = _text(info.get("senderName")) or m.sender
    m.severity, m.urgency = _text(info.get("severity")), _text(info.get("urgency"))
    m.certainty = _text(info.get("certainty"))
    m.event_codes, m.parameters = _pairs(info.get("eventCode")), _pairs(info.get("parameter"))
    m.onset, m.effective = _time(info.get("onset"), "onset"), _time(info.get("effective"), "effective")
    m.expires = _time(info.get("expires"), "expires")
    for a in _list(info.get("area")):
        if isinstance(a, dict):
            m.areas.append(CapArea(desc=_text(a.get("areaDesc")), geocodes=_pairs(a.get("geocode")),
                                   polygons=[_text(p) for p in _list(a.get("polygon"))],
                                   circles=[_text(c) for c in _list(a.get("circle"))]))
    m.type, m.colour = _signal_and_colour(m)
    return m


def _signal_and_colour(m: CapMessage) -> tuple[str, str | None]:
    signal = colour = None
    for _, value in m.event_codes + m.parameters:  # the signal's own code: "0902"
        s, c = signals.from_code(value)
        if s:
            signal, colour = signal or s, colour or c
    if colour is None:
        for name, value in m.parameters:
            if _COLOUR_PARAM.search(name):
                colour = _colour_from_value(value)
                if colour:
                    break
    signal = signal or signals.signal_in(m.event) or signals.signal_in(m.headline) or "其他"
    colour = (colour or colour_from_words(m.headline) or colour_from_words(m.event)
              or colour_from_words(m.text[:200]) or SEVERITY_COLOUR.get(m.severity.lower()))
    return signal, colour


def receive(deps, xml: bytes | str, *, issuer_id: int | None = None) -> FeedOutcome:
    """Parse and act: the one function the push endpoint and `linli alert ingest` call."""
    m = parse(xml)
    return feed.receive(deps, m, xml if isinstance(xml, str) else xml.decode("utf-8", "replace"),
                        issuer_id=issuer_id)

