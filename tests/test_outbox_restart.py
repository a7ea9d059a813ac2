"""The per-member WeCom limit survives a restart (issue #10 item 6).

WeCom drops, without an error, app messages past 30 a minute to one member. The limiter's
buckets lived in memory only, so after a kill -9 a fresh process started with full buckets and
pushed a social worker past the limit. At start-up the outbox now rebuilds each member's bucket
from the sends recorded as sent (or left 'sending') in the last minute.
"""
from __future__ import annotations

import asyncio

from outbound_world import close_rig, make_rig

from bot.transports.outbound.outbox import Outbox
from bot.transports.outbound.senders import build_senders

SEND = "/cgi-bin/message/send"


async def drain_all(r, step: float = 1.0, limit: float = 600) -> None:
    start = r.clock.now()
    while r.rows("state IN ('pending','sending')") and r.clock.now() - start < limit:
        await r.outbox.drain()
        if r.rows("state IN ('pending','sending')"):
            r.clock.advance(step)


def restart(r) -> None:
    """A new process on the same database and platform: new senders (fresh buckets), new outbox."""
    async def fake_sleep(s: float) -> None:
        r.clock.advance(s)
        await asyncio.sleep(0)

    r.app.senders = r.senders = build_senders(r.app, sleep=fake_sleep)
    r.app.outbox = r.outbox = Outbox(r.app)


async def test_forty_tasks_to_one_worker_across_a_kill_are_all_delivered():
    r = await make_rig(send={"concurrency": 1})
    try:
        r.world.register_user("worker")
        for i in range(20):
            r.outbox.enqueue(f"task:{i}", "wecom_user", "worker", {"text": f"任务{i}"})
        await drain_all(r)
        assert len(r.world.messages_for("worker")) == 20
        # kill -9 and start again: the first 20 went out within the last minute
        restart(r)
        await r.outbox.start()
        await r.outbox.stop()
        for i in range(20, 40):
            r.outbox.enqueue(f"task:{i}", "wecom_user", "worker", {"text": f"任务{i}"})
        await drain_all(r)
        assert r.world.dropped == []
        assert len(r.world.messages_for("worker")) == 40
        assert r.max_per_minute(SEND) <= 30
    finally:
        await close_rig(r)


async def test_rows_left_sending_count_as_possibly_delivered():
    r = await make_rig()
    try:
        store, now = r.app.store, r.clock.now()
        ids = [r.outbox.enqueue(f"k{i}", "wecom_user", "a|b", {"text": "x"}) for i in range(30)]
        with store.transaction() as conn:  # as a crash leaves them: 25 sent, 5 in flight
            for n, sid in enumerate(ids):
                state = "sent" if n < 25 else "sending"
                conn.execute("UPDATE sends SET state=?, sent_at=?, attempted_at=? WHERE id=?",
                             (state, now - 50 + n if state == "sent" else None, now - 1, sid))
            conn.execute("UPDATE sends SET sent_at=? WHERE id=?", (now - 61, ids[0]))  # too old
        r.outbox.enqueue("old", "wecom_user", "c", {"text": "x"})
        restart(r)
        r.outbox.restore()
        s = r.senders["wecom_user"]
        assert set(s.members) == {"a", "b"}  # 'c' has no recent message: no bucket yet
        # 29 in the last minute: a limit of 30/min has nothing to spare for a while
        assert s.members["a"].wait_time() > 0 and s.members["b"].wait_time() > 0
    finally:
        await close_rig(r)


async def test_nothing_recent_means_full_buckets():
    r = await make_rig()
    try:
        r.world.register_user("u1")
        r.outbox.enqueue("k", "wecom_user", "u1", {"text": "x"})
        await r.outbox.drain()
        r.clock.advance(61)
        restart(r)
        r.outbox.restore()
        assert r.senders["wecom_user"].members == {}
    finally:
        await close_rig(r)
