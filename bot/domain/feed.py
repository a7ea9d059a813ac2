"""Warnings from a weather service (CAP 1.2): what each message means here, acted on once.

The CAP transport (bot/transports/inbound/cap.py) reads the XML into a `CapMessage`; `receive` is
the one act every feed door calls (the push endpoint, `linli alert ingest`). Rules, from the OASIS
CAP 1.2 standard as China's early-warning release system uses it:

- status: Actual → a warning; Exercise → a drill (marked 【演练】, counted apart); Test, Draft and
  System → recorded and shown to staff, never relayed. msgType Ack and Error → recorded.
- Alert issues; Update and Cancel act on the warning their <references> name. A reference Linli
  does not know is refused with the reason, and remembered: an Alert arriving after its own Cancel
  (out of order) is not relayed.
- The same message twice (sender, identifier, sent) is a duplicate: nothing happens again.
- <area>: areaDesc / geocode values are looked up in the office's mapping ([cap] areas: a key maps
  to "*" for the whole community, to grid/compound/building names for a part, or to [] for
  "outside this community"); an areaDesc that names a place in the register maps to it. Areas
  outside → not relayed, staff told. An area nobody mapped → held for staff to decide, never
  silently community-wide. A message with no area at all is held too.
- A future onset schedules the relay for that time (the timer releases it); an expired message is
  refused.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

from bot.core import texts
from bot.data import alerts as alerts_db
from bot.data import cap as cap_db
from bot.data import org
from bot.data import people as people_db
from bot.domain import alerts
from bot.domain.alerts import AlertError, Draft
from bot.domain.ports import Deps

log = logging.getLogger("linli.feed")

RELAYED_STATUSES = ("actual", "exercise")
ONSET_SLACK_S = 60  # an onset this close is "now"


@dataclass
class CapArea:
    desc: str = ""
    geocodes: list[tuple[str, str]] = field(default_factory=list)
    polygons: list[str] = field(default_factory=list)
    circles: list[str] = field(default_factory=list)


@dataclass
class CapMessage:
    identifier: str
    sender: str
    sent: str
    sent_at: float | None
    status: str  # actual / exercise / system / test / draft (lower-cased)
    msg_type: str  # alert / update / cancel / ack / error
    refs: list[tuple[str, str, str]] = field(default_factory=list)
    type: str = "其他"
    colour: str | None = None
    event: str = ""
    event_codes: list[tuple[str, str]] = field(default_factory=list)
    severity: str = ""
    urgency: str = ""
    certainty: str = ""
    onset: float | None = None
    effective: float | None = None
    expires: float | None = None
    headline: str = ""
    text: str = ""
    instruction: str = ""
    sender_name: str = ""
    language: str = ""
    parameters: list[tuple[str, str]] = field(default_factory=list)
    areas: list[CapArea] = field(default_factory=list)

    @property
    def refs_text(self) -> str:
        return " ".join(",".join(r) for r in self.refs)


@dataclass
class FeedOutcome:
    outcome: str  # relayed, updated, lifted, recorded, refused, held, scheduled, duplicate, cancelled, outside
    alert_id: int | None = None
    reason: str = ""
    cap_id: int | None = None


def _area_map(deps: Deps) -> dict[str, list[str]]:
    cap = getattr(deps.settings, "cap", None)
    return dict(getattr(cap, "areas", {}) or {})


def map_areas(deps: Deps, areas: list[CapArea]) -> tuple[list[int] | None, list[str], list[str]]:
    """(node ids — [] for the whole community — or None when nothing here is covered,
    areas outside, areas nobody mapped)."""
    mapping, store = _area_map(deps), deps.store
    whole, nodes, outside, unknown = False, [], [], []
    for a in areas:
        keys = [v for _, v in a.geocodes if v] + ([a.desc] if a.desc else [])
        hit = next((mapping[k] for k in keys if k in mapping), None)
        if isinstance(hit, str):
            hit = [hit]  # "番禺区" = "*" reads as ["*"]
        if hit is None:
            place = org.find_place(store, a.desc) if a.desc else None
            hit = [place["path"]] if place is not None else None
        if hit is None:
            unknown.append(a.desc or ",".join(v for _, v in a.geocodes) or "（无描述）")
        elif not hit:
            outside.append(a.desc or ",".join(v for _, v in a.geocodes))
        elif "*" in hit:
            whole = True
        else:
            for name in hit:
                place = org.find_place(store, name)
                if place is None:
                    unknown.append(f"{a.desc}→{name}")
                else:
                    nodes.append(place["id"])
    if whole:
        return [], outside, unknown
    return (sorted(set(nodes)) if nodes else None), outside, unknown


def receive(deps: Deps, m: CapMessage, raw: str = "", *, issuer_id: int | None = None) -> FeedOutcome:
    """Act on one CAP message, once. Every outcome is recorded in cap_messages."""
    store, now = deps.store, deps.clock.now()
    seen = cap_db.find(store, m.sender, m.identifier, m.sent)
    if seen is not None:
        return FeedOutcome("duplicate", seen["alert_id"], "同一条消息已经收到过", seen["id"])
    out = _decide(deps, m, issuer_id)
    fields = asdict(m) if out.outcome in ("held", "scheduled") else None
    with store.transaction():
        out.cap_id = cap_db.record(
            store, sender=m.sender, identifier=m.identifier, sent=m.sent, status=m.status, msg_type=m.msg_type,
            refs=m.refs_text, outcome=out.outcome, reason=out.reason, alert_id=out.alert_id, received_at=now,
            raw=raw if isinstance(raw, str) else raw.decode("utf-8", "replace"), fields=fields,
            due_at=m.onset if out.outcome == "scheduled" else None)
        store.log(now, f"cap.{out.outcome}", "alert", out.alert_id, issuer_id, identifier=m.identifier,
                  sender=m.sender, msg_type=m.msg_type, status=m.status, reason=out.reason)
    if out.outcome in ("held", "outside", "refused", "scheduled", "cancelled"):
        _tell_staff(deps, m, out)
    if out.outcome == "scheduled":
        deps.timers.rearm()
    return out


def _decide(deps: Deps, m: CapMessage, issuer_id: int | None) -> FeedOutcome:
    now = deps.clock.now()
    if m.status not in RELAYED_STATUSES:
        return FeedOutcome("recorded", reason=f"status {m.status}：测试、草稿或系统消息，不转发")
    if m.msg_type in ("ack", "error"):
        return FeedOutcome("recorded", reason=f"msgType {m.msg_type}：回执或错误消息，不转发")
    if m.expires is not None and m.expires <= now:
        return FeedOutcome("refused", reason="已过期")
    if m.msg_type == "alert":
        cancelled = _cancelled_before(deps, m)
        if cancelled:
            return FeedOutcome("cancelled", reason="这条预警的撤销消息先到了，不再转发")
        return _issue(deps, m, issuer_id)
    return _follow(deps, m, issuer_id)


def _cancelled_before(deps: Deps, m: CapMessage) -> bool:
    """A Cancel for this identifier came first (refused then as an unknown reference)."""
    return cap_db.cancelled_before(deps.store, m.sender, m.identifier)


def _issue(deps: Deps, m: CapMessage, issuer_id: int | None) -> FeedOutcome:
    if m.colour is None and m.type != alerts.NOTICE:
        return FeedOutcome("refused", reason="没有颜色，也没有可换算的严重程度")
    scope, outside, unknown = map_areas(deps, m.areas)
    if not m.areas:
        return FeedOutcome("held", reason="消息没有写区域，请工作人员确认范围后发布")
    if scope is None:
        if unknown:
            return FeedOutcome("held", reason="区域无法对应到本社区：" + "、".join(unknown) + "，请工作人员决定")
        return FeedOutcome("outside", reason="区域不在本社区：" + "、".join(outside))
    if m.onset is not None and m.onset > deps.clock.now() + ONSET_SLACK_S:
        return FeedOutcome("scheduled", reason=f"生效时间未到，将于{_hhmm(deps, m.onset)}发出")
    try:
        alert_id = alerts.issue(deps, _draft(deps, m, scope, issuer_id))
    except AlertError as e:
        return FeedOutcome("refused", reason=_why(e))
    reason = ("部分区域无法对应，未发送：" + "、".join(unknown)) if unknown else ""
    return FeedOutcome("relayed", alert_id, reason)


def _draft(deps: Deps, m: CapMessage, scope: list[int], issuer_id: int | None) -> Draft:
    now = deps.clock.now()
    expires_h = (m.expires - now) / 3600 if m.expires else None
    return Draft(type=m.type, colour=m.colour or "blue", text=m.text, scope=scope, expires_h=expires_h,
                 issuer_id=issuer_id, status="exercise" if m.status == "exercise" else "actual")


def _current(store, alert_id: int | None) -> dict | None:
    """The newest warning in the chain that starts at alert_id (updates supersede)."""
    if alert_id is None:
        return None
    alert = alerts_db.get(store, alert_id)
    while alert is not None:
        nxt = alerts_db.successor(store, alert["id"])
        if nxt is None:
            return alert
        alert = nxt
    return None


def _follow(deps: Deps, m: CapMessage, issuer_id: int | None) -> FeedOutcome:
    store = deps.store
    if not m.refs:
        return FeedOutcome("refused", reason=f"{m.msg_type} 消息没有 <references>，不知道要更新哪条预警")
    target = None
    for sender, identifier, sent in reversed(m.refs):
        target = cap_db.find(store, sender, identifier, sent) or cap_db.find(store, sender, identifier)
        if target is not None:
            break
    if target is None:
        names = "；".join(",".join(r) for r in m.refs)
        return FeedOutcome("refused", reason=f"引用的预警没有收到过：{names}")
    if target["outcome"] in ("scheduled", "held"):
        # not relayed yet: a Cancel withdraws it; an Update replaces it
        cap_db.set_outcome(store, target["id"], "cancelled", "被后来的消息撤销或替换")
        if m.msg_type == "cancel":
            return FeedOutcome("recorded", reason="撤销了一条尚未发出的预警")
        return _issue(deps, m, issuer_id)
    current = _current(store, target["alert_id"])
    if current is None:
        return FeedOutcome("refused", reason=f"引用的消息没有发出过预警（{target['outcome']}）")
    if current["state"] != "active" or current["action"] == "lift":
        return FeedOutcome("refused", reason=f"引用的预警 #{current['id']} 已经结束")
    try:
        if m.msg_type == "cancel":
            return FeedOutcome("lifted", alerts.follow_on(deps, current["id"], "lift", text=m.text, issuer_id=issuer_id))
        colour = m.colour or current["colour"]
        new = alerts.follow_on(deps, current["id"], "update", colour=colour, text=m.text, issuer_id=issuer_id)
        return FeedOutcome("updated", new)
    except AlertError as e:
        return FeedOutcome("refused", reason=_why(e))


def _why(e: AlertError) -> str:
    return texts.render("messages/alert_command_error.j2", code=e.code, **e.params).strip().splitlines()[0]


def _hhmm(deps: Deps, at: float) -> str:
    from bot.core.clock import local

    return local(at, deps.settings.timezone).strftime("%m-%d %H:%M")


def _tell_staff(deps: Deps, m: CapMessage, out: FeedOutcome) -> None:
    text = texts.render("messages/cap_notice.j2", m=m, out=out)
    for p in people_db.with_role(deps.store, "staff"):
        target = deps.reach.person(p)
        if target:
            deps.outbox.enqueue(f"cap:{out.cap_id}:{p['id']}", target[0], target[1], {"text": text},
                                purpose="cap_notice")
    deps.outbox.kick()


# -- the timer: scheduled messages go out at their onset ------------------------------------------
def next_due_at(deps: Deps) -> float | None:
    return cap_db.next_scheduled(deps.store)


async def run_due(deps: Deps) -> dict:
    store, n = deps.store, 0
    for row in cap_db.scheduled_due(store, deps.clock.now()):
        m = from_fields(json.loads(row["fields"]))
        m.onset = None
        out = _decide(deps, m, None)
        with store.transaction():
            cap_db.set_outcome(store, row["id"], out.outcome, out.reason, out.alert_id)
            store.log(deps.clock.now(), f"cap.{out.outcome}", "alert", out.alert_id, None,
                      identifier=m.identifier, released=True)
        n += 1
    return {"cap_released": n}


def release(deps: Deps, cap_id: int, *, scope_words: list[str] | None = None, issuer_id: int | None = None
            ) -> FeedOutcome:
    """Staff decide on a held message: relay it to `scope_words` (empty: the whole community)."""
    store = deps.store
    row = cap_db.get(store, cap_id)
    if row is None or row["outcome"] != "held":
        raise AlertError("not_held", value=cap_id)
    m = from_fields(json.loads(row["fields"]))
    scope = alerts.resolve_scope(store, scope_words or [])
    alert_id = alerts.issue(deps, _draft(deps, m, scope, issuer_id))
    with store.transaction():
        cap_db.set_outcome(store, cap_id, "relayed", "工作人员确认后发布", alert_id)
        store.log(deps.clock.now(), "cap.released", "alert", alert_id, issuer_id, identifier=m.identifier)
    return FeedOutcome("relayed", alert_id, cap_id=cap_id)


def from_fields(d: dict) -> CapMessage:
    d = dict(d)
    d["refs"] = [tuple(r) for r in d.get("refs", [])]
    d["event_codes"] = [tuple(r) for r in d.get("event_codes", [])]
    d["parameters"] = [tuple(r) for r in d.get("parameters", [])]
    d["areas"] = [CapArea(desc=a["desc"], geocodes=[tuple(g) for g in a["geocodes"]], polygons=a["polygons"],
                          circles=a["circles"]) for a in d.get("areas", [])]
    return CapMessage(**d)


def not_relayed(deps: Deps) -> list[dict]:
    """For the dashboard page: messages that did not go out, with the reason."""
    return cap_db.not_relayed(deps.store)
