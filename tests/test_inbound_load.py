"""Recording under load: a valid message is never answered 4xx (the platform does not retry
those: it would be lost), concurrent callbacks share one commit, slow and vanishing clients
are dealt with in one line each.

No test sleeps for real time: the write lock is held by a real second connection, the give-up
deadline is 0 or driven by an injected clock, and body timeouts are forced on a body that
never arrives."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from contextlib import asynccontextmanager

from aiohttp import web
from helpers_callbacks import NOW, client_for, make_app, make_settings, text_xml, wecom_request

from bot.data import inbox as rows
from bot.transports.inbound import inbox


def inbound_rows(app):
    return app.store.q("SELECT * FROM inbound ORDER BY id")


def as_front(app):
    """What `linli serve --fronts N` does to a front's app (bot/server.py serve_front)."""
    app.role, app.dispatch_inline = "front", False
    app.record_conn = sqlite3.connect(app.store.path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "busy_timeout=0"):
        app.record_conn.execute(f"PRAGMA {pragma}")
    return app


def hold_write_lock(path):
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_valid_message_whose_record_times_out_gets_503_then_its_retry_lands(tmp_path, monkeypatch, caplog):
    # give up at the first busy answer
    app = as_front(make_app(make_settings(tmp_path, server={"record_give_up_s": 0.0})))
    query, body = wecom_request(text_xml(msg_id="61"))
    locker = hold_write_lock(app.store.path)  # the worker (or another front) holds the lock
    async with client_for(app) as client:
        resp = await client.post("/wecom/callback", params=query, data=body)
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        locker.execute("ROLLBACK")
        retry = await client.post("/wecom/callback", params=query, data=body)  # the platform's retry
        assert (retry.status, await retry.text()) == (200, "success")
    assert len(inbound_rows(app)) == 1
    assert "not recorded in time, answered 503" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_broken_store_answers_503_not_400(tmp_path, monkeypatch):
    app = make_app(make_settings(tmp_path))

    def broken(conn, entries, now):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(rows, "record_batch", broken)
    query, body = wecom_request(text_xml(msg_id="62"))
    async with client_for(app) as client:
        resp = await client.post("/wecom/callback", params=query, data=body)
    assert resp.status == 503


async def test_waiting_for_the_lock_is_not_giving_up(tmp_path):
    """Within the deadline a busy store is waited for (asyncio sleeps, other requests run);
    callbacks arriving meanwhile join the batch that commits when the lock is free."""
    app = as_front(make_app(make_settings(tmp_path)))
    now = [0.0]
    locker = hold_write_lock(app.store.path)
    sleeps = []

    async def fake_sleep(s):
        sleeps.append(s)
        now[0] += s
        if len(sleeps) == 3:
            locker.execute("ROLLBACK")  # the lock frees after three waits
        await asyncio.sleep(0)

    rec = inbox.Recorder(app, monotonic=lambda: now[0], sleep=fake_sleep)
    msgs = [inbox.entry_for(app, _msg(i), resident=None) for i in range(40)]
    results = await asyncio.gather(*(rec.record(m, give_up_s=3.0) for m in msgs))
    assert [r[0] for r in results] == [rows.RECORDED] * 40
    assert len(sleeps) == 3 and rec.commits == 1
    assert len(inbound_rows(app)) == 40


async def test_only_callbacks_past_their_deadline_give_up(tmp_path):
    app = as_front(make_app(make_settings(tmp_path)))
    now = [0.0]
    locker = hold_write_lock(app.store.path)

    async def fake_sleep(s):
        now[0] += 1.0  # each wait costs a second of the deadline
        if now[0] >= 2.0:
            locker.execute("ROLLBACK") if locker.in_transaction else None
        await asyncio.sleep(0)

    rec = inbox.Recorder(app, monotonic=lambda: now[0], sleep=fake_sleep)
    early = rec.record(inbox.entry_for(app, _msg(1), resident=None), give_up_s=0.5)
    patient = rec.record(inbox.entry_for(app, _msg(2), resident=None), give_up_s=3.0)
    out = await asyncio.gather(early, patient, return_exceptions=True)
    assert isinstance(out[0], inbox.RecordTimeout)
    assert out[1] == (rows.RECORDED, 1)


async def test_concurrent_callbacks_are_one_commit(tmp_path):
    app = as_front(make_app(make_settings(tmp_path)))
    rec = inbox.Recorder(app)
    entries = [inbox.entry_for(app, _msg(i), resident=None) for i in range(300)]
    out = await asyncio.gather(*(rec.record(e, give_up_s=3.0) for e in entries))
    assert rec.commits == 1
    assert sorted(i for _, i in out) == list(range(1, 301))


async def test_a_batch_keeps_per_message_outcomes(tmp_path):
    app = make_app(make_settings(tmp_path))
    rec = inbox.Recorder(app)
    a, dup = inbox.entry_for(app, _msg(1), resident=None), inbox.entry_for(app, _msg(1), resident=None)
    out = await asyncio.gather(rec.record(a, give_up_s=1), rec.record(dup, give_up_s=1))
    assert out == [(rows.RECORDED, 1), (rows.DUPLICATE, None)]


def _msg(i):
    from bot.core.models import Inbound

    return Inbound(channel="wecom", user_id=f"u{i}", msg_type="text", text="收到", msg_id=str(1000 + i),
                   at=NOW, raw=text_xml(msg_id=str(1000 + i)))


# -- slow and vanishing clients ---------------------------------------------------------------

@asynccontextmanager
async def production_server(app):
    """The app served as `linli serve` serves it (bot/server.py start_app): unlike aiohttp's
    TestServer, handlers are not cancelled when the client goes away, so the route sees it."""
    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _raw_post(port, head_and_partial_body: bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head_and_partial_body)
    await writer.drain()
    return reader, writer


def _head(query: str, length: int) -> bytes:
    return (f"POST /wecom/callback?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def test_half_sent_body_gets_408_and_the_connection_closes(tmp_path, monkeypatch, caplog):
    # the rest of the body never comes
    app = make_app(make_settings(tmp_path, server={"body_read_timeout_s": 0.01}))
    query, body = wecom_request(text_xml(msg_id="71"))
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    async with production_server(app) as port:
        reader, writer = await _raw_post(port, _head(qs, len(body)) + body[:20].encode())
        # read() = until the server closes; without closing, aiohttp would linger 10 s more
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert inbound_rows(app) == []
    assert "body not received within" in caplog.text


async def test_a_client_that_disconnects_mid_body_is_one_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    app = make_app(make_settings(tmp_path))
    query, body = wecom_request(text_xml(msg_id="72"))
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    async with production_server(app) as port:
        for _ in range(3):
            reader, writer = await _raw_post(port, _head(qs, len(body)) + body[:20].encode())
            writer.transport.abort()  # gone, as a platform connection dropped on a timeout
        for _ in range(500):  # until the server has noticed all three (no fixed sleep)
            if caplog.text.count("client went away") == 3:
                break
            await asyncio.sleep(0.01)
    went = [r for r in caplog.records if "client went away" in r.getMessage()]
    assert len(went) == 3
    assert all(r.exc_info is None for r in caplog.records)  # nobody logged a traceback
    assert inbound_rows(app) == []


async def test_body_timeout_zero_turns_it_off(tmp_path, monkeypatch):
    app = make_app(make_settings(tmp_path, server={"body_read_timeout_s": 0}))
    query, body = wecom_request(text_xml(msg_id="73"))
    async with client_for(app) as client:
        resp = await client.post("/wecom/callback", params=query, data=body)
        assert resp.status == 200
