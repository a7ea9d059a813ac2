"""Acknowledgements: one act, `acknowledge`, for every door — a chat reply, the signed link, a
poll answer, a lead's 代确认 for a neighbour without a phone, a social worker's visit.

Its rules hold wherever the answer comes from:
- an answer is 'ok' (a plain acknowledgement, shown as 已确认), 'safe' (the poll's 平安) or 'help'
  (需要帮助). A plain ack is never called 平安: only a person answering a poll says they are safe;
- "需要帮助" opens the same urgent request from every door;
- an answer can be changed from any door; the change is a new row and an event;
- with no warning named, a plain ack acknowledges every live warning covering the household, a
  poll answer goes to the newest warning whose poll is open;
- a lifted or expired warning, or a household outside its scope, records nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.core import vocabulary
from bot.data import acks as acks_db
from bot.data import alerts as alerts_db
from bot.data import org
from bot.data import people as people_db
from bot.domain import requests as requests_mod
from bot.domain.coverage import coverage  # noqa: F401  (re-exported)
from bot.domain.ports import Deps
from bot.domain.status import is_live

_PUNCT = " \t\r\n，,。.！!、~～;；:："
_cache: tuple[int, dict] | None = None


def _words() -> dict:
    """The reply words (bot/core/vocabulary.toml [replies], extended by config) and the pattern
    built from them, rebuilt when the config adds words."""
    global _cache
    if _cache is None or _cache[0] != vocabulary.version():
        ack = vocabulary.words("replies.ack")
        pattern = re.compile(
            r"^(?P<ack>" + "|".join(re.escape(w) for w in sorted(ack, key=len, reverse=True)) + r")"
            r"(?P<tail>(?:[" + re.escape(_PUNCT) + r"]|谢谢|了|啦)*)(?P<rest>.*)$", re.S | re.I)
        _cache = (vocabulary.version(), {"ack": ack, "safe": vocabulary.words("replies.safe"),
                                          "help": vocabulary.words("replies.help"),
                                          "thanks": vocabulary.words("replies.thanks"), "re": pattern})
    return _cache[1]


DOORS = ("wecom", "oa", "link", "proxy", "visit", "dashboard")


def parse_reply(text: str) -> tuple[str, str] | None:
    """('ok'|'safe'|'help', rest) for an acknowledging reply, None otherwise. 'safe' is a poll's "1"
    or "平安"; `rest` is whatever the resident asked for in the same message
    ("收到，地下车库进水了" -> ('ok', '地下车库进水了'))."""
    t = text.strip()
    if not t:
        return None
    if re.match(r"^[2２](?:$|[" + re.escape(_PUNCT) + "])", t):
        return "help", t[1:].strip(_PUNCT)
    words = _words()
    if any(w in t for w in words["help"]):
        return "help", t
    m = words["re"].match(t)
    if m is None:
        return None
    rest = m.group("rest").strip(_PUNCT)
    if rest.strip(_PUNCT) in words["thanks"]:
        rest = ""
    if m.group("ack") in ("好", "嗯", "1", "１") and rest and not m.group("tail"):
        return None  # "好多水" / "1栋漏水" are not acknowledgements
    return ("safe" if m.group("ack") in words["safe"] else "ok"), rest


@dataclass
class Acked:
    alert: dict
    answer: str
    changed: bool = False
    duplicate: bool = False
    ack_id: int | None = None


@dataclass
class AckOutcome:
    acked: list[Acked] = field(default_factory=list)
    request_id: int | None = None
    refused: str | None = None  # 'ended', 'out_of_scope', 'no_alert'

    @property
    def new(self) -> list[Acked]:
        return [a for a in self.acked if not a.duplicate]

    @property
    def changed(self) -> bool:
        return any(a.changed for a in self.acked)


def _answer_for(alert: dict, kind: str) -> str:
    if kind == "help":
        return "help"
    return "safe" if kind == "safe" and alert["poll"] else "ok"


def _targets(deps: Deps, household_id: int, kind: str) -> list[dict]:
    live = alerts_db.live_for_household(deps.store, household_id, deps.clock.now())
    real = [a for a in live if a.get("status", "actual") != "exercise"]
    live = real or live  # a real warning during a drill takes the reply words
    if kind in ("safe", "help"):
        polls = [a for a in live if a["poll"]]
        if polls:
            return polls[:1]
        if kind == "help":
            return live[:1]
    return live


def acknowledge(deps: Deps, *, household_id: int, door: str, kind: str = "ok", alert_id: int | None = None,
                resident: dict | None = None, proxy: dict | None = None, raw: str = "", ask: str = "",
                request_key: str | None = None) -> AckOutcome:
    """Record a household's answer. `kind` is what was said ('ok', 'safe', 'help'); `alert_id` names
    the warning (the link does; chat does not); `resident` answered for themselves, `proxy` (a lead,
    a social worker) for the household; `ask` is anything the answer also asked for (it becomes a
    request, urgent with 'help')."""
    store, now = deps.store, deps.clock.now()
    out = AckOutcome()
    if alert_id is not None:
        alert = alerts_db.get(store, alert_id)
        if alert is None:
            out.refused = "no_alert"
            return out
        if not alerts_db.covers(store, alert_id, household_id):
            out.refused = "out_of_scope"
            return out
        if door != "visit" and not is_live(alert, now):  # a visit is a fact whenever it is told
            out.refused = "ended"
            return out
        targets = [alert]
    else:
        targets = _targets(deps, household_id, kind)
        if not targets:
            out.refused = "no_alert"
            return out
    if kind == "help" or ask:
        who = resident or _speaker_for(store, household_id)
        if who is not None:
            text = ask or raw or "需要帮助"
            if proxy is not None and not ask:
                text = f"{raw}"
            req = requests_mod.file_request(deps, resident=who, text=text, alert_id=targets[0]["id"],
                                            force_urgent=kind == "help", key=request_key)
            out.request_id = req["id"] if req else None
    for alert in targets:
        answer = _answer_for(alert, kind)
        last = (acks_db.last_of_resident(store, alert["id"], resident["id"]) if resident is not None
                else acks_db.last_of_household(store, alert["id"], household_id))
        if last is not None and last["answer"] == answer and out.request_id is None:
            out.acked.append(Acked(alert, answer, duplicate=True, ack_id=last["id"]))
            continue
        household_last = acks_db.last_of_household(store, alert["id"], household_id)
        changed = household_last is not None and household_last["answer"] != answer
        actor = proxy["id"] if proxy is not None else (resident["id"] if resident is not None else None)
        with store.transaction():
            ack_id = acks_db.insert(store, alert_id=alert["id"], household_id=household_id,
                                    resident_id=resident["id"] if resident is not None else None, channel=door,
                                    proxy_id=proxy["id"] if proxy is not None else None, answer=answer,
                                    at=now, raw=raw, request_id=out.request_id)
            store.log(now, "ack.changed" if changed else "ack", "alert", alert["id"], actor,
                      household_id=household_id, channel=door, answer=answer, proxy=proxy is not None,
                      **({"before": household_last["answer"]} if changed else {}))
        out.acked.append(Acked(alert, answer, changed=changed, ack_id=ack_id))
    return out


def _speaker_for(store, household_id: int) -> dict | None:
    """Who a request from a household's link is filed for: a member, preferring one on WeChat."""
    members = people_db.in_households(store, [household_id])
    members.sort(key=lambda p: (not (p.get("wecom_userid") or p.get("oa_openid")), p["id"]))
    return members[0] if members else None


