"""Senders against the real world platform app (over HTTP on localhost)."""
from __future__ import annotations

import asyncio

import pytest
from outbound_world import rig  # noqa: F401  (fixture)

from bot.transports.outbound.senders import ERR_LOCAL_INVALID, batch_userids, split_utf8

GETTOKEN = "/cgi-bin/gettoken"
SEND = "/cgi-bin/message/send"


async def test_token_fetched_once_and_cached(rig):
    for i in range(20):
        rig.world.register_user(f"u{i}")
    s = rig.senders["wecom_user"]
    # 20 different members (one member is limited to 30 messages a minute on its own)
    results = await asyncio.gather(*(s.send(f"u{i}", {"text": f"m{i}"}) for i in range(20)))
    assert all(r.ok for r in results)
    assert rig.world.calls[GETTOKEN] == 1  # one refresher behind the lock
    rig.clock.advance(3600)
    assert (await s.send("u1", {"text": "later"})).ok
    assert rig.world.calls[GETTOKEN] == 1
    rig.clock.advance(3600)  # past expiry minus margin: refreshed before the platform says so
    assert (await s.send("u1", {"text": "much later"})).ok
    assert rig.world.calls[GETTOKEN] == 2


async def test_refresh_on_42001_and_40014(rig):
    rig.world.register_user("u1")
    s = rig.senders["wecom_user"]
    assert (await s.send("u1", {"text": "a"})).ok
    rig.world.expire_tokens()  # the platform says 42001 though our cache thinks it valid
    assert (await s.send("u1", {"text": "b"})).ok
    assert rig.world.calls[GETTOKEN] == 2
    rig.world.inject(SEND, errcode=40014)
    assert (await s.send("u1", {"text": "c"})).ok
    assert rig.world.calls[GETTOKEN] == 3  # one refresh per rejection, not more
    assert [d.text for d in rig.world.messages_for("u1")] == ["a", "b", "c"]


async def test_bad_secret_is_permanent(rig):
    rig.world.corp_secret = "rotated"
    r = await rig.senders["wecom_user"].send("u1", {"text": "x"})
    assert not r.ok and r.errcode == 40001 and not r.retryable


async def test_classification_of_transient_failures(rig):
    rig.world.register_user("u1")
    s = rig.senders["wecom_user"]
    rig.world.inject(SEND, errcode=-1)
    rig.world.inject(SEND, status=503)
    rig.world.inject(SEND, drop=True)
    rig.world.inject(SEND, errcode=45009)
    rig.world.inject(SEND, errcode=40003)
    got = [await s.send("u1", {"text": "x"}) for _ in range(5)]
    assert [(r.errcode, r.retryable) for r in got[:2]] == [(-1, True), (503, True)]
    assert got[2].retryable and got[2].errcode == -2  # connection error
    assert (got[3].errcode, got[3].retryable) == (45009, True)
    assert (got[4].errcode, got[4].retryable) == (40003, False)


async def test_one_call_carries_1000_users(rig):
    users = [f"u{i:04d}" for i in range(1000)]
    for u in users:
        rig.world.register_user(u)
    targets = batch_userids(users + ["ghost"])
    assert [len(t.split("|")) for t in targets] == [1000, 1]
    r = await rig.senders["wecom_user"].send(targets[0], {"text": "台风蓝色预警"})
    assert r.ok and "invaliduser" not in r.detail
    assert rig.world.calls[SEND] == 1
    assert all(len(rig.world.messages_for(u)) == 1 for u in users)
    r = await rig.senders["wecom_user"].send("u0000|ghost", {"text": "x"})
    assert r.ok and r.detail["invaliduser"] == "ghost"  # the platform's own "a|b" form
    r = await rig.senders["wecom_user"].send("|".join(users + ["u0000"]), {"text": "x"})
    assert not r.ok and r.errcode == ERR_LOCAL_INVALID


