"""The world delivers callbacks as the platform does: when Linli is slow it retries the same
MsgId, and sometimes it delivers twice; Linli processes each message once either way."""
import asyncio
import random

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sim_rig import close_sim, make_sim

from bot.world.callbacks import CallbackClient


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=20)
    yield rig
    await close_sim(rig)


def someone(store):
    return store.q1("SELECT * FROM residents WHERE oa_openid IS NOT NULL AND household_id IS NOT NULL LIMIT 1")


async def test_slow_linli_gets_the_platform_retry_and_processes_once(sim):
    slow = {"n": 0, "first_done": asyncio.Event()}

    @web.middleware
    async def first_call_slow(request, handler):  # Linli stuck past the platform's deadline, once
        if request.method == "POST":
            slow["n"] += 1
            if slow["n"] == 1:
                try:
                    await asyncio.sleep(0.4)
                    return await handler(request)
                finally:  # answered late, or cancelled when the platform hung up
                    slow["first_done"].set()
        return await handler(request)

    linli = sim.app.web_app()
    linli.middlewares.append(first_call_slow)
    server = TestServer(linli)
    await server.start_server()
    try:
        client = CallbackClient(sim.settings, str(server.make_url("")).rstrip("/"), sim.world.http, clock=sim.clock)
        client.timeout_s = 0.1
        r = someone(sim.store)
        sim.world.state.user_wrote(r["oa_openid"])
        posted = await client.send_text("oa", r["oa_openid"], "楼道灯坏了，晚上很黑")
        await asyncio.wait_for(slow["first_done"].wait(), 5)  # the abandoned attempt has ended
        await sim.app.settle()
    finally:
        await server.close()
    assert posted.attempts >= 2 and posted.status == 200
    rows = sim.store.q("SELECT * FROM inbound WHERE dedupe_key=?", (f"oa:msg:{posted.msg_id}",))
    assert len(rows) == 1 and rows[0]["state"] == "done"
    assert sim.store.scalar("SELECT COUNT(*) FROM requests WHERE text LIKE '楼道灯坏了%'") == 1


async def test_duplicate_delivery_is_processed_once(sim):
    client = CallbackClient(sim.settings, str(sim.server.make_url("")).rstrip("/"), sim.world.http,
                            clock=sim.clock, duplicate_probability=1.0, rng=random.Random(1))
    r = someone(sim.store)
    sim.world.state.user_wrote(r["oa_openid"])
    posted = await client.send_text("oa", r["oa_openid"], "小区门口积水很深")
    await sim.app.settle()
    assert posted.attempts == 2  # delivered twice on purpose
    assert sim.store.scalar("SELECT COUNT(*) FROM requests WHERE text='小区门口积水很深'") == 1
    replies = sim.store.q("SELECT * FROM sends WHERE purpose IN ('reply','request') AND target=?", (r["oa_openid"],))
    assert len(replies) == 1


async def test_oa_message_outside_the_48h_window_goes_as_a_service_notice(sim):
    r = someone(sim.store)  # never wrote to the OA: a customer-service message is refused
    sim.app.outbox.enqueue("note:1", "oa_cs", r["oa_openid"], {"text": "您的报事 #1 已办结"}, purpose="request")
    await sim.app.settle()
    rows = {x["key"]: x for x in sim.store.q("SELECT * FROM sends WHERE key LIKE 'note:1%'")}
    assert rows["note:1"]["state"] == "failed" and rows["note:1"]["error_code"] == 45015
    assert rows["note:1:notice"]["channel"] == "oa_template" and rows["note:1:notice"]["state"] == "sent"
    assert [d.via for d in sim.world.state.messages_for(r["oa_openid"]) if "#1 已办结" in d.text] == ["oa_template"]


async def test_rows_recorded_before_the_fields_column_are_parsed_from_raw(sim):
    from bot.transports.inbound import inbox as inbound

    r = someone(sim.store)
    xml = sim.world.people.callbacks.xml("oa", r["oa_openid"], text="楼道里有积水", msg_id=424242)
    sim.store.conn.execute(
        "INSERT INTO inbound (dedupe_key, channel, user_id, msg_type, content, at, received_at, raw) "
        "VALUES ('oa:msg:424242', 'oa', ?, 'text', '楼道里有积水', 1, 1, ?)", (r["oa_openid"], xml))
    (msg,) = inbound.pending(sim.app)
    assert (msg.text, msg.msg_id, msg.resident["id"]) == ("楼道里有积水", "424242", r["id"])
