"""The hook contract (issue #10 item 7): a hook is `def hook(row, result) -> None`, called inside
the transaction that records the send's outcome, so the outcome and its effect commit together
or not at all. Async hooks are still awaited after the commit until every subscriber is sync.
"""
from __future__ import annotations

import pytest
from outbound_world import close_rig, make_rig, rig  # noqa: F401  (fixture)

from bot.data import sends as sends_data
from bot.transports.outbound.outbox import Outbox

SEND = "/cgi-bin/message/send"


def effects(store, send_id: int) -> int:
    """How many times the test's hook took effect for this send (its event rows)."""
    return store.scalar("SELECT count(*) FROM events WHERE kind='test.effect' AND ref_id=?", (send_id,))


def effect_hook(store, seen: list):
    def hook(row, result):
        seen.append((row["state"], store.conn.in_transaction))
        store.log(0, "test.effect", "send", row["id"], state=row["state"])
    return hook


async def test_sync_hooks_run_inside_the_outcome_transaction_async_ones_after(rig):
    store = rig.app.store
    rig.world.register_user("u1")
    seen, later = [], []

    async def after(row, result):
        later.append((row["state"], store.conn.in_transaction,
                      store.scalar("SELECT state FROM sends WHERE id=?", (row["id"],))))

    rig.outbox.subscribe("hop", effect_hook(store, seen))
    rig.outbox.subscribe("*", after)
    sid = rig.outbox.enqueue("k", "wecom_user", "u1", {"text": "x"}, purpose="hop")
    rig.outbox.enqueue("other", "wecom_user", "u1", {"text": "y"}, purpose="ask")
    await rig.outbox.drain()
    assert seen == [("sent", True)]  # only its purpose, and inside the transaction
    assert sorted(later) == [("sent", False, "sent")] * 2  # '*' sees both, after the commit
    assert effects(store, sid) == 1


async def test_a_raising_sync_hook_rolls_the_outcome_back_and_the_row_is_retried(rig):
    store = rig.app.store
    rig.world.register_user("u1")
    seen, fail = [], [True]
    record = effect_hook(store, seen)

    def hook(row, result):
        record(row, result)  # its effect is written, then it raises: both must go
        if fail.pop() if fail else False:
            raise RuntimeError("hop table locked")

    rig.outbox.subscribe("*", hook)
    sid = rig.outbox.enqueue("k", "wecom_user", "u1", {"text": "预警"})
    await rig.outbox.drain()
    (row,) = rig.rows()
    assert row["state"] == "pending" and row["sent_at"] is None  # the 'sent' was not committed
    assert row["attempts"] == 1 and "RuntimeError: hop table locked" in row["error"]
    assert effects(store, sid) == 0
    assert store.q1("SELECT * FROM events WHERE kind='send.unrecorded'")["ref_id"] == sid
    rig.clock.advance(1)
    await rig.outbox.drain()
    (row,) = rig.rows()
    assert (row["state"], row["attempts"]) == ("sent", 2) and effects(store, sid) == 1
    # sent twice to the platform, seen once: message/send's duplicate check drops the repeat
    assert rig.world.calls[SEND] == 2 and [d.text for d in rig.world.messages_for("u1")] == ["预警"]


async def test_a_hook_that_always_raises_ends_dead_not_in_a_loop():
    r = await make_rig(send={"max_attempts": 3})
    try:
        r.world.register_user("u1")

        def broken(row, result):
            raise KeyError("bug")

        r.outbox.subscribe("*", broken)
        r.outbox.enqueue("k", "wecom_user", "u1", {"text": "x"})
        for _ in range(10):
            await r.outbox.drain()
            r.clock.advance(60)
        (row,) = r.rows()
        assert (row["state"], row["attempts"]) == ("dead", 3)
        assert r.world.calls[SEND] == 3
    finally:
        await close_rig(r)


async def test_a_sync_callable_returning_a_coroutine_is_refused_not_ignored(rig):
    rig.world.register_user("u1")

    class Sneaky:  # sync __call__ handing back a coroutine: would never run
        def __call__(self, row, result):
            async def effect():
                return None
            return effect()

    rig.outbox.subscribe("*", Sneaky())
    rig.outbox.enqueue("k", "wecom_user", "u1", {"text": "x"})
    await rig.outbox.drain()
    (row,) = rig.rows()
    assert row["state"] == "pending" and "TypeError" in row["error"]


class Died(BaseException):
    """The process stops here (kill -9): nothing after this line runs, nothing is committed."""


async def test_dying_between_send_and_effect_leaves_a_consistent_state_and_resumes(rig):
    store = rig.app.store
    rig.world.register_user("u1")
    seen = []
    record = effect_hook(store, seen)

    def dies(row, result):
        record(row, result)
        raise Died()

    rig.outbox.subscribe("*", dies)
    sid = rig.outbox.enqueue("hop:1:post", "wecom_user", "u1", {"text": "预警"}, purpose="hop")
    (row,) = sends_data.claim(store, rig.clock.now(), 1)
    with pytest.raises(Died):
        await rig.outbox._send_one(row)
    # the send reached the member, but neither its outcome nor its effect was committed:
    # the row is 'sending' (a restart re-sends it), not 'sent' with the hop left undone
    (row,) = rig.rows()
    assert row["state"] == "sending" and effects(store, sid) == 0
    assert not store.conn.in_transaction
    # restart: a new outbox with the real (non-dying) hook
    rig.app.outbox = outbox = Outbox(rig.app)
    outbox.subscribe("*", record)
    await outbox.start()
    await outbox.stop()
    await outbox.drain()
    (row,) = rig.rows()
    assert row["state"] == "sent" and effects(store, sid) == 1
    assert [d.text for d in rig.world.messages_for("u1")] == ["预警"]  # the platform deduplicated