async def test_appchat_create_and_send(rig):
    for u in ("lead", "a", "b"):
        rig.world.register_user(u)
    s = rig.senders["wecom_appchat"]
    r = await s.create_appchat("3号楼", "lead", ["a", "b"], "bldg3")
    assert r.ok and r.detail["chatid"] == "bldg3"
    assert (await s.create_appchat("again", "lead", ["a", "b"], "bldg3")).errcode == 86215
    assert (await s.send("bldg3", {"text": "请转发"})).ok
    assert [d.text for d in rig.world.group_messages("bldg3")] == ["请转发"]
    assert (await s.send("nochat", {"text": "x"})).errcode == 86003


async def test_robot_respects_20_per_minute_and_splits_long_text(rig):
    rig.world.add_group("g1", "robot", ["a"], robot_key="K1")
    s = rig.senders["robot"]
    results = [await s.send("K1", {"text": f"post {i}"}) for i in range(45)]
    assert all(r.ok for r in results)  # the bucket keeps us under the world's 45009
    assert rig.max_per_minute("/cgi-bin/webhook/send") <= 20
    assert rig.world.calls["/cgi-bin/webhook/send"] == 45  # no 45009, no retries
    assert rig.clock.now() - rig.requests[0][1] >= 60  # it had to wait (fake time)
    long = "\n".join(f"第{i}行：请检查门窗，远离低洼地带。" for i in range(150))
    assert len(long.encode()) > 2048 * 2
    parts = split_utf8(long, 2048)
    assert all(len(p.encode()) <= 2048 for p in parts)
    before = len(rig.world.group_messages("g1"))
    r = await s.send("K1", {"text": long})
    assert r.ok and r.detail["parts"] == len(parts) >= 3
    got = [d.text for d in rig.world.group_messages("g1")[before:]]
    assert "\n".join(got) == long


async def test_robot_retry_resumes_after_the_failed_part(rig):
    rig.world.add_group("g1", "robot", ["a"], robot_key="K1")
    s = rig.senders["robot"]
    long = "警" * 1500  # 4,500 bytes -> 3 parts
    rig.world.inject("/cgi-bin/webhook/send", status=502, after=1)  # second part fails
    r1 = await s.send("K1", {"text": long})
    assert not r1.ok and r1.retryable and r1.detail["parts_sent"] == 1
    r2 = await s.send("K1", {"text": long})
    assert r2.ok
    texts = [d.text for d in rig.world.group_messages("g1")]
    assert len(texts) == 3 and "".join(texts) == long  # part 1 was not posted twice


async def test_oa_window_and_quota_are_permanent(rig):
    rig.world.register_openid("o1")
    s = rig.senders["oa_cs"]
    r = await s.send("o1", {"text": "x"})
    assert (r.errcode, r.retryable) == (45015, False)  # never wrote: outside the 48 h window
    rig.world.user_wrote("o1")
    got = [await s.send("o1", {"text": f"m{i}"}) for i in range(6)]
    assert [g.ok for g in got] == [True] * 5 + [False]
    assert (got[5].errcode, got[5].retryable) == (45047, False)
    rig.clock.advance(49 * 3600)
    rig.world.register_openid("o1")
    assert (await s.send("o1", {"text": "late"})).errcode == 45015
    assert len(rig.world.messages_for("o1")) == 5


async def test_oa_template_reaches_followers_outside_the_window(rig):
    rig.world.register_openid("o1")
    r = await rig.senders["oa_template"].send("o1", {"text": "台风预警", "url": "http://x/ack"})
    assert r.ok
    (d,) = rig.world.messages_for("o1")
    assert (d.text, d.via, d.url) == ("台风预警", "oa_template", "http://x/ack")
    assert (await rig.senders["oa_template"].send("nobody", {"text": "x"})).errcode == 40003


