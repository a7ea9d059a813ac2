"""The platform's side of the callback protocol: people's messages delivered to Linli's callback
URLs exactly as WeCom / the Official Account deliver them — signed, AES-encrypted XML (built with
wechatpy's own crypto), retried when Linli is slow (5 s, three tries in all, same MsgId), and now
and then delivered twice on purpose.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from dataclasses import dataclass

import aiohttp
from wechatpy.crypto import WeChatCrypto as OaCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WecomCrypto
from wechatpy.utils import WeChatSigner

log = logging.getLogger("linli.world.callbacks")
PLATFORM_TIMEOUT_S = 5.0
PLATFORM_TRIES = 3
OA_ORIGINAL_ID = "gh_linli0000001"
_SIG_RE = re.compile(r"<MsgSignature><!\[CDATA\[([0-9a-f]+)\]\]></MsgSignature>")


def _cdata(s: str) -> str:
    # "]]>" would end the CDATA section early; split it the standard way
    return "<![CDATA[" + s.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@dataclass
class Posted:
    """One person's message and what happened to its delivery."""
    channel: str
    user: str
    text: str
    msg_id: int
    at: float
    attempts: int = 0
    status: int | None = None
    wall_s: float = 0.0  # how long Linli took to answer (all tries), in wall seconds


class CallbackClient:
    def __init__(self, settings, base_url: str, http: aiohttp.ClientSession, *, clock,
                 duplicate_probability: float = 0.0, rng=None):
        self.s = settings
        self.base = base_url.rstrip("/")
        self.http = http
        self.clock = clock
        self.duplicate_probability = duplicate_probability
        self.rng = rng
        self._ids = itertools.count(int(clock.now()) * 1000)
        self.timeout_s = PLATFORM_TIMEOUT_S
        self.posted: list[Posted] = []
        self.wecom = WecomCrypto(settings.wecom.token, settings.wecom.encoding_aes_key, settings.wecom.corp_id)
        self.oa = OaCrypto(settings.oa.token, settings.oa.encoding_aes_key, settings.oa.app_id)

    def xml(self, channel: str, user: str, *, text: str | None = None, event: str | None = None,
            event_key: str = "", msg_id: int | None = None, at: int | None = None) -> str:
        at = int(self.clock.now()) if at is None else at
        to = self.s.wecom.corp_id if channel == "wecom" else OA_ORIGINAL_ID
        parts = [f"<ToUserName>{_cdata(to)}</ToUserName>", f"<FromUserName>{_cdata(user)}</FromUserName>",
                 f"<CreateTime>{at}</CreateTime>"]
        if event:
            parts += ["<MsgType><![CDATA[event]]></MsgType>", f"<Event>{_cdata(event)}</Event>",
                      f"<EventKey>{_cdata(event_key)}</EventKey>"]
        else:
            parts += ["<MsgType><![CDATA[text]]></MsgType>", f"<Content>{_cdata(text or '')}</Content>",
                      f"<MsgId>{msg_id}</MsgId>"]
        if channel == "wecom":
            parts.append(f"<AgentID>{self.s.wecom.agent_id}</AgentID>")
        return "<xml>" + "".join(parts) + "</xml>"

    def signed(self, channel: str, xml: str, *, user: str = "") -> tuple[str, dict, str]:
        """(path, query, body) of one signed, encrypted callback request."""
        ts, nonce = str(int(self.clock.now())), secrets.token_hex(5)
        crypto = self.wecom if channel == "wecom" else self.oa
        body = crypto.encrypt_message(xml, nonce, ts)
        # wechatpy writes the signature into a fixed template: reading it back with a regex
        # costs a fraction of parsing the XML (this runs once per simulated person's message)
        msg_sig = _SIG_RE.search(body).group(1)
        if channel == "wecom":
            return "/wecom/callback", {"msg_signature": msg_sig, "timestamp": ts, "nonce": nonce}, body
        signer = WeChatSigner()
        signer.add_data(self.s.oa.token, ts, nonce)
        return "/oa/callback", {"signature": signer.signature, "timestamp": ts, "nonce": nonce,
                                "openid": user, "encrypt_type": "aes", "msg_signature": msg_sig}, body

    async def send_text(self, channel: str, user: str, text: str) -> Posted:
        """Deliver one text message as the platform would, with its retries."""
        msg_id = next(self._ids)
        p = Posted(channel, user, text, msg_id, self.clock.now())
        self.posted.append(p)
        xml = self.xml(channel, user, text=text, msg_id=msg_id)
        t = time.perf_counter()
        await self._deliver(p, xml)
        p.wall_s = time.perf_counter() - t
        if self.rng is not None and self.rng.random() < self.duplicate_probability:
            await self._deliver(p, xml)  # the platform sometimes delivers twice
        return p

    async def send_event(self, channel: str, user: str, event: str, key: str = "") -> Posted:
        p = Posted(channel, user, f"<event {event}>", 0, self.clock.now())
        await self._deliver(p, self.xml(channel, user, event=event, event_key=key))
        return p

    async def _deliver(self, p: Posted, xml: str) -> None:
        for _ in range(PLATFORM_TRIES):
            path, query, body = self.signed(p.channel, xml, user=p.user)
            p.attempts += 1
            try:
                async with self.http.post(self.base + path, params=query, data=body.encode(),
                                          timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                          headers={"Content-Type": "text/xml"}) as r:
                    await r.read()
                    p.status = r.status
                    if r.status == 200:
                        return
                    log.warning("callback %s answered %s", p.msg_id, r.status)
                    return  # 4xx: the platform does not retry a refusal
            except (asyncio.TimeoutError, aiohttp.ClientError) as e:
                log.info("callback %s to %s failed (%s); platform retries", p.msg_id, path, type(e).__name__)
        log.warning("callback %s gave up after %d tries", p.msg_id, PLATFORM_TRIES)
