"""WeCom (企业微信) self-built app callbacks: URL verification and AES-encrypted messages.

WeCom always encrypts. Query: msg_signature, timestamp, nonce (+ echostr on GET).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.core.config import WecomSettings
from bot.core.models import Inbound
from bot.transports.inbound.base import (
    Forbidden,
    check_signed,
    check_timestamp,
    decrypt,
    encrypted_part,
    parse_envelope,
    parse_plain,
)

CHANNEL = "wecom"


def configured(s: WecomSettings) -> bool:
    return bool(s.corp_id and s.token and s.encoding_aes_key)


@lru_cache(maxsize=8)
def _crypto(s: WecomSettings) -> WeChatCrypto:
    # settings are frozen (hashable): one cipher object per configuration, not per request
    return WeChatCrypto(s.token, s.encoding_aes_key, s.corp_id)


def _params(query: Mapping[str, str]) -> tuple[str, str, str]:
    return query.get("msg_signature", ""), query.get("timestamp", ""), query.get("nonce", "")


def verify_url(s: WecomSettings, query: Mapping[str, str], now: float, window_s: int) -> str:
    """GET when the URL is saved in the console: answer the decrypted echostr."""
    check_timestamp(query, now, window_s)
    signature, timestamp, nonce = _params(query)
    echostr = query.get("echostr", "")
    check_signed(signature, s.token, timestamp, nonce, echostr)
    try:
        return _crypto(s).check_signature(signature, timestamp, nonce, echostr)
    except Exception as e:  # InvalidCorpIdException, or garbage after a wrong AES key
        raise Forbidden(f"cannot decrypt echostr: {type(e).__name__}") from None


def parse_raw(raw: str) -> Inbound:
    """Re-read an Inbound from the decrypted XML stored in `inbound.raw`."""
    return parse_plain(parse_message, CHANNEL, raw)


def parse_callback(s: WecomSettings, query: Mapping[str, str], body: bytes,
                   now: float, window_s: int) -> Inbound:
    """POST: verify, decrypt and normalise one message. Raises BadRequest / Forbidden."""
    check_timestamp(query, now, window_s)
    signature, timestamp, nonce = _params(query)
    envelope = parse_envelope(body)  # wechatpy would parse it before checking, too
    check_signed(signature, s.token, timestamp, nonce, encrypted_part(envelope))
    raw = decrypt(_crypto(s), envelope, signature, timestamp, nonce)
    return parse_plain(parse_message, CHANNEL, raw)
