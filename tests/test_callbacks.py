"""Callbacks through the real aiohttp app: signed and encrypted with wechatpy's own crypto."""
from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
import xmltodict
from aiohttp.test_utils import make_mocked_request
from helpers_callbacks import (
    NOW,
    OA,
    OTHER_KEY,
    REQUESTS,
    add_resident,
    client_for,
    envelope_request,
    event_xml,
    make_app,
    make_settings,
    oa_aes_request,
    oa_plain_request,
    path_of,
    settings_for,
    text_xml,
    wecom_request,
)
from wechatpy.utils import WeChatSigner

from bot.core import texts
from bot.core.clock import FakeClock
from bot.transports.inbound.routes import TooLarge, read_capped

DATA = Path(__file__).parent / "data"
BOMB = (DATA / "billion_laughs.xml").read_text()
XXE = (DATA / "xxe.xml").read_text()
XXE_PARAM = (DATA / "xxe_parameter.xml").read_text()


def rows(app, table):
    return app.store.q(f"SELECT * FROM {table} ORDER BY id")


async def post(app, kind, query, body, **kw):
    async with client_for(app) as client:
        resp = await client.post(path_of(kind), params=query, data=body, **kw)
        text = await resp.text()
        await app.settle()
        return resp.status, text


# -- URL verification -------------------------------------------------------------------

SAMPLE = {"msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "timestamp": "1409659589",
          "nonce": "263014780",
          "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8T"
                     "gAE7OaBO+FZXvnaqQ=="}
