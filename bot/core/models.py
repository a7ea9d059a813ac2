"""Platform-neutral records. A transport turns a callback into an `Inbound`; nothing downstream
needs to know whether it came from WeCom or the Official Account beyond `channel`."""
from __future__ import annotations

from dataclasses import dataclass, field

CHANNELS = ("wecom", "oa")


@dataclass(frozen=True)
class Inbound:
    """One message or event a user sent us, decrypted and normalised."""

    channel: str  # 'wecom' | 'oa'
    user_id: str  # FromUserName: WeCom userid or OA openid
    msg_type: str  # 'text', 'image', 'voice', 'event', 'location', 'link', ...
    text: str = ""  # Content for text messages, '' otherwise
    event: str | None = None  # lowercased Event for msg_type 'event'
    event_key: str | None = None
    chat_id: str | None = None  # None for a private chat
    msg_id: str | None = None  # None for events (the platforms send MsgId 0 or nothing)
    at: float = 0.0  # CreateTime, epoch seconds
    media_id: str | None = None
    raw: str = ""  # the decrypted XML, kept verbatim in `inbound.raw`
    inbound_id: int | None = None  # row id in `inbound`, set once recorded
    # the `residents` row of the sender; a dict, so kept out of hashing and equality
    resident: dict | None = field(default=None, compare=False, hash=False)

    @property
    def dedupe_key(self) -> str:
        """The exactly-once key. Platforms retry a callback up to three times; messages carry a
        MsgId, events don't, so those are keyed by who/when/what (the callback docs' advice)."""
        if self.msg_id:
            return f"{self.channel}:msg:{self.msg_id}"
        what = self.event if self.event is not None else self.msg_type
        return f"{self.channel}:evt:{self.user_id}:{int(self.at)}:{what}:{self.event_key or ''}"