def household_answer(deps: Deps, alert_id: int, household_id: int) -> dict | None:
    """The household's current answer to a warning (its newest ack), or None."""
    return acks_db.last_of_household(deps.store, alert_id, household_id)


def find_household(store, text: str, building_ids: list[int]) -> list[dict]:
    return acks_db.find_household(store, text, building_ids)


def record_ack(deps: Deps, *, alert: dict, household_id: int, resident_id: int | None, channel: str,
               answer: str = "ok", raw: str = "", proxy_id: int | None = None,
               request_id: int | None = None) -> dict:
    """Low-level: log one ack row for a known alert (tests and simulations). Doors use acknowledge()."""
    store, now = deps.store, deps.clock.now()
    with store.transaction():
        ack_id = acks_db.insert(store, alert_id=alert["id"], household_id=household_id, resident_id=resident_id,
                                channel=channel, proxy_id=proxy_id, answer=answer, at=now, raw=raw,
                                request_id=request_id)
        store.log(now, "ack", "alert", alert["id"], proxy_id or resident_id, household_id=household_id,
                  channel=channel, answer=answer, proxy=proxy_id is not None)
    return acks_db.get(store, ack_id)


def live_alerts(deps: Deps, household_id: int) -> list[dict]:
    return alerts_db.live_for_household(deps.store, household_id, deps.clock.now())


RECENT_S = 24 * 3600


def recently_ended(deps: Deps, household_id: int) -> dict | None:
    """The newest warning for this household that ended (lifted, expired) within a day, if any:
    a late "收到" is told it has ended rather than that there was none."""
    return alerts_db.recently_ended_for_household(deps.store, household_id, deps.clock.now(), RECENT_S)


def all_buildings(store) -> list[int]:
    return org.buildings_under(store, [])


def household(deps: Deps, household_id: int) -> dict | None:
    return people_db.household(deps.store, household_id)


def covers(deps: Deps, alert_id: int, household_id: int) -> bool:
    return alerts_db.covers(deps.store, alert_id, household_id)
