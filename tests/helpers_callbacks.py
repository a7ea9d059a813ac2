"""Building correctly signed (and encrypted) callbacks, and apps to send them to."""
from __future__ import annotations

import dataclasses
import hashlib
from contextlib import asynccontextmanager

import xmltodict
from aiohttp.test_utils import TestClient, TestServer
from fakes import RecordingOutbox
from wechatpy.crypto import WeChatCrypto as OaCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WecomCrypto
from wechatpy.utils import WeChatSigner

from bot.app import App
from bot.core.clock import FakeClock
from bot.core.config import load

WECOM = dict(corp_id="wwtestcorp000001", agent_id=1000002, token="WecomTestToken",
             encoding_aes_key="DoGSgGYHvHZ1kpKiLeN/CkVCF2nfZMlKuaRTqkebPek")
OA = dict(app_id="wxtestapp0000001", token="OaTestToken",
          encoding_aes_key="IAwXHcDruPbdm2v2HhxYwWPtMLgYWsckWfoHVwFg8KA")
OTHER_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
NOW = 1_717_200_000


def make_settings(tmp_path, *, server=None, wecom=None, oa=None):
    s = load(None, env={})
    return dataclasses.replace(
        s,
        store=dataclasses.replace(s.store, path=str(tmp_path / "linli.db")),
        server=dataclasses.replace(s.server, **(server or {})),
        wecom=dataclasses.replace(s.wecom, **{**WECOM, **(wecom or {})}),
        oa=dataclasses.replace(s.oa, **{**OA, **(oa or {})}),
    )


def settings_for(tmp_path, kind, **kw):
    """Settings a `kind` of request (see REQUESTS) is accepted under: plain-mode OA messages only
    where no encoding_aes_key is configured (with one, the platform encrypts everything)."""
    if kind == "oa_plain":
        kw["oa"] = {"encoding_aes_key": "", **(kw.get("oa") or {})}
    return make_settings(tmp_path, **kw)


def make_app(settings, clock=None) -> App:
    app = App(settings, clock=clock or FakeClock(NOW))
    app.outbox = RecordingOutbox(app)
    return app


@asynccontextmanager
async def client_for(app: App):
    async with TestClient(TestServer(app.web_app())) as client:
        yield client


def add_resident(app, *, name="王阿姨", roles="resident", wecom=None, openid=None,
                 active=1) -> int:
    cur = app.store.conn.execute(
        "INSERT INTO residents (key, name, roles, wecom_userid, oa_openid, active) "
        "VALUES (?,?,?,?,?,?)", (f"k-{name}-{wecom}-{openid}", name, roles, wecom, openid, active))
    return cur.lastrowid


# -- message XML -------------------------------------------------------------------------

def text_xml(user="zhangsan", content="你好", msg_id="1234567890123456", at=NOW, to="wwtest"):
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
            f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{at}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
            f"<MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>")


def event_xml(user="zhangsan", event="subscribe", key="", at=NOW, to="wwtest"):
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
            f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{at}</CreateTime>"
            f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>"
            f"<EventKey><![CDATA[{key}]]></EventKey><AgentID>1000002</AgentID></xml>")


# -- signed requests: (query, body) ------------------------------------------------------

def _signature(token, *parts):
    signer = WeChatSigner()
    signer.add_data(token, *parts)
    return signer.signature


def _nonce(xml) -> str:
    """A request's nonce, derived from its message: a different message gets a different nonce
    (as on the platform), the same message the same one (a retry of the same request)."""
    data = xml if isinstance(xml, bytes) else str(xml).encode()
    return "n" + hashlib.sha1(data).hexdigest()[:12]


def wecom_request(xml, *, ts=NOW, nonce=None, token=WECOM["token"],
                  key=WECOM["encoding_aes_key"], corp_id=WECOM["corp_id"]):
    nonce = nonce or _nonce(xml)
    body = WecomCrypto(token, key, corp_id).encrypt_message(xml, nonce, str(ts))
    sig = xmltodict.parse(body)["xml"]["MsgSignature"]
    return {"msg_signature": sig, "timestamp": str(ts), "nonce": nonce}, body


def oa_aes_request(xml, *, ts=NOW, nonce=None, token=OA["token"],
                   key=OA["encoding_aes_key"], app_id=OA["app_id"]):
    nonce = nonce or _nonce(xml)
    body = OaCrypto(token, key, app_id).encrypt_message(xml, nonce, str(ts))
    sig = xmltodict.parse(body)["xml"]["MsgSignature"]
    return {"signature": _signature(token, str(ts), nonce), "timestamp": str(ts),
            "nonce": nonce, "openid": "o1", "encrypt_type": "aes", "msg_signature": sig}, body


def oa_plain_request(xml, *, ts=NOW, nonce=None, token=OA["token"]):
    nonce = nonce or _nonce(xml)
    return {"signature": _signature(token, str(ts), nonce), "timestamp": str(ts),
            "nonce": nonce, "openid": "o1"}, xml


def envelope_request(channel, body, *, ts=NOW, nonce=None):
    """Query params signed over an arbitrary envelope body (used for hostile bodies: the
    signature is valid for whatever <Encrypt> holds, if anything)."""
    try:
        encrypt = xmltodict.parse(body)["xml"]["Encrypt"]
    except Exception:
        encrypt = ""
    nonce = nonce or _nonce(body)
    token = WECOM["token"] if channel == "wecom" else OA["token"]
    sig = _signature(token, str(ts), nonce, encrypt)
    if channel == "wecom":
        return {"msg_signature": sig, "timestamp": str(ts), "nonce": nonce}
    return {"signature": _signature(token, str(ts), nonce), "timestamp": str(ts),
            "nonce": nonce, "encrypt_type": "aes", "msg_signature": sig}


REQUESTS = {"wecom": wecom_request, "oa": oa_aes_request, "oa_plain": oa_plain_request}


def path_of(kind: str) -> str:
    return "/wecom/callback" if kind == "wecom" else "/oa/callback"