SAMPLE_WECOM = dict(corp_id="wx5823bf96d3bd56c7", token="QDG6eK",
                    encoding_aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")


@pytest.mark.parametrize("window, query, status, body", [
    (0, SAMPLE, 200, "1616140317555161061"),  # the published sample
    (0, {**SAMPLE, "msg_signature": "0" * 40}, 403, ""),  # forged
    (0, {k: v for k, v in SAMPLE.items() if k != "msg_signature"}, 403, ""),  # missing
    (0, {**SAMPLE, "echostr": SAMPLE["echostr"][:-4] + "AAA="}, 403, ""),  # tampered echo
    (300, SAMPLE, 403, ""),  # the sample is from 2014: stale once freshness is checked
])
async def test_wecom_url_verification(tmp_path, window, query, status, body):
    app = make_app(make_settings(tmp_path, server={"timestamp_window_s": window},
                                 wecom=SAMPLE_WECOM))
    async with client_for(app) as client:
        resp = await client.get("/wecom/callback", params=query)
        assert resp.status == status
        if status == 200:
            assert await resp.text() == body


def _oa_verify_query(ts=NOW, nonce="n", token=OA["token"]):
    signer = WeChatSigner()
    signer.add_data(token, str(ts), nonce)
    return {"signature": signer.signature, "timestamp": str(ts), "nonce": nonce,
            "echostr": "8432151923"}


@pytest.mark.parametrize("query, status", [
    (_oa_verify_query(), 200),
    (_oa_verify_query(token="wrong"), 403),
    (_oa_verify_query(ts=NOW - 301), 403),
    ({"timestamp": str(NOW), "nonce": "n", "echostr": "1"}, 403),
])
async def test_oa_url_verification(tmp_path, query, status):
    app = make_app(make_settings(tmp_path))
    async with client_for(app) as client:
        resp = await client.get("/oa/callback", params=query)
        assert resp.status == status
        if status == 200:
            assert await resp.text() == "8432151923"


async def test_unconfigured_channel_is_404(tmp_path):
    app = make_app(make_settings(tmp_path, oa={"app_id": "", "token": ""}))
    query, body = oa_plain_request(text_xml())
    assert (await post(app, "oa", query, body))[0] == 404


# -- round trips ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["wecom", "oa", "oa_plain"])
async def test_text_round_trip_unknown_user_gets_register_reply(tmp_path, kind):
    app = make_app(settings_for(tmp_path, kind))
    query, body = REQUESTS[kind](text_xml(user="stranger", content="楼道积水了", msg_id="777"))
    assert await post(app, kind, query, body) == (200, "success")
    channel = "wecom" if kind == "wecom" else "oa"
    [row] = rows(app, "inbound")
    assert row["dedupe_key"] == f"{channel}:msg:777"
    assert (row["channel"], row["user_id"], row["msg_type"], row["content"]) == (
        channel, "stranger", "text", "楼道积水了")
    assert (row["state"], row["resident_id"], row["at"]) == ("done", None, NOW)
    assert "<Content><![CDATA[楼道积水了]]></Content>" in row["raw"]  # decrypted XML kept
    [send] = rows(app, "sends")
    assert send["key"] == f"reply:{row['id']}:1"
    assert send["channel"] == ("wecom_user" if kind == "wecom" else "oa_cs")
    assert send["target"] == "stranger" and send["purpose"] == "reply"
    assert json.loads(send["payload"]) == {
        "text": texts.render("messages/onboarding_unregistered.j2"), "dedupe": False}


@pytest.mark.parametrize("kind", ["wecom", "oa", "oa_plain"])
async def test_event_round_trip(tmp_path, kind):
    app = make_app(settings_for(tmp_path, kind))
    query, body = REQUESTS[kind](event_xml(user="u1", event="CLICK", key="menu_help"))
    assert await post(app, kind, query, body) == (200, "success")
    channel = "wecom" if kind == "wecom" else "oa"
    [row] = rows(app, "inbound")
    assert row["dedupe_key"] == f"{channel}:evt:u1:{NOW}:click:menu_help"
    assert (row["msg_type"], row["event"], row["state"]) == ("event", "click", "done")
    assert rows(app, "sends") == []  # nobody wrote anything: no answer


@pytest.mark.parametrize("kind", ["oa", "oa_plain"])
async def test_oa_subscribe_gets_welcome(tmp_path, kind):
    app = make_app(settings_for(tmp_path, kind))
    add_resident(app, name="李四", openid="o-li")
    query, body = REQUESTS[kind](event_xml(user="o-li", event="subscribe"))
    assert await post(app, kind, query, body) == (200, "success")
    [send] = rows(app, "sends")
    assert json.loads(send["payload"])["text"] == texts.render(
        "messages/onboarding_welcome.j2", resident={"name": "李四"})


async def test_known_resident_is_resolved_and_gets_fallback(tmp_path):
    app = make_app(make_settings(tmp_path))
    rid = add_resident(app, name="王楼长", roles="building_lead,resident", wecom="lead1")
    add_resident(app, name="离开的人", wecom="gone", active=0)
    query, body = wecom_request(text_xml(user="lead1", content="谢谢", msg_id="5"))
    assert await post(app, "wecom", query, body) == (200, "success")
    [row] = rows(app, "inbound")
    assert row["resident_id"] == rid
    [send] = rows(app, "sends")
    assert json.loads(send["payload"])["text"] == texts.render(
        "messages/fallback_help.j2", resident_name="王楼长", roles=["building_lead", "resident"])
    # an inactive register row counts as unknown
    query, body = wecom_request(text_xml(user="gone", msg_id="6"))
    await post(app, "wecom", query, body)
    assert rows(app, "inbound")[1]["resident_id"] is None


# -- exactly once -------------------------------------------------------------------------

@pytest.mark.parametrize("xml", [text_xml(msg_id="42"), event_xml(event="enter_agent")])
async def test_platform_retry_is_processed_once(tmp_path, xml):
    app = make_app(make_settings(tmp_path))
    query, body = wecom_request(xml)
    async with client_for(app) as client:
        for _ in range(3):  # the platform retries three times
            resp = await client.post("/wecom/callback", params=query, data=body)
            assert (resp.status, await resp.text()) == (200, "success")
        await app.settle()
    assert len(rows(app, "inbound")) == 1
    assert len(rows(app, "sends")) == (1 if "text" in xml else 0)


async def test_events_differing_in_time_or_key_are_distinct(tmp_path):
    app = make_app(make_settings(tmp_path))
    async with client_for(app) as client:
        for xml in (event_xml(key="a"), event_xml(key="b"), event_xml(key="a", at=NOW + 1)):
            query, body = wecom_request(xml)
            await client.post("/wecom/callback", params=query, data=body)
        await app.settle()
    assert len(rows(app, "inbound")) == 3


async def test_same_msgid_after_restart_is_processed_once(tmp_path):
    settings = make_settings(tmp_path)
    query, body = oa_aes_request(text_xml(user="o-x", msg_id="99"))
    first = make_app(settings)
    assert await post(first, "oa", query, body) == (200, "success")
    first.store.close()

    second = make_app(settings)  # a new process on the same SQLite file
    assert await post(second, "oa", query, body) == (200, "success")
    assert len(rows(second, "inbound")) == 1
    assert len(rows(second, "sends")) == 1


async def test_answers_before_dispatch_finishes(tmp_path):
    app = make_app(make_settings(tmp_path))
    release = asyncio.Event()

    async def slow_dispatch(msg):
        await release.wait()

    app.dispatcher.dispatch = slow_dispatch
    query, body = wecom_request(text_xml())
    async with client_for(app) as client:
        resp = await client.post("/wecom/callback", params=query, data=body)
        assert await resp.text() == "success"
        assert rows(app, "inbound")[0]["state"] == "new"  # still being handled
        release.set()
        await app.settle()
    assert rows(app, "inbound")[0]["state"] == "done"


async def test_dispatch_failure_is_recorded(tmp_path):
    app = make_app(make_settings(tmp_path))

    async def broken(msg):
        raise RuntimeError("template missing")

    app.dispatcher.dispatch = broken
    query, body = wecom_request(text_xml())
    assert await post(app, "wecom", query, body) == (200, "success")
    [row] = rows(app, "inbound")
    assert (row["state"], row["error"]) == ("failed", "RuntimeError: template missing")


# -- refused input ------------------------------------------------------------------------

def _wrong(kind, **kw):
    make = {"wecom": wecom_request, "oa": oa_aes_request}[kind]
    return make(text_xml(), **kw)


def _resign(kind, body):
    """Same body, valid signature: isolates what comes after the signature check."""
    return envelope_request(kind, body), body


BAD = [
    # (id, kind, (query, body), status)
    ("wecom-forged-signature", "wecom",
     ({**wecom_request(text_xml())[0], "msg_signature": "f" * 40}, wecom_request(text_xml())[1]),
     403),
    ("wecom-no-signature", "wecom",
     ({"timestamp": str(NOW), "nonce": "n"}, wecom_request(text_xml())[1]), 403),
    ("wecom-other-token", "wecom", _wrong("wecom", token="intruder"), 403),
    ("wecom-wrong-aes-key", "wecom", _wrong("wecom", key=OTHER_KEY), 403),
    ("wecom-wrong-corp-id", "wecom", _wrong("wecom", corp_id="wwsomeoneelse"), 403),
    ("wecom-stale", "wecom", wecom_request(text_xml(), ts=NOW - 301), 403),
    ("wecom-future", "wecom", wecom_request(text_xml(), ts=NOW + 301), 403),
    ("wecom-huge-timestamp", "wecom", wecom_request(text_xml(), ts=10**400), 403),
    ("wecom-no-timestamp", "wecom",
     ({"msg_signature": "a" * 40, "nonce": "n"}, wecom_request(text_xml())[1]), 403),
    ("oa-forged-msg-signature", "oa",
     ({**oa_aes_request(text_xml())[0], "msg_signature": "f" * 40},
      oa_aes_request(text_xml())[1]), 403),
    ("oa-wrong-aes-key", "oa", _wrong("oa", key=OTHER_KEY), 403),
    ("oa-wrong-app-id", "oa", _wrong("oa", app_id="wxsomeoneelse"), 403),
    ("oa-stale", "oa", oa_aes_request(text_xml(), ts=NOW - 301), 403),
    ("oa-plain-forged", "oa_plain",
     ({**oa_plain_request(text_xml())[0], "signature": "0" * 40}, text_xml()), 403),
    ("oa-plain-no-signature", "oa_plain", ({"timestamp": str(NOW), "nonce": "n"}, text_xml()), 403),
    ("oa-plain-stale", "oa_plain", oa_plain_request(text_xml(), ts=NOW - 301), 403),
    # malformed envelopes: refused by the parser, before any signature is looked at
    ("wecom-not-xml", "wecom", _resign("wecom", b"hello"), 400),
    ("wecom-truncated", "wecom", _resign("wecom", b"<xml><Encrypt>abc"), 400),
    ("wecom-empty", "wecom", _resign("wecom", b""), 400),
    ("wecom-binary", "wecom", _resign("wecom", bytes(range(256))), 400),
    ("wecom-no-encrypt", "wecom", _resign("wecom", b"<xml><A>1</A></xml>"), 400),
    ("wecom-nested-encrypt", "wecom",
     _resign("wecom", b"<xml><Encrypt><x>1</x></Encrypt></xml>"), 400),
    ("wecom-text-root", "wecom", _resign("wecom", b"<xml>just text</xml>"), 400),
    ("wecom-billion-laughs", "wecom", _resign("wecom", BOMB), 400),
    ("wecom-xxe", "wecom", _resign("wecom", XXE), 400),
    ("wecom-xxe-parameter", "wecom", _resign("wecom", XXE_PARAM), 400),
    ("oa-billion-laughs", "oa", _resign("oa", BOMB), 400),
    ("oa-xxe", "oa", _resign("oa", XXE), 400),
    ("wecom-bomb-unsigned", "wecom", ({"timestamp": str(NOW)}, BOMB), 400),
    # hostile XML inside a correctly signed and encrypted envelope
    ("wecom-inner-billion-laughs", "wecom", wecom_request(BOMB), 400),
    ("wecom-inner-xxe", "wecom", wecom_request(XXE), 400),
    ("oa-inner-xxe", "oa", oa_aes_request(XXE), 400),
    ("wecom-inner-not-xml", "wecom", wecom_request("not xml"), 400),
    ("wecom-inner-no-msgtype", "wecom",
     wecom_request("<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime></xml>"), 400),
    ("wecom-inner-no-sender", "wecom",
     wecom_request(f"<xml><MsgType>text</MsgType><CreateTime>{NOW}</CreateTime></xml>"), 400),
    ("wecom-inner-bad-time", "wecom", wecom_request(text_xml(at="yesterday")), 400),
    ("wecom-inner-huge-time", "wecom", wecom_request(text_xml(at=10**400)), 400),
    ("wecom-inner-bad-msgid", "wecom", wecom_request(text_xml(msg_id="x1")), 400),
    ("wecom-inner-event-without-name", "wecom",
     wecom_request(f"<xml><FromUserName>u</FromUserName><CreateTime>{NOW}</CreateTime>"
                   "<MsgType>event</MsgType></xml>"), 400),
    # plain mode: signature first (it doesn't cover the body), then the parser
    ("oa-plain-billion-laughs", "oa_plain", oa_plain_request(BOMB), 400),
    ("oa-plain-xxe", "oa_plain", oa_plain_request(XXE), 400),
    ("oa-plain-not-utf8", "oa_plain", oa_plain_request("<xml>\xff</xml>".encode("latin-1")), 400),
    ("oa-plain-empty", "oa_plain", oa_plain_request(""), 400),
]


@pytest.mark.parametrize("kind, request_, status", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_refused_input(tmp_path, kind, request_, status, caplog):
    app = make_app(settings_for(tmp_path, kind))
    query, body = request_
    assert (await post(app, kind, query, body))[0] == status
    assert "unexpectedly" not in caplog.text  # refused for a known reason, not by the catch-all
    assert rows(app, "inbound") == [] and rows(app, "sends") == []


async def test_window_zero_accepts_old_timestamps(tmp_path):
    app = make_app(make_settings(tmp_path, server={"timestamp_window_s": 0}),
                   clock=FakeClock(NOW + 10 * 365 * 86400))
    query, body = wecom_request(text_xml(), ts=NOW)
    assert await post(app, "wecom", query, body) == (200, "success")


@pytest.mark.parametrize("payload", [BOMB, XXE, XXE_PARAM])
def test_xmltodict_refuses_entity_declarations(payload):
    with pytest.raises(ValueError, match="entities are disabled"):
        xmltodict.parse(payload)


# -- body size ------------------------------------------------------------------------------

LIMIT = 2048


async def test_body_over_limit_is_413_before_parsing(tmp_path, monkeypatch):
    app = make_app(make_settings(tmp_path, server={"max_body_bytes": LIMIT}))
    parsed = []
    monkeypatch.setattr("bot.transports.inbound.wecom.parse_envelope", parsed.append)
    query, _ = wecom_request(text_xml())
    status, _ = await post(app, "wecom", query, b"<xml>" + b"a" * LIMIT + b"</xml>")
    assert status == 413 and parsed == []


async def test_chunked_body_over_limit_is_413(tmp_path):
    app = make_app(make_settings(tmp_path, server={"max_body_bytes": LIMIT}))

    async def chunks():  # no Content-Length: only reading can tell
        for _ in range(10):
            yield b"x" * 512

    query, _ = wecom_request(text_xml())
    assert (await post(app, "wecom", query, chunks()))[0] == 413


async def test_body_at_limit_is_read(tmp_path):
    query, body = wecom_request(text_xml())
    app = make_app(make_settings(tmp_path, server={"max_body_bytes": len(body.encode())}))
    assert await post(app, "wecom", query, body) == (200, "success")


@pytest.mark.parametrize("length, chunks, too_large", [
    (None, [b"a" * 10, b"b" * 10], False),
    (None, [b"a" * 10, b"b" * 11], True),
    (21, [b"a" * 21], True),  # Content-Length alone is enough to refuse
])
async def test_read_capped(length, chunks, too_large):
    class Stream:
        async def iter_chunked(self, n):
            for c in chunks:
                yield c

    headers = {"Content-Length": str(length)} if length is not None else {}
    request = make_mocked_request("POST", "/wecom/callback", headers=headers, payload=Stream())
    if too_large:
        with pytest.raises(TooLarge):
            await read_capped(request, 20)
    else:
        assert await read_capped(request, 20) == b"".join(chunks)


async def test_mangled_requests_never_get_a_500(tmp_path, caplog):
    """Deterministic fuzz: byte flips, truncations and odd query values on valid requests."""
    rnd = random.Random(7)
    app = make_app(make_settings(tmp_path))
    seeds = [("wecom", wecom_request(text_xml())), ("oa", oa_aes_request(event_xml())),
             ("oa_plain", oa_plain_request(text_xml()))]
    statuses = set()
    async with client_for(app) as client:
        for i in range(150):
            kind, (query, body) = seeds[i % 3]
            data = bytearray(body.encode() if isinstance(body, str) else body)
            if i % 5 == 0:
                data = data[: rnd.randrange(len(data))]
            else:
                for _ in range(rnd.randint(1, 4)):
                    data[rnd.randrange(len(data))] = rnd.randrange(256)
            q = dict(query)
            if i % 7 == 0:
                q[rnd.choice(list(q))] = rnd.choice(["", "\u4e2d", "-1", "1e99", "x" * 300])
            resp = await client.post(path_of(kind), params=q, data=bytes(data))
            statuses.add(resp.status)
        await app.settle()
    assert statuses <= {200, 400, 403}
    assert "unexpectedly" not in caplog.text


async def test_messages_left_unprocessed_by_a_crash_are_resumed(tmp_path):
    from bot.transports.inbound import inbox as inbound

    settings = make_settings(tmp_path)
    first = make_app(settings)

    async def crash(msg):  # the process dies after answering "success", before handling
        raise asyncio.CancelledError

    first.dispatcher.dispatch = crash
    query, body = oa_aes_request(text_xml(user="o-y", msg_id="1001"))
    async with client_for(first) as client:
        await client.post("/oa/callback", params=query, data=body)
        await asyncio.gather(*first._tasks, return_exceptions=True)
    assert rows(first, "inbound")[0]["state"] == "new"
    first.store.close()

    second = make_app(settings)
    assert await inbound.resume(second) == 1
    await second.settle()
    [row] = rows(second, "inbound")
    assert row["state"] == "done"
    assert [s["key"] for s in rows(second, "sends")] == [f"reply:{row['id']}:1"]
    assert await inbound.resume(second) == 0
