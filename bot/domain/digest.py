"""Quiet chats: low-urgency notices to one person become one digest per interval, and nobody gets
more than a set number of non-reply messages an hour (issue #13 item 4).

A notice goes one of three ways (`notify`):
- at once, as its own message: urgent ones (an urgent request, a cry for help), and ordinary
  ones while the person is under their hourly cap;
- held for the person's next digest: a reminder (`always_digest`) when the person already has
  notices waiting or was sent any non-reply message within the digest interval (so the first
  reminder of a quiet spell goes at once and a burst becomes that one plus a digest), and any
  non-urgent notice once the person has had `cap_per_hour` non-reply messages in the last hour
  (replies to their own commands never count and are never held);
- nowhere, when the person has no WeChat contact (their lead sees the request on the board).

A held notice is a `digest_items` row keyed by the send key it would have had, so holding it
twice is a no-op. A person's digest is due `interval` after their oldest waiting notice; it is
one outbox row (purpose 'digest') written in the same transaction that marks its notices
folded: a restart or a second run neither loses nor repeats one. This module is a Timers source
(`next_due_at`, `run_due`), listed in bot/app.py.

Settings ([quiet], read with defaults until bot/core/config.py has the section):
digest_interval_min (15; 0 = no digests: reminders go one by one), cap_per_hour (20; 0 = no cap),
digest_max_lines (20: the rest is counted, not listed; the message also stays under the
platform's 2,048-byte text limit).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from bot.core import texts
from bot.data import digest as rows
from bot.data import people
from bot.data import sends as sends_data
from bot.domain.ports import Deps

log = logging.getLogger("linli.digest")

SENT, HELD, ALREADY, UNREACHABLE = "sent", "held", "already", "unreachable"
PURPOSE = "digest"
HOUR_S = 3600.0
# a text message may be 2,048 bytes (WeCom message/send and the robot webhook); leave room
MAX_TEXT_BYTES = 1900
DEFAULTS = {"digest_interval_min": 15.0, "cap_per_hour": 20, "digest_max_lines": 20}


@dataclass(frozen=True)
class Quiet:
    interval_s: float  # 0: digests are off (reminders go one by one)
    cap_per_hour: int  # 0: no cap
    max_lines: int

    @property
    def window_s(self) -> float:
        """How long a held notice waits: the digest interval, or an hour when digests are off
        and the notice was held only because of the cap."""
        return self.interval_s if self.interval_s > 0 else HOUR_S


def quiet(settings: Any) -> Quiet:
    """The [quiet] settings. A negative or non-numeric value is a configuration error
    (ValueError naming the key), not silently read as "off"."""
    section = getattr(settings, "quiet", None)
    vals = {}
    for name, default in DEFAULTS.items():
        raw = getattr(section, name, default) if section is not None else default
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"[quiet] {name} must be a number, not {raw!r}") from None
        if v < 0 or v != v:
            raise ValueError(f"[quiet] {name} must be 0 or more, not {raw!r}")
        vals[name] = v
    if vals["digest_max_lines"] < 1:
        raise ValueError("[quiet] digest_max_lines must be at least 1")
    return Quiet(vals["digest_interval_min"] * 60.0, int(vals["cap_per_hour"]),
                 int(vals["digest_max_lines"]))


def notify(deps: Deps, person: Mapping[str, Any], template: str, key: str, *, kind: str,
           line: str, urgent: bool = False, always_digest: bool = False, ref_id: int | None = None,
           via: tuple[str, str] | None = None, purpose: str = "notice", now: float | None = None,
           **context) -> str:
    """Send a notice now or hold it for the person's digest (see the module doc). `key` makes it
    once-only whichever way it goes; `line` is what the digest lists for it; `now` is the time
    of the act (a reminder run with an injected time), the clock's by default. Returns SENT,
    HELD, ALREADY (this key was sent or held before) or UNREACHABLE."""
    where = via or deps.reach.person(person)
    if where is None:
        log.info("%s has no WeChat contact; %s not sent", person.get("id"), template)
        return UNREACHABLE
    store = deps.store
    now = deps.clock.now() if now is None else now
    if rows.is_held(store, key) or sends_data.exists(store, key):
        return ALREADY
    q = quiet(deps.settings)
    hold = False
    if not urgent:
        if always_digest and q.interval_s > 0:
            # the first of a burst goes at once (one overdue request is not made later still);
            # what follows within the interval waits for the digest
            hold = rows.has_waiting(store, where[0], where[1]) or \
                sends_data.sent_to_since(store, where[0], where[1], now - q.interval_s) > 0
        if not hold and q.cap_per_hour > 0:
            hold = sends_data.sent_to_since(store, where[0], where[1], now - HOUR_S) >= q.cap_per_hour
    if hold:
        first = rows.oldest_waiting(store) is None
        rows.hold(store, key=key, person_id=person.get("id"), channel=where[0], target=where[1],
                  kind=kind, ref_id=ref_id, line=line, now=now)
        if first:  # the earliest digest time can only move when nothing else was waiting
            deps.timers.rearm()
        return HELD
    text = texts.render(template, person=person, **context)
    deps.outbox.enqueue(key, where[0], where[1], {"text": text}, purpose=purpose)
    return SENT


# -- the timer source ------------------------------------------------------------------------
def next_due_at(deps: Deps) -> float | None:
    """When the next digest falls due (possibly in the past), or None if nothing is held."""
    oldest = rows.oldest_waiting(deps.store)
    return None if oldest is None else oldest + quiet(deps.settings).window_s


async def run_due(deps: Deps, now: float | None = None) -> dict:
    """Send every digest that is due; safe to call any number of times."""
    now = deps.clock.now() if now is None else now
    q = quiet(deps.settings)
    sent = 0
    for channel, target in rows.due_targets(deps.store, now - q.window_s):
        try:
            sent += send_digest(deps, channel, target, now, q)
        except Exception:  # one person's digest must not hold back the others'
            log.exception("digest to %s %s failed", channel, target)
    if sent:
        deps.outbox.kick()
    return {"digests": sent}


def send_digest(deps: Deps, channel: str, target: str, now: float, q: Quiet | None = None) -> int:
    """Fold everything waiting for (channel, target) into one outbox row. Returns 1 if a digest
    was written, 0 if nothing was waiting (another run took it)."""
    q = q or quiet(deps.settings)
    store = deps.store
    with store.transaction():
        items = rows.waiting_for(store, channel, target)
        if not items:
            return 0
        key = f"digest:{channel}:{target}:{items[0]['id']}"
        person = people.get(store, items[0]["person_id"]) if items[0]["person_id"] else None
        text = render(items, q.max_lines, person=person,
                      minutes=max(1, round((now - items[0]["created_at"]) / 60)))
        deps.outbox.enqueue(key, channel, target, {"text": text}, purpose=PURPOSE)
        folded = rows.fold(store, [i["id"] for i in items], key)
        store.log(now, "digest.sent", "digest", items[0]["id"], channel=channel,
                  target=target[:200], items=folded)
    return 1


def render(items: list[dict], max_lines: int, **context) -> str:
    """The digest text: notices grouped by kind in the order they were held, at most
    `max_lines` listed and the text under MAX_TEXT_BYTES; the rest counted."""
    order: list[str] = []
    for i in items:
        if i["kind"] not in order:
            order.append(i["kind"])
    ranked = sorted(items, key=lambda i: order.index(i["kind"]))
    shown = min(len(ranked), max_lines)
    while True:
        groups = []
        for kind in order:
            lines = [i["line"] for i in ranked[:shown] if i["kind"] == kind]
            total = sum(1 for i in items if i["kind"] == kind)
            if lines or total:
                groups.append({"kind": kind, "lines": lines, "total": total})
        text = texts.render("messages/digest.j2", groups=groups, total=len(items),
                            more=len(items) - shown, **context)
        if len(text.encode("utf-8")) <= MAX_TEXT_BYTES or shown == 0:
            return text
        shown -= 1
