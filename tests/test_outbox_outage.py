"""Platform outages (issue #10 item 1): a warning's retries outlast them, a circuit breaker per
channel stops the hammering, staff hear about it, and dead sends can be put back.

Everything runs on fake time against the world platform over HTTP: the outage is the world's
fault injection (HTTP 502) switched on and off at fake-clock instants; nothing sleeps.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from outbound_world import close_rig, make_rig, rig  # noqa: F401  (fixture)

from bot.transports.outbound.outbox import DEFAULTS, Outbox

TEMPLATE = "/cgi-bin/message/template/send"
SEND = "/cgi-bin/message/send"


def add_alert(store, now: float, *, expires_in: float = 3600.0) -> int:
    return store.db["alerts"].insert({
        "type": "雷雨大风", "colour": "yellow", "text": "", "scope": "[]", "created_at": now,
        "expires_at": now + expires_in}).last_pk


def add_staff(store, key: str, *, wecom: str | None = None, openid: str | None = None,
              roles: str = "staff") -> int:
    return store.db["residents"].insert({"key": key, "name": f"职员{key}", "roles": roles,
                                         "wecom_userid": wecom, "oa_openid": openid}).last_pk


def tune(outbox: Outbox, **kw) -> None:
    """Settings the [send] section may not have yet (DEFAULTS) or a test wants different."""
    outbox.cfg = SimpleNamespace(**{**DEFAULTS, **dataclasses.asdict(outbox.cfg), **kw})


def events(store, kind: str) -> list[dict]:
    return store.q("SELECT * FROM events WHERE kind=? ORDER BY id", (kind,))


async def run(r, *, until: float, step: float = 1.0, at=None) -> None:
    """Drain and move fake time in steps until `until` (fake seconds from now) or nothing is
    left pending. `at` maps fake-second offsets to callables (switch a fault off, say)."""
    start = r.clock.now()
    todo = sorted((at or {}).items())
    while r.clock.now() - start < until:
        while todo and r.clock.now() - start >= todo[0][0]:
            todo.pop(0)[1]()
        await r.outbox.drain()
        if not todo and not r.rows("state IN ('pending','sending')"):
            return
        r.clock.advance(step)


async def test_two_minute_outage_mid_warning_delivers_every_send_exactly_once(rig):
    store, world = rig.app.store, rig.world
    rig.outbox._rng.seed(7)
    openids = [f"o{i:03d}" for i in range(400)]
    for o in openids:
        world.register_openid(o)
    world.register_user("sec")
    world.register_openid("osec")
    add_staff(store, "sec", wecom="sec", openid="osec")
    alert = add_alert(store, rig.clock.now())
    # the platform answers 150 notices, then HTTP 502 on every call until switched off
    world.inject(TEMPLATE, status=502, after=150, times=None)
    rig.outbox.enqueue_many({"key": f"a:{o}", "channel": "oa_template", "target": o,
                             "payload": {"text": "雷雨大风黄色预警"}, "alert_id": alert,
                             "purpose": "direct"} for o in openids)
    calls_before = world.calls[TEMPLATE]
    await run(rig, until=900, at={120: lambda: world.clear_faults(TEMPLATE)})

    warning = rig.rows("purpose='direct'")
    assert {r["state"] for r in warning} == {"sent"} and len(warning) == 400
    assert sorted(len(world.messages_for(o)) for o in openids) == [1] * 400  # exactly once
    assert rig.rows("state IN ('dead','failed','pending')") == []
    # the breaker held the backlog: far fewer failed calls than rows x attempts
    failed_calls = world.calls[TEMPLATE] - calls_before - 400
    print(f"outage: {failed_calls} failed calls for 400 rows")
    assert 5 <= failed_calls <= 32 + 5 + 12, failed_calls
    assert len(events(store, "channel.down")) == 1 and len(events(store, "channel.restored")) == 1
    # staff were told through WeCom (the broken channel is the OA's), once each way
    told = [d.text for d in world.messages_for("sec")]
    assert len(told) == 2 and told[0].startswith("【发送通道故障】") and told[1].startswith("【发送通道恢复】")
    assert "公众号服务通知" in told[0] and world.messages_for("osec") == []


async def test_breaker_pauses_the_channel_probes_and_survives_a_restart():
    r = await make_rig()
    try:
        store, world = r.app.store, r.world
        r.outbox._rng.seed(3)
        tune(r.outbox, breaker_failures=3, breaker_cooldown_s=10.0, breaker_cooldown_max_s=40.0)
        for u in ("u1", "u2", "u3", "u4"):
            world.register_user(u)
        world.register_openid("o-sec")
        add_staff(store, "sec", wecom="sec-wecom", openid="o-sec")  # WeCom first, but it is down
        add_staff(store, "nobody", wecom="x-only")  # only the broken channel: cannot be told
        alert = add_alert(store, r.clock.now())
        world.inject(SEND, status=502, times=None)
        r.outbox.enqueue_many({"key": f"k{u}", "channel": "wecom_user", "target": u,
                               "payload": {"text": "预警"}, "alert_id": alert} for u in ("u1", "u2", "u3", "u4"))
        await r.outbox.drain()
        b = r.outbox.breaker("wecom_user")
        assert b.state == "open" and 10 <= b.probe_at - r.clock.now() <= 12.5
        calls = world.calls[SEND]
        assert calls == 4  # all four were in flight together; none since
        # paused: nothing is tried before the cool-down, though the rows' backoff has passed
        r.clock.advance(9)
        await r.outbox.drain()
        assert world.calls[SEND] == calls
        r.clock.advance(3.5)
        await r.outbox.drain()
        assert world.calls[SEND] == calls + 1  # one probe; it failed: re-opened, twice as long
        assert b.state == "open" and 20 <= b.probe_at - r.clock.now() <= 25
        (notice,) = r.rows("purpose='channel_health'")
        assert (notice["channel"], notice["target"]) == ("oa_template", "o-sec")
        assert len(events(store, "channel.unannounced")) == 0  # one staff member was told
        # a restart keeps the channel paused and does not tell staff again
        await r.outbox.stop()
        r.app.outbox = r.outbox = Outbox(r.app)
        await r.outbox.start()
        await r.outbox.stop()
        assert r.outbox.breaker("wecom_user").state == "open"
        assert len(r.rows("purpose='channel_health'")) == 1
        world.clear_faults(SEND)
        r.clock.advance(25)
        await r.outbox.drain()  # the probe answers: closed, and the backlog goes at once
        assert r.outbox.breaker("wecom_user").state == "closed"
        assert {u: len(world.messages_for(u)) for u in ("u1", "u2", "u3", "u4")} == \
            {"u1": 1, "u2": 1, "u3": 1, "u4": 1}
        health = r.rows("purpose='channel_health'")
        assert [h["state"] for h in health] == ["sent", "sent"]
        assert [d.text[:8] for d in world.messages_for("o-sec")] == ["【发送通道故障】", "【发送通道恢复】"]
        assert store.q1("SELECT state FROM channel_breakers WHERE channel='wecom_user'")["state"] == "closed"
    finally:
        await close_rig(r)


async def test_nobody_to_tell_is_recorded(rig):
    tune(rig.outbox, breaker_failures=1)
    add_staff(rig.app.store, "s", openid="o-only")  # the OA is the broken channel
    rig.world.register_openid("o1")
    rig.world.inject(TEMPLATE, status=503, times=None)
    rig.outbox.enqueue("k", "oa_template", "o1", {"text": "x"})
    await rig.outbox.drain()
    assert rig.outbox.breaker("oa_template").state == "open"
    assert len(events(rig.app.store, "channel.unannounced")) == 1
    assert rig.rows("purpose='channel_health'") == []


async def test_answers_and_rate_limits_do_not_open_the_breaker(rig):
    tune(rig.outbox, breaker_failures=2)
    rig.world.register_user("u1")
    rig.world.inject(SEND, errcode=45009, times=3)  # the platform answers "slow down"
    rig.outbox.enqueue("a", "wecom_user", "nobody", {"text": "x"})  # answered: 81013
    rig.outbox.enqueue("b", "wecom_user", "u1", {"text": "x"})
    await run(rig, until=120)
    assert rig.outbox.breaker("wecom_user").state == "closed"
    assert [r["state"] for r in rig.rows()] == ["failed", "sent"]


async def test_a_warnings_retries_stop_at_its_expiry_not_at_an_attempt_count():
    r = await make_rig()
    try:
        r.outbox._rng.seed(5)
        tune(r.outbox, breaker_failures=1000, retry_budget_s=60.0)  # no breaker: raw retries
        r.world.register_openid("o1")
        start = r.clock.now()
        alert = add_alert(r.app.store, start, expires_in=300)
        r.world.inject(TEMPLATE, status=502, times=None)
        r.outbox.enqueue("w", "oa_template", "o1", {"text": "预警"}, alert_id=alert)
        r.outbox.enqueue("other", "oa_template", "o1", {"text": "回复"})  # no alert: 5 attempts
        await run(r, until=600, step=5)
        warning, other = r.rows()
        assert warning["state"] == "dead" and warning["attempts"] > 5  # kept trying for minutes
        assert (other["state"], other["attempts"]) == ("dead", 5)
        died = r.app.store.q1("SELECT at FROM events WHERE kind='send.dead' AND ref_id=?", (warning["id"],))
        assert start + 300 - 30 <= died["at"] <= start + 300 + 30 + 5
    finally:
        await close_rig(r)


async def test_a_row_written_at_expiry_still_gets_the_retry_budget(rig):
    rig.world.register_user("u1")
    now = rig.clock.now()
    alert = add_alert(rig.app.store, now - 3600, expires_in=3600)  # expires now: the summary
    rig.world.inject(SEND, status=502, times=1)
    rig.outbox.enqueue("summary", "wecom_user", "u1", {"text": "汇总"}, alert_id=alert)
    await run(rig, until=60)
    (row,) = rig.rows()
    assert (row["state"], row["attempts"]) == ("sent", 2)


async def test_retry_puts_dead_and_failed_rows_back():
    r = await make_rig(send={"max_attempts": 2})
    try:
        store, world = r.app.store, r.world
        world.register_user("u1")
        world.register_user("u2")
        alert = add_alert(store, r.clock.now())
        world.inject(SEND, status=502, times=2)
        dead_id = r.outbox.enqueue("d", "wecom_user", "u1", {"text": "一"})
        await run(r, until=30)
        r.outbox.enqueue("f", "wecom_user", "ghost", {"text": "二"}, alert_id=alert)
        sent_id = r.outbox.enqueue("s", "wecom_user", "u2", {"text": "三"}, alert_id=alert)
        await r.outbox.drain()
        assert [x["state"] for x in r.rows()] == ["dead", "failed", "sent"]

        assert r.outbox.retry([dead_id, sent_id, 9999]) == 1  # only dead/failed rows move
        row = r.rows("id=?", (dead_id,))[0]
        assert (row["state"], row["attempts"], row["next_at"]) == ("pending", 0, None)
        (ev,) = events(store, "send.retried")
        assert ev["ref_id"] == dead_id and '"previous": "dead"' in ev["data"]
        await r.outbox.drain()
        assert r.rows("id=?", (dead_id,))[0]["state"] == "sent"
        assert [d.text for d in world.messages_for("u1")] == ["一"]

        world.register_user("ghost")  # the register was fixed: retry the whole warning
        assert r.outbox.retry(alert_id=alert) == 1
        await r.outbox.drain()
        assert [x["state"] for x in r.rows()] == ["sent", "sent", "sent"]
        assert [d.text for d in world.messages_for("u2")] == ["三"]  # the sent one not again
        assert r.outbox.retry([]) == 0 and r.outbox.retry(alert_id=alert + 1) == 0
        with pytest.raises(ValueError):
            r.outbox.retry()
    finally:
        await close_rig(r)


async def test_a_paused_channel_with_nothing_to_probe_waits_quietly_for_a_row(rig):
    from bot.transports.outbound.outbox import IDLE_POLL_S

    tune(rig.outbox, breaker_failures=1)
    rig.world.register_user("u1")
    rig.world.inject(SEND, status=502, times=1)
    sid = rig.outbox.enqueue("a", "wecom_user", "u1", {"text": "一"})
    await rig.outbox.drain()
    b = rig.outbox.breaker("wecom_user")
    assert b.state == "open"
    rig.app.store.conn.execute("UPDATE sends SET state='dead' WHERE id=?", (sid,))  # gone
    rig.clock.advance(20)
    await rig.outbox.drain()
    # cool-down over, nothing to probe with: no busy polling, the next row is the probe
    assert b.state == "open" and b.probe_at is None
    assert rig.outbox._idle_timeout() == IDLE_POLL_S
    rig.outbox.enqueue("b", "wecom_user", "u1", {"text": "二"})
    await rig.outbox.drain()
    assert b.state == "closed"
    assert [d.text for d in rig.world.messages_for("u1")] == ["二"]
