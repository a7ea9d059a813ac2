"""What the WeCom and Official Account transports share: errors mapped to HTTP statuses,
the freshness check, constant-time signature comparison, guarded XML parsing and the
wechatpy-message → Inbound translation. Signatures, AES and XML parsing are wechatpy's
(and xmltodict's); this module only adds the checks wechatpy leaves out."""
from __future__ import annotations

import hmac
from typing import Mapping

import xmltodict
from wechatpy.utils import WeChatSigner

from bot.core.models import Inbound


class CallbackError(Exception):
    """A callback we refuse; `status` is the HTTP answer."""

    status = 400


class BadRequest(CallbackError):
    status = 400


class Forbidden(CallbackError):
    status = 403


def check_timestamp(query: Mapping[str, str], now: float, window_s: int) -> None:
    """Refuse stale or future-dated callbacks: wechatpy checks no freshness, so a captured
    signed request could otherwise be replayed forever. window_s == 0 turns this off."""
    if not window_s:
        return
    try:
        ts = int(query.get("timestamp", ""))
        stale = abs(now - ts) > window_s
    except (ValueError, OverflowError):  # OverflowError: an absurdly large integer
        raise Forbidden("timestamp missing or not an integer") from None
    if stale:
        raise Forbidden(f"timestamp {ts} outside the {window_s}s window")


def check_signed(signature: str, token: str, *parts: str) -> None:
    """Compute the platform's SHA1 signature with wechatpy's signer and compare it in constant
    time (wechatpy compares with `!=`; we check first, then let wechatpy check again)."""
    signer = WeChatSigner()
    signer.add_data(token, *parts)
    if not signature or not hmac.compare_digest(signer.signature.encode(),
                                                signature.encode("utf-8", "replace")):
        raise Forbidden("bad signature")


def parse_envelope(body: bytes) -> dict:
    """Parse an outer callback envelope (<xml><Encrypt>…</xml>). The caller has capped the body
    size; xmltodict refuses entity declarations (billion laughs, XXE) with a ValueError."""
    try:
        doc = xmltodict.parse(body)
    except Exception as e:  # ExpatError, ValueError("entities are disabled"), ...
        raise BadRequest(f"malformed XML: {e}") from None
    root = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise BadRequest("no <xml> root element")
    return root


def encrypted_part(envelope: dict) -> str:
    encrypt = envelope.get("Encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise BadRequest("no <Encrypt> element")
    return encrypt


def _str(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(f"<{key}> is not a plain text element")


def to_inbound(channel: str, message, raw: str) -> Inbound:
    """Translate a wechatpy message object (its parsed fields live in `_data`) to an Inbound."""
    data = message._data  # wechatpy keeps every field here, also for UnknownMessage
    if not isinstance(data, dict):
        raise BadRequest("message has no fields")
    user_id = _str(data, "FromUserName")
    msg_type = (_str(data, "MsgType") or "").lower()
    if not user_id or not msg_type:
        raise BadRequest("FromUserName or MsgType missing")
    try:
        at = float(int(_str(data, "CreateTime") or ""))
        msg_id = int(_str(data, "MsgId") or 0)
    except (ValueError, OverflowError):
        raise BadRequest("CreateTime or MsgId is not an integer") from None
    event = _str(data, "Event")
    return Inbound(
        channel=channel,
        user_id=user_id,
        msg_type=msg_type,
        text=(_str(data, "Content") or "") if msg_type == "text" else "",
        event=event.lower() if event and msg_type == "event" else None,
        event_key=_str(data, "EventKey"),
        chat_id=_str(data, "ChatId") or None,
        msg_id=str(msg_id) if msg_id else None,
        at=at,
        media_id=_str(data, "MediaId"),
        raw=raw,
    )


def decrypt(crypto, envelope: dict, signature: str, timestamp: str, nonce: str) -> str:
    """Decrypt an envelope with wechatpy (the dict is passed so the XML is parsed only once).
    Any failure here comes after a good signature, so it means our AES key or corp id / app id
    does not match the sender's: refuse it as unauthenticated rather than as malformed."""
    try:
        return crypto.decrypt_message(envelope, signature, timestamp, nonce)
    except Exception as e:  # Invalid{Signature,CorpId,AppId}Exception, garbage after a wrong key
        raise Forbidden(f"cannot decrypt: {type(e).__name__}") from None


def parse_plain(parse_message, channel: str, raw: str) -> Inbound:
    """Parse decrypted (or plain-mode) XML with wechatpy's parser and normalise it."""
    try:
        message = parse_message(raw)
    except Exception as e:  # ExpatError, ValueError (entities), KeyError (no MsgType), ...
        raise BadRequest(f"malformed message XML: {type(e).__name__}: {e}") from None
    if message is None:
        raise BadRequest("empty message")
    return to_inbound(channel, message, raw)