async def test_customer_group_waits_for_owner_confirmation(rig):
    rig.world.register_user("lead")
    rig.world.add_group("wrcust1", "customer", ["lead", "res1", "res2"], owner="lead")
    s = rig.senders["customer_group"]
    r = await s.send("wrcust1", {"text": "暴雨红色预警", "owner": "lead"})
    assert r.ok and r.waiting and r.detail["msgid"]
    assert rig.world.group_messages("wrcust1") == []  # nothing until the owner confirms
    assert rig.world.confirm(r.detail["msgid"])
    assert [d.text for d in rig.world.group_messages("wrcust1")] == ["暴雨红色预警"]
    assert not rig.world.confirm(r.detail["msgid"])  # only once
    for _ in range(3):
        assert (await s.send("wrcust1", {"text": "x", "owner": "lead"})).waiting
    fifth = await s.send("wrcust1", {"text": "x", "owner": "lead"})
    assert not fifth.ok and not fifth.retryable  # 4 per group per month
    no_owner = await s.send("wrcust1", {"text": "x"})  # not in the store either
    assert not no_owner.ok and no_owner.errcode == ERR_LOCAL_INVALID


async def test_per_member_limit_waits_instead_of_losing_messages():
    # 40 follow-up tasks to one social worker: the platform would silently drop 10 of them.
    # Concurrency 1: fake sleeps move the shared clock, so parallel sends would skew it.
    from outbound_world import close_rig, make_rig

    rig = await make_rig(send={"concurrency": 1})
    rig.world.register_user("worker")
    for i in range(40):
        rig.outbox.enqueue(f"task:{i}", "wecom_user", "worker", {"text": f"任务{i}"})
    for _ in range(10):
        await rig.outbox.drain()
        rig.clock.advance(30)
    assert rig.world.dropped == []
    assert len(rig.world.messages_for("worker")) == 40
    assert rig.max_per_minute("/cgi-bin/message/send") <= 30
    await close_rig(rig)


async def test_replies_skip_the_platform_duplicate_check(rig):
    # the same "谢谢" twice within 30 minutes is legitimate: a reply opts out of the check that
    # protects relay sends from a resend after a crash (the platform would drop it silently)
    rig.world.register_user("u9")
    s = rig.senders["wecom_user"]
    for _ in range(2):
        assert (await s.send("u9", {"text": "谢谢", "dedupe": False})).ok
    for _ in range(2):
        assert (await s.send("u9", {"text": "预警"})).ok
    assert [d.text for d in rig.world.messages_for("u9")] == ["谢谢", "谢谢", "预警"]


@pytest.mark.parametrize("code", [40001, 40014, 42001])
async def test_a_single_token_error_from_the_token_endpoint_is_retried_once(rig, code):
    # a one-off rejection by gettoken used to fail the send for good (40001 is not retryable)
    rig.world.register_user("u1")
    rig.world.inject(GETTOKEN, errcode=code, times=1)
    r = await rig.senders["wecom_user"].send("u1", {"text": "预警"})
    assert r.ok, r
    assert rig.world.calls[GETTOKEN] == 2
    assert [d.text for d in rig.world.messages_for("u1")] == ["预警"]


async def test_token_error_on_the_send_and_then_on_the_refresh_still_gets_through(rig):
    rig.world.register_openid("o1")
    s = rig.senders["oa_template"]
    assert (await s.send("o1", {"text": "a"})).ok
    rig.world.inject("/cgi-bin/message/template/send", errcode=40001, times=1)  # token refused
    rig.world.inject("/cgi-bin/token", errcode=40001, times=1)  # and the refresh, once
    r = await s.send("o1", {"text": "b"})
    assert r.ok, r
    assert [d.text for d in rig.world.messages_for("o1")] == ["a", "b"]


async def test_token_endpoint_refusing_twice_is_permanent(rig):
    rig.world.register_user("u1")
    rig.world.inject(GETTOKEN, errcode=40001, times=2)
    r = await rig.senders["wecom_user"].send("u1", {"text": "x"})
    assert (r.ok, r.errcode, r.retryable) == (False, 40001, False)
    assert rig.world.calls[GETTOKEN] == 2  # once more, not in a loop
