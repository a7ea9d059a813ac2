"""The people of the local world: building leads, residents and social workers from the register,
reacting to what actually reaches them (WorldState deliveries) with seeded, reproducible choices.

- a lead asked to forward does so with probability `lead_forward_probability`, after a delay in
  `lead_delay_s`, by posting into the personal group by hand (or confirming the customer-group
  send), then tells the bot "已转发";
- a resident who sees a warning (in their building group or directly) answers with probability
  `resident_reply_probability` after a delay in `resident_delay_s`: "1", "收到", …, sometimes with
  a request ("收到，地下车库进水了"), and for polls sometimes "2";
- a steward (党员中心户 / 红管家, the register's 党员中心户 column) asked to pass a warning on behaves
  like a lead: with the same probability and delay they message it to the people of the households
  they look after who are on WeChat, then tell the bot "已转发";
- a building lead (or steward) given the list of silent households confirms for neighbours without
  a phone;
- a social worker given a follow-up task visits and answers "已上门 <room> 平安".
Each choice is drawn from Random(f"{seed}:{who}:{what}"), so it does not depend on the order
in which things happen. `truth` records who received what and who said what.

By default everyone follows the config's uniform `[world]` figures. `Behaviours` gives people
their own: per account or per building (its register place "社区/网格/小区/楼栋"), a probability
of forwarding or replying and a delay distribution (a uniform range or observed samples). That is
how a drill's prediction replays a warning with people who behave as Linli's history says, and how
the drill bench seeds slow leads, absent leads and residents who never read. A social worker
with a `task_s` works through their follow-ups one at a time (a call or a visit takes that long).

`manual = True` plays the chain without Linli, the way it is done by hand: whoever sees a warning
in a group they sit in above their own forwards it into the groups they lead below (by hand,
nobody tracks), residents answer in their group, social workers call down their list.

Everything the people know comes from the register file (bot/world/register_file.py) and from
the messages that reach them; the world never looks into Linli's database.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import re
from dataclasses import dataclass, field

from bot.world.register_file import Person, RegisterFile

log = logging.getLogger("linli.world.people")

ALERT_RE = re.compile(r"【(?P<community>[^】]+)】(?P<what>\S+?预警)")
ASK_RE = re.compile(r"(?:请把下面这条(?:预警|通知)转发到|请确认发送到)「(?P<group>[^」]+)」")
FOLLOWUP_RE = re.compile(r"【一对一跟进 #(?P<id>\d+)】[\s\S]*?住址：(?P<room>\S+)")
STEWARD_ASK_RE = re.compile(r"请把下面这条(?:预警|通知)转告您联系的 \d+ 户邻居")
LEADLIST_RE = re.compile(r"还有 \d+ 户没有确认收到：\n(?P<list>.+)\n")
ACK_REPLIES = ("1", "收到", "好的", "收到，谢谢", "1", "已阅", "👍", "收到！")
REQUESTS = ("地下车库进水了", "3号楼楼道灯坏了", "楼下的树被风吹歪了，有点危险", "小区门口积水很深",
            "我家老人一个人在家，能不能来看看")


@dataclass(frozen=True)
class Delay:
    """A delay distribution in seconds: uniform over [lo, hi], or one of observed `samples`."""
    lo: float = 0.0
    hi: float = 0.0
    samples: tuple[float, ...] = ()

    def __post_init__(self):
        if self.samples:
            if any(x < 0 for x in self.samples):
                raise ValueError("delay samples must be >= 0 seconds")
        elif not 0 <= self.lo <= self.hi:
            raise ValueError(f"delay range must be 0 <= lo <= hi, got [{self.lo}, {self.hi}]")

    @classmethod
    def of(cls, value) -> "Delay":
        """A Delay from a Delay or a [lo, hi] pair of seconds (the config's form)."""
        if isinstance(value, Delay):
            return value
        if isinstance(value, (list, tuple)) and len(value) == 2 \
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return cls(float(value[0]), float(value[1]))
        raise ValueError(f"a delay is [lo, hi] seconds or Delay(samples=...), not {value!r}")

    def draw(self, rng: random.Random) -> float:
        if self.samples:
            return rng.choice(self.samples)
        return rng.uniform(self.lo, self.hi)


@dataclass(frozen=True)
class Behaviour:
    """How one person (or everyone of a building) behaves; None fields fall back to the config."""
    forward_probability: float | None = None
    forward_delay: Delay | None = None
    reply_probability: float | None = None
    reply_delay: Delay | None = None
    task_s: Delay | None = None       # a social worker: one follow-up (call/visit) takes this long

    def __post_init__(self):
        for name in ("forward_probability", "reply_probability"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {v}")


@dataclass
class Behaviours:
    """Per-person (by account) and per-building (by register place, "社区/网格/小区/楼栋")
    behaviour; a person's own entry wins over their building's, which wins over the config."""
    people: dict[str, Behaviour] = field(default_factory=dict)
    buildings: dict[str, Behaviour] = field(default_factory=dict)
    default: Behaviour = field(default_factory=Behaviour)


def place_key(place) -> str:
    return "/".join(place)


@dataclass(order=True)
class Action:
    at: float
    seq: int
    kind: str = field(compare=False)
    who: str = field(compare=False)
    data: dict = field(compare=False, default_factory=dict)


class People:
    """The register's people on the platform. `callbacks` (how they write to Linli) arrives when
    the world connects to Linli; until then they receive messages but cannot answer."""

    def __init__(self, world, register: RegisterFile, settings, callbacks=None, *, clock):
        self.world, self.register, self.cfg = world, register, settings.world
        self.seed = settings.world.seed
        self.callbacks, self.clock = callbacks, clock
        self.queue: list[Action] = []
        self._seq = itertools.count()
        self.decided: set[tuple[str, str]] = set()
        # ground truth; households are named by their label (小区楼栋单元房号), as people say them
        self.truth: dict[str, list] = {"received": [], "replies": [], "forwards": [], "proxy": [],
                                       "visits": []}
        self.person: dict[str, dict] = {}               # account -> register row (Person.as_row)
        self.households: dict[str, list[Person]] = {}   # label -> everyone living there
        self.groups_by_name: dict[str, str] = {}
        self.behaviours = Behaviours()
        self.manual = False
        self._busy_until: dict[str, float] = {}        # a serial social worker's next free time
        self._led_below: dict[str, list[str]] = {}     # manual chain: account -> chat ids it feeds
        self._places: dict[str, tuple] = {}            # account -> register place
        self._stewards: dict[str, list[str]] | None = None  # steward account -> household labels
        # how far behind the clock people act (seconds, per action): the demo's lag figure
        self.lags: list[float] = []
        self._slots: asyncio.Semaphore | None = None
        self._slots_limit = 0
        self._last_task: dict[str, asyncio.Task] = {}
        self._inflight: set[asyncio.Task] = set()
        world.subscribe(self.on_delivery)

    # -- the register becomes the world's users and groups ---------------------------------------
    def populate(self) -> None:
        for p in self.register.people:
            if p.household:
                self.households.setdefault(p.household, []).append(p)
            uid = p.uid
            if not uid:
                continue  # no WeChat: the platform does not know them; a neighbour or worker does
            self.person[uid] = p.as_row()
            self._places[uid] = p.building or p.place
            if p.wecom_userid:
                self.world.register_user(uid, p.name)
            else:
                self.world.register_openid(uid, p.name)
        for n, g in enumerate(self.register.groups, start=1):
            # a personal WeChat group has no id any API could use; the world still needs a key
            chat_id = g.chat_id or f"personal-{n}"
            self.world.add_group(chat_id, g.kind, self.register.members_of(g), owner=self.register.owner_of(g),
                                 name=g.name)
            self.groups_by_name[g.name] = chat_id

    # -- reacting to what reaches people -----------------------------------------------------------
    def _rng(self, who: str, what: str) -> random.Random:
        return random.Random(f"{self.seed}:{who}:{what}")

    def behaviour(self, who: str) -> Behaviour:
        b = self.behaviours
        own = b.people.get(who)
        if own is not None:
            return own
        place = self._places.get(who)
        return b.buildings.get(place_key(place), b.default) if place else b.default

    def _p(self, who: str, what: str) -> float:
        """The probability that `who` does `what` ('forward' or 'reply')."""
        v = getattr(self.behaviour(who), f"{what}_probability")
        if v is not None:
            return v
        return self.cfg.lead_forward_probability if what == "forward" else self.cfg.resident_reply_probability

    def _delay(self, who: str, what: str) -> Delay:
        v = getattr(self.behaviour(who), f"{what}_delay")
        return v if v is not None else Delay.of(list(self.cfg.lead_delay_s if what == "forward"
                                                     else self.cfg.resident_delay_s))

    def _later(self, who: str, what: str, delay, kind: str, **data) -> None:
        delay = Delay.of(delay)
        at = self.clock.now() + delay.draw(self._rng(who, what + ":delay"))
        self._push(at, kind, who, data)

    def _push(self, at: float, kind: str, who: str, data: dict) -> None:
        heapq.heappush(self.queue, Action(at, next(self._seq), kind, who, data))

    def _task(self, who: str, what: str, kind: str, **data) -> None:
        """A social worker's follow-up: in parallel after a lead's delay (the config's way), or,
        with a `task_s`, one after another, each taking that long."""
        task_s = self.behaviour(who).task_s
        if task_s is None:
            self._later(who, what, self._delay(who, "forward"), kind, **data)
            return
        start = max(self.clock.now(), self._busy_until.get(who, 0.0))
        done = start + task_s.draw(self._rng(who, what + ":task"))
        self._busy_until[who] = done
        self._push(done, kind, who, data)

    def on_delivery(self, d) -> None:
        recipients = [d.user] if d.user else sorted(self.world.groups[d.chat_id].members)
        m = ALERT_RE.search(d.text or "")
        for who in recipients:
            if who is None or who not in self.person:
                continue
            self.truth["received"].append((who, d.id))
            self._react(who, d, m)

    def _react(self, who: str, d, m) -> None:
        text = d.text or ""
        steward_ask = STEWARD_ASK_RE.search(text) if d.user else None
        if steward_ask:
            key = (who, f"steward:{m.group('what') if m else ''}")
            if key not in self.decided:
                self.decided.add(key)
                if self._rng(*key).random() < self._p(who, "forward"):
                    self._later(who, key[1], self._delay(who, "forward"), "steward_forward",
                                text=text.split("————————\n", 1)[-1])
            return
        ask = ASK_RE.search(text) if d.user else None
        if ask:
            key = (who, f"ask:{ask.group('group')}:{m.group('what') if m else ''}")
            if key not in self.decided:
                self.decided.add(key)
                if self._rng(*key).random() < self._p(who, "forward"):
                    self._later(who, key[1], self._delay(who, "forward"), "forward", group=ask.group("group"),
                                text=text.split("————————\n", 1)[-1])
            return
        fu = FOLLOWUP_RE.search(text) if d.user else None
        if fu:
            self._task(who, f"followup:{fu.group('id')}", "visit", room=fu.group("room"))
            return
        ll = LEADLIST_RE.search(text) if d.user else None
        if ll:
            self._later(who, f"leadlist:{d.id}", self._delay(who, "forward"), "proxy", households=ll.group("list"))
            return
        if self.manual and m and d.chat_id:
            self._manual_forward(who, d, m)
        if self.manual and m and "social_worker" in self.person[who]["roles"].split(","):
            self._manual_calls(who, m)
        person = self.person[who]
        if m and person.get("oa_openid") and "解除" not in m.group("what") and "（已解除）" not in text:
            key = (who, f"alert:{m.group('what')}")
            if key in self.decided:
                return
            self.decided.add(key)
            rng = self._rng(*key)
            if rng.random() >= self._p(who, "reply"):
                return
            poll = "2 需要帮助" in text
            reply = rng.choice(ACK_REPLIES)
            if poll and rng.random() < 0.1:
                reply = "2 家里老人行动不便，需要帮忙"
            elif rng.random() < self.cfg.request_probability:
                reply = f"收到，{rng.choice(REQUESTS)}"
            self._later(who, key[1], self._delay(who, "reply"), "reply", text=reply)

    # -- the manual chain (no Linli) ---------------------------------------------------------------
    def lead_below(self, who: str, chat_ids: list[str]) -> None:
        """Manual chain: `who` forwards what they see in a group above into these groups."""
        self._led_below.setdefault(who, []).extend(c for c in chat_ids if c not in self._led_below.get(who, []))

    def _manual_forward(self, who: str, d, m) -> None:
        for chat_id in self._led_below.get(who, []):
            if chat_id == d.chat_id:
                continue
            group = self.world.groups[chat_id]
            # the same decision and delay as when Linli asks this lead about this group
            key = (who, f"ask:{group.name}:{m.group('what')}")
            if key in self.decided:
                continue
            self.decided.add(key)
            if self._rng(*key).random() < self._p(who, "forward"):
                self._later(who, key[1], self._delay(who, "forward"), "forward", group=group.name, text=d.text)

    def _manual_calls(self, who: str, m) -> None:
        """A social worker who sees the warning calls down their list, one after another."""
        key = (who, f"calls:{m.group('what')}")
        if key in self.decided:
            return
        self.decided.add(key)
        name = self.person[who]["name"]
        for p in self.register.people:
            if p.vulnerable and p.social_worker == name and p.household:
                self._task(who, f"call:{p.household}:{p.name}", "visit", room=p.household)

    # -- acting ----------------------------------------------------------------------------------
    def next_at(self) -> float | None:
        return self.queue[0].at if self.queue else None

    async def run_until(self, t: float) -> int:
        """Carry out every action due by clock time t (in time order). Returns how many."""
        n = 0
        while self.queue and self.queue[0].at <= t:
            a = heapq.heappop(self.queue)
            await self._act(a)
            self.lags.append(max(0.0, self.clock.now() - a.at))
            n += 1
        return n

    async def start_due(self, t: float, *, limit: int = 64) -> int:
        """Start every action due by clock time t without waiting for the ones before it to finish
        (at most `limit` in flight; one person's actions still happen in their order). The
        wall-clock driver uses this: one person at a time cannot keep up with a storm of answers
        while Linli's outbox has dozens of sends in flight in the same process."""
        if self._slots is None or self._slots_limit != limit:
            self._slots, self._slots_limit = asyncio.Semaphore(limit), limit
        n = 0
        while self.queue and self.queue[0].at <= t:
            a = heapq.heappop(self.queue)
            await self._slots.acquire()
            before = self._last_task.get(a.who)
            task = asyncio.create_task(self._act_after(a, before))
            self._last_task[a.who] = task
            self._inflight.add(task)
            task.add_done_callback(self._done)
            n += 1
        return n

    async def _act_after(self, a: Action, before) -> None:
        try:
            if before is not None and not before.done():
                await asyncio.wait({before})
            await self._act(a)
            self.lags.append(max(0.0, self.clock.now() - a.at))
        finally:
            self._slots.release()

    def _done(self, task) -> None:
        self._inflight.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("a simulated person's action failed", exc_info=task.exception())

    def cancel_inflight(self) -> None:
        """Stop whatever people are in the middle of (the world is closing)."""
        for task in list(self._inflight):
            task.cancel()

    async def drain(self) -> None:
        """Wait for every started action to finish."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))

    def lag_stats(self) -> dict:
        """How late people acted behind their planned time (simulated seconds)."""
        xs = sorted(self.lags)
        if not xs:
            return {"actions": 0, "p50_s": 0.0, "p95_s": 0.0, "max_s": 0.0}
        return {"actions": len(xs), "p50_s": xs[len(xs) // 2], "p95_s": xs[min(len(xs) - 1, int(0.95 * len(xs)))],
                "max_s": xs[-1]}

    async def _say(self, channel: str, who: str, text: str) -> None:
        if self.callbacks is not None:
            await self.callbacks.send_text(channel, who, text)
        elif not self.manual:
            raise RuntimeError("the world is not connected to Linli: people cannot write yet")

    async def _act(self, a: Action) -> None:
        if self.callbacks is None and not self.manual:
            raise RuntimeError("the world is not connected to Linli: people cannot write yet")
        who, person = a.who, self.person[a.who]
        channel = "wecom" if person.get("wecom_userid") == who else "oa"
        if channel == "oa":
            self.world.user_wrote(who)  # writing to the OA opens its 48 h reply window
        if a.kind == "reply":
            self.truth["replies"].append((who, person["household"], a.data["text"], self.clock.now()))
            await self._say(channel, who, a.data["text"])
        elif a.kind == "forward":
            chat_id = self.groups_by_name.get(a.data["group"])
            group = self.world.groups.get(chat_id) if chat_id else None
            if group is None:
                return
            if group.kind == "customer" and not self.manual:
                for msgid in self.world.pending_confirmations(group.owner):
                    self.world.confirm(msgid)
            else:
                group.members.add(who)  # a backup or grid lead joins the group to post
                self.world.human_post(chat_id, who, a.data["text"])
            self.truth["forwards"].append((who, a.data["group"], self.clock.now()))
            if not self.manual:
                await self._say(channel, who, "已转发")
        elif a.kind == "steward_forward":
            # a steward passes the warning on to their households' people on WeChat, one by one
            if self._stewards is None:
                self._stewards = self.register.stewards()
            for label in self._stewards.get(who, []):
                for p in self.households.get(label, []):
                    if p.uid and p.uid != who:
                        self.world.deliver_to_user(p.uid, a.data["text"], via="steward")
            self.truth["forwards"].append((who, "steward", self.clock.now()))
            await self._say(channel, who, "已转发")
        elif a.kind == "visit":
            self.truth["visits"].append((who, a.data["room"], self.clock.now()))
            await self._say(channel, who, f"已上门 {a.data['room']} 平安")
        elif a.kind == "proxy":
            # "1栋1单元101（张三、李四）、1栋1单元102": a steward's list names who lives there
            for item in re.split(r"、(?![^（]*）)", a.data["households"]):
                label = re.sub(r"（[^）]*）$", "", item)
                living = self.households.get(label, [])
                no_phone = living and not any(p.uid for p in living)
                if no_phone and self._rng(who, f"proxy:{label}").random() < 0.5:
                    room = re.search(r"\d+栋(?:\d+单元)?\d{3,4}$", label)
                    if room:
                        self.truth["proxy"].append((who, label, self.clock.now()))
                        await self._say(channel, who, f"代确认 {room.group(0)}")
