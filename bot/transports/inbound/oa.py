"""Official Account (公众号) callbacks, plain or safe (AES) mode.

Every request carries signature = sha1(token, timestamp, nonce). Safe mode adds
encrypt_type=aes and msg_signature = sha1(token, timestamp, nonce, Encrypt), which also covers
the body, so in safe mode msg_signature is what we verify.

Plain mode's signature does not cover the body: whoever saw one callback URL can post any
message under it until the timestamp goes stale. So once an encoding_aes_key is configured
(safe or compatible mode in the console: the platform then always sends encrypt_type=aes) a
plain message is refused outright, and in plain-only deployments the route remembers each
(timestamp, nonce) with a hash of its body and refuses a second body under the same pair.
"""
from __future__ import annotations

from typing import Mapping

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import check_signature

from bot.core.config import OaSettings
from bot.core.models import Inbound
from bot.transports.inbound.base import (
    BadRequest,
    Forbidden,
    check_signed,
    check_timestamp,
    decrypt,
    encrypted_part,
    parse_envelope,
    parse_plain,
)

CHANNEL = "oa"


def configured(s: OaSettings) -> bool:
    return bool(s.app_id and s.token)


def _check_plain_signature(s: OaSettings, query: Mapping[str, str]) -> None:
    signature, timestamp, nonce = (query.get(k, "") for k in ("signature", "timestamp", "nonce"))
    check_signed(signature, s.token, timestamp, nonce)
    try:
        check_signature(s.token, signature, timestamp, nonce)
    except Exception:  # InvalidSignatureException
        raise Forbidden("bad signature") from None


def verify_url(s: OaSettings, query: Mapping[str, str], now: float, window_s: int) -> str:
    """GET when the URL is saved in the console: answer echostr as given."""
    check_timestamp(query, now, window_s)
    _check_plain_signature(s, query)
    return query.get("echostr", "")


def parse_raw(raw: str) -> Inbound:
    """Re-read an Inbound from the decrypted XML stored in `inbound.raw`."""
    return parse_plain(parse_message, CHANNEL, raw)


def parse_callback(s: OaSettings, query: Mapping[str, str], body: bytes,
                   now: float, window_s: int) -> Inbound:
    """POST: verify, decrypt if needed and normalise one message. Raises BadRequest / Forbidden."""
    check_timestamp(query, now, window_s)
    if query.get("encrypt_type", "raw").lower() != "aes":
        if s.encoding_aes_key:
            # the platform encrypts everything once a key is set; an unencrypted body here is
            # someone replaying a signature they saw (it does not cover the body)
            raise Forbidden("plain-mode message refused: safe mode is configured "
                            "([oa] encoding_aes_key is set)")
        _check_plain_signature(s, query)  # before parsing: it doesn't depend on the body
        try:
            raw = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("body is not UTF-8") from None
        return parse_plain(parse_message, CHANNEL, raw)
    if not s.encoding_aes_key:
        raise Forbidden("safe-mode message but no [oa] encoding_aes_key configured")
    signature, timestamp, nonce = (query.get(k, "")
                                   for k in ("msg_signature", "timestamp", "nonce"))
    envelope = parse_envelope(body)
    check_signed(signature, s.token, timestamp, nonce, encrypted_part(envelope))
    crypto = WeChatCrypto(s.token, s.encoding_aes_key, s.app_id)
    raw = decrypt(crypto, envelope, signature, timestamp, nonce)
    return parse_plain(parse_message, CHANNEL, raw)
