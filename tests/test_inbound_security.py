"""Who may post a message: plain-mode OA messages in safe mode, and replayed signatures.

Plain mode's signature is sha1(token, timestamp, nonce): it does not cover the body, so one
callback URL seen in a log lets anyone post any message as any resident until the timestamp
goes stale. Both holes are closed in the route; these tests would have passed 20 forgeries.
"""
from __future__ import annotations

import sqlite3

from helpers_callbacks import (
    NOW,
    client_for,
    make_app,
    make_settings,
    oa_aes_request,
    oa_plain_request,
    settings_for,
    text_xml,
    wecom_request,
)

from bot.data import inbox as rows


def inbound_rows(app):
    return app.store.q("SELECT * FROM inbound ORDER BY id")


async def test_plain_message_refused_when_safe_mode_is_configured(tmp_path, caplog):
    app = make_app(make_settings(tmp_path))  # [oa] encoding_aes_key set: safe mode
    statuses = []
    async with client_for(app) as client:
        for i in range(20):  # one captured triple, twenty forged bodies
            query, _ = oa_plain_request(text_xml(user="o-victim", msg_id="1"), nonce="seen-once")
            body = text_xml(user=f"o-victim{i}", content="我家着火了", msg_id=str(100 + i))
            resp = await client.post("/oa/callback", params=query, data=body)
            statuses.append(resp.status)
        await app.settle()
    assert statuses == [403] * 20
    assert inbound_rows(app) == []
    assert "safe mode is configured" in caplog.text


async def test_safe_mode_still_accepts_encrypted_messages(tmp_path):
    app = make_app(make_settings(tmp_path))
    query, body = oa_aes_request(text_xml(user="o-1", msg_id="7"))
    async with client_for(app) as client:
        resp = await client.post("/oa/callback", params=query, data=body)
        assert (resp.status, await resp.text()) == (200, "success")
        await app.settle()
    assert len(inbound_rows(app)) == 1


async def test_plain_mode_replayed_nonce_with_another_body_is_refused(tmp_path, caplog):
    """Plain-only deployment (no AES key): the pair (timestamp, nonce) of a recorded callback
    is remembered with its body's hash; another body under it is a forgery."""
    app = make_app(settings_for(tmp_path, "oa_plain"))
    query, body = oa_plain_request(text_xml(user="o-a", content="收到", msg_id="11"))
    forged = text_xml(user="o-b", content="需要帮助", msg_id="12")
    async with client_for(app) as client:
        first = await client.post("/oa/callback", params=query, data=body)
        statuses = [(await client.post("/oa/callback", params=query, data=forged)).status
                    for _ in range(20)]
        await app.settle()
    assert first.status == 200
    assert statuses == [403] * 20
    assert [r["user_id"] for r in inbound_rows(app)] == ["o-a"]
    assert "replayed signature" in caplog.text


async def test_the_same_request_again_is_a_duplicate_not_a_replay(tmp_path):
    """If the platform's retry reuses timestamp and nonce, it carries the same body: it gets
    "success" and is deduplicated by MsgId, as before."""
    app = make_app(settings_for(tmp_path, "oa_plain"))
    query, body = oa_plain_request(text_xml(user="o-a", msg_id="21"))
    async with client_for(app) as client:
        answers = []
        for _ in range(3):
            resp = await client.post("/oa/callback", params=query, data=body)
            answers.append((resp.status, await resp.text()))
        await app.settle()
    assert answers == [(200, "success")] * 3
    assert len(inbound_rows(app)) == 1


async def test_nonce_memory_is_shared_by_front_processes(tmp_path):
    """Fronts share the port (SO_REUSEPORT): the replay may land on another process. The memory
    is a table in the shared SQLite file, so it does not matter which."""
    settings = settings_for(tmp_path, "oa_plain")
    front_a, front_b = make_app(settings), make_app(settings)
    for app in (front_a, front_b):
        app.role, app.dispatch_inline = "front", False
        app.record_conn = sqlite3.connect(app.store.path, isolation_level=None)
        app.record_conn.execute("PRAGMA busy_timeout=0")
    query, body = oa_plain_request(text_xml(user="o-a", msg_id="31"))
    async with client_for(front_a) as a, client_for(front_b) as b:
        assert (await a.post("/oa/callback", params=query, data=body)).status == 200
        forged = text_xml(user="o-z", msg_id="32")
        assert (await b.post("/oa/callback", params=query, data=forged)).status == 403
    assert [r["user_id"] for r in inbound_rows(front_a)] == ["o-a"]


async def test_wecom_nonce_is_remembered_too(tmp_path):
    app = make_app(make_settings(tmp_path))
    query, body = wecom_request(text_xml(msg_id="41"), nonce="fixed")
    async with client_for(app) as client:
        assert (await client.post("/wecom/callback", params=query, data=body)).status == 200
        await app.settle()
    [nonce] = app.store.q("SELECT * FROM callback_nonces")
    assert (nonce["channel"], nonce["timestamp"], nonce["nonce"]) == ("wecom", str(NOW), "fixed")
    # remembered exactly as long as the freshness check would accept the timestamp
    assert nonce["expires_at"] == NOW + app.settings.server.timestamp_window_s + 1


async def test_a_message_that_was_not_recorded_leaves_no_nonce(tmp_path, monkeypatch):
    """A 503 (record failed) must not poison the pair: the retry must get through."""
    app = make_app(settings_for(tmp_path, "oa_plain"))
    query, body = oa_plain_request(text_xml(user="o-a", msg_id="51"))
    real = rows.record_batch

    def locked(conn, entries, now):
        raise sqlite3.OperationalError("database is locked")

    async with client_for(app) as client:
        monkeypatch.setattr(rows, "record_batch", locked)
        import dataclasses
        monkeypatch.setattr(app, "settings", dataclasses.replace(
            app.settings, server=dataclasses.replace(app.settings.server, record_give_up_s=0.0)))
        assert (await client.post("/oa/callback", params=query, data=body)).status == 503
        monkeypatch.setattr(rows, "record_batch", real)
        assert (await client.post("/oa/callback", params=query, data=body)).status == 200
        await app.settle()
    assert len(inbound_rows(app)) == 1


def _entry(**kw):
    base = dict(dedupe_key="oa:msg:1", channel="oa", user_id="u", resident_id=None, chat_id=None,
                msg_type="text", content="x", event=None, at=NOW, raw="<xml/>", fields="{}",
                timestamp=str(NOW), nonce="n1", body_hash="h1", nonce_expires_at=NOW + 301)
    return rows.Entry(**{**base, **kw})


def test_an_expired_nonce_is_forgotten(tmp_path):
    """With the pair past its window (only reachable with the freshness check off, or before
    pruning ran), the pair is free again rather than refusing forever."""
    from bot.data.store import Store

    store = Store(tmp_path / "n.db")
    assert rows.record_batch(store.conn, [_entry()], NOW) == [(rows.RECORDED, 1)]
    replay = _entry(dedupe_key="oa:msg:2", body_hash="h2")
    assert rows.record_batch(store.conn, [replay], NOW + 10) == [(rows.REPLAY, None)]
    assert rows.record_batch(store.conn, [replay], NOW + 400)[0][0] == rows.RECORDED
    assert rows.prune(store, handled_before=0, nonces_before=NOW + 10_000) == (0, 1)
    assert store.q("SELECT * FROM callback_nonces") == []
