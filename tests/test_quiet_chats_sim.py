"""Quiet chats measured end to end: Linli + the local world on one FakeClock (tests/sim_rig.py).

The community secretary (a staff member) has 220 open requests nobody accepted; at 8 h every
one of them escalates to staff. We count what reaches the secretary's WeChat per hour with
digests and the cap off (the old behaviour) and on, and where the replies to three commands
they send at that moment land among those messages. Counts, orders and fake-clock times only:
nothing here depends on how fast the machine is."""
from __future__ import annotations

import csv
import json
from collections import Counter

from sim_rig import T0, LinliPeer, close_sim, make_sim, staff
from test_quiet_chats import WithQuiet

from bot.domain import digest
from bot.domain import requests as R
from bot.world import sim
from bot.world.dalong import generate

H = 3600.0
N_REQUESTS = 220
COMMANDS = ["待办", "我的报事", "查询 #1"]


class QuietPeer(LinliPeer):
    """LinliPeer plus the digest timer source (bot/app.py does not list it yet)."""

    async def run_due(self) -> None:
        await super().run_due()
        await digest.run_due(self.app)
        await self.app.settle()

    def next_due(self) -> float | None:
        times = [t for t in (super().next_due(), digest.next_due_at(self.app))
                 if t is not None and t > self.clock.now()]
        return min(times) if times else None


def one_secretary_register(tmp_path):
    """The generated register with one staff member (the secretary) instead of fifteen: each of
    them would get the same 220 reminders, which only makes the test slower."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "register.csv"
    info = generate(path, households=20, seed=11)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    role, uid = head.index("角色"), head.index("企业微信ID")
    staff_rows = [r for r in rows[1:] if r[role].startswith("社区工作人员")]
    keep = [rows[0]] + [r for r in rows[1:] if r not in staff_rows[1:]]
    assert len(staff_rows) > 1 and staff_rows[0][uid]
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(keep)
    return path, info["groups_file"]


async def secretary_day(tmp_path, **quiet) -> dict:
    register, groups = one_secretary_register(tmp_path)
    rig = await make_sim(tmp_path, register=register, groups=groups)
    try:
        rig.app.settings = WithQuiet(rig.app.settings, **quiet)
        app, store = rig.app, rig.store
        secretary = staff(store)
        uid = secretary["wecom_userid"]
        filers = store.q("SELECT * FROM residents WHERE household_id IS NOT NULL AND active = 1"
                         " ORDER BY id")
        for i in range(N_REQUESTS):
            R.file_request(app, resident=filers[i % len(filers)], text=f"楼道灯坏了，第{i}处")
        peer = QuietPeer(app)
        await sim.run_until(peer, rig.world, T0 + 8 * H)
        # the reminders to staff have just fired; the secretary writes three commands
        start = len(rig.world.state.messages_for(uid))
        for text in COMMANDS:
            await rig.world.people.callbacks.send_text("wecom", uid, text)
        await sim.run_until(peer, rig.world, T0 + 12 * H)
        got = rig.world.state.messages_for(uid)
        rows = store.q("SELECT purpose, payload, sent_at FROM sends WHERE target=? AND state='sent'"
                       " ORDER BY id", (uid,))
        replies = [r for r in rows if r["purpose"] == "reply"]
        bulk = [r for r in rows if r["purpose"] != "reply"]
        per_hour = Counter(int((r["sent_at"] - T0) // H) for r in bulk)
        after_commands = got[start:]
        # where each reply landed among what reached the secretary after the commands
        positions = [next((i for i, d in enumerate(after_commands)
                           if d.text == json.loads(r["payload"])["text"]), None) for r in replies]
        return {"sent_per_hour": dict(per_hour), "max_per_hour": max(per_hour.values()),
                "sent": len(rows), "delivered": len(got), "replies": len(replies),
                "reply_positions": positions,
                "reply_delay_s": [round(r["sent_at"] - (T0 + 8 * H), 1) for r in replies],
                "digests": sum(1 for r in bulk if r["purpose"] == "digest"),
                "reminders": sum(1 for r in bulk if r["purpose"] == "request"
                                 and "【报事催办】" in r["payload"])}
    finally:
        await close_sim(rig)


async def test_the_secretary_gets_a_few_messages_an_hour_not_hundreds(tmp_path):
    before = await secretary_day(tmp_path / "before", digest_interval_min=0, cap_per_hour=0)
    after = await secretary_day(tmp_path / "after")
    print("before:", before)
    print("after:", after)
    # before: every overdue request is its own message, all in the same hour (and the platform,
    # which drops past 30/min to one member, delivered only a fraction of them: see the report)
    assert before["reminders"] == N_REQUESTS and before["max_per_hour"] >= N_REQUESTS
    # after: the first reminder at once, then one digest listing the rest
    assert after["reminders"] == 1 and after["digests"] == 1
    assert after["max_per_hour"] == 2
    assert after["delivered"] == after["sent"]  # nothing past the platform's per-member limit
    # the replies to the three commands: all three, in the order the commands were written,
    # ahead of the bulk
    # (before, the platform dropped some of them: Linli's per-member limiter let the 220
    # reminders through faster than 30/min; see the report. Not asserted: that is the sender's.)
    assert before["replies"] == after["replies"] == len(COMMANDS)
    assert after["reply_positions"] == [0, 1, 2]
    assert max(after["reply_delay_s"]) < max(before["reply_delay_s"])
