"""The people of the local world: building leads, residents and social workers from the register,
reacting to what actually reaches them (WorldState deliveries) with seeded, reproducible choices.

- a lead asked to forward does so with probability `lead_forward_probability`, after a delay in
  `lead_delay_s`, by posting into the personal group by hand (or confirming the customer-group
  send), then tells the bot "已转发";
- a resident who sees a warning (in their building group or directly) answers with probability
  `resident_reply_probability` after a delay in `resident_delay_s`: "1", "收到", …, sometimes with
  a request ("收到，地下车库进水了"), and for polls sometimes "2";
- a building lead given the list of silent households confirms for neighbours without a phone;
- a social worker given a follow-up task visits and answers "已上门 <room> 平安".
Each choice is drawn from Random(f"{seed}:{who}:{what}"), so it does not depend on the order
in which things happen. `truth` records who received what and who said what.

Everything the people know comes from the register file (bot/world/register_file.py) and from
the messages that reach them; the world never looks into Linli's database.
"""
from __future__ import annotations

import heapq
import itertools
import random
import re
from dataclasses import dataclass, field

from bot.world.register_file import Person, RegisterFile

ALERT_RE = re.compile(r"【(?P<community>[^】]+)】(?P<what>\S+?预警)")
ASK_RE = re.compile(r"(?:请把下面这条预警转发到|请确认发送到)「(?P<group>[^」]+)」")
FOLLOWUP_RE = re.compile(r"【一对一跟进 #(?P<id>\d+)】[\s\S]*?住址：(?P<room>\S+)")
LEADLIST_RE = re.compile(r"还有 \d+ 户没有确认收到：\n(?P<list>.+)\n")
ACK_REPLIES = ("1", "收到", "好的", "收到，谢谢", "1", "已阅", "👍", "收到！")
REQUESTS = ("地下车库进水了", "3号楼楼道灯坏了", "楼下的树被风吹歪了，有点危险", "小区门口积水很深",
            "我家老人一个人在家，能不能来看看")


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

    def _later(self, who: str, what: str, delay: list, kind: str, **data) -> None:
        lo, hi = delay
        at = self.clock.now() + self._rng(who, what + ":delay").uniform(lo, hi)
        heapq.heappush(self.queue, Action(at, next(self._seq), kind, who, data))

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
        ask = ASK_RE.search(text) if d.user else None
        if ask:
            key = (who, f"ask:{ask.group('group')}:{m.group('what') if m else ''}")
            if key not in self.decided:
                self.decided.add(key)
                if self._rng(*key).random() < self.cfg.lead_forward_probability:
                    self._later(who, key[1], self.cfg.lead_delay_s, "forward", group=ask.group("group"),
                                text=text.split("————————\n", 1)[-1])
            return
        fu = FOLLOWUP_RE.search(text) if d.user else None
        if fu:
            self._later(who, f"followup:{fu.group('id')}", self.cfg.lead_delay_s, "visit", room=fu.group("room"))
            return
        ll = LEADLIST_RE.search(text) if d.user else None
        if ll:
            self._later(who, f"leadlist:{d.id}", self.cfg.lead_delay_s, "proxy", households=ll.group("list"))
            return
        person = self.person[who]
        if m and person.get("oa_openid") and "解除" not in m.group("what") and "（已解除）" not in text:
            key = (who, f"alert:{m.group('what')}")
            if key in self.decided:
                return
            self.decided.add(key)
            rng = self._rng(*key)
            if rng.random() >= self.cfg.resident_reply_probability:
                return
            poll = "2 需要帮助" in text
            reply = rng.choice(ACK_REPLIES)
            if poll and rng.random() < 0.1:
                reply = "2 家里老人行动不便，需要帮忙"
            elif rng.random() < self.cfg.request_probability:
                reply = f"收到，{rng.choice(REQUESTS)}"
            self._later(who, key[1], self.cfg.resident_delay_s, "reply", text=reply)

    # -- acting ----------------------------------------------------------------------------------
    def next_at(self) -> float | None:
        return self.queue[0].at if self.queue else None

    async def run_until(self, t: float) -> int:
        """Carry out every action due by clock time t (in time order). Returns how many."""
        n = 0
        while self.queue and self.queue[0].at <= t:
            a = heapq.heappop(self.queue)
            await self._act(a)
            n += 1
        return n

    async def _act(self, a: Action) -> None:
        if self.callbacks is None:
            raise RuntimeError("the world is not connected to Linli: people cannot write yet")
        who, person = a.who, self.person[a.who]
        channel = "wecom" if person.get("wecom_userid") == who else "oa"
        if channel == "oa":
            self.world.user_wrote(who)  # writing to the OA opens its 48 h reply window
        if a.kind == "reply":
            self.truth["replies"].append((who, person["household"], a.data["text"], self.clock.now()))
            await self.callbacks.send_text(channel, who, a.data["text"])
        elif a.kind == "forward":
            chat_id = self.groups_by_name.get(a.data["group"])
            group = self.world.groups.get(chat_id) if chat_id else None
            if group is None:
                return
            if group.kind == "customer":
                for msgid in self.world.pending_confirmations(group.owner):
                    self.world.confirm(msgid)
            else:
                group.members.add(who)  # a backup or grid lead joins the group to post
                self.world.human_post(chat_id, who, a.data["text"])
            self.truth["forwards"].append((who, a.data["group"], self.clock.now()))
            await self.callbacks.send_text(channel, who, "已转发")
        elif a.kind == "visit":
            self.truth["visits"].append((who, a.data["room"], self.clock.now()))
            await self.callbacks.send_text(channel, who, f"已上门 {a.data['room']} 平安")
        elif a.kind == "proxy":
            for label in a.data["households"].split("、"):
                living = self.households.get(label, [])
                no_phone = living and not any(p.uid for p in living)
                if no_phone and self._rng(who, f"proxy:{label}").random() < 0.5:
                    room = re.search(r"\d+栋(?:\d+单元)?\d{3,4}$", label)
                    if room:
                        self.truth["proxy"].append((who, label, self.clock.now()))
                        await self.callbacks.send_text(channel, who, f"代确认 {room.group(0)}")
