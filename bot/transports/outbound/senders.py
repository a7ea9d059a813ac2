"""Outbound channels: one small async sender per way Linli can post to WeChat/WeCom.

Every sender has the same face, `await send(target, payload) -> SendResult`, so the outbox does
not care which platform it talks to. The payload is `{"text": ...}` and optionally
`{"markdown": ...}` (used where the channel supports it, the text otherwise).

WeChat reports errors inside HTTP 200 bodies, so success is `errcode == 0`, never the status.
Retryable: timeouts, connection errors, HTTP 5xx, -1 (system busy), 45009 (frequency limit).
Everything else is permanent for that message. Token errors (40001/40014/42001) trigger one
refresh and one retry inside the sender, invisible to the outbox; the token endpoint itself
gets one second chance on those codes too.

All senders share `app.http` (created by app.start(), so it is looked up at call time) and take
their base URLs from config: the same code talks to the platform or to the local world.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from bot.data import sends as sends_data
from bot.transports.outbound.ratelimit import TokenBucket

log = logging.getLogger("linli.senders")

TOKEN_ERRORS = {40001, 40014, 42001}   # invalid / not latest / expired access token
RETRYABLE_ERRORS = {-1, 45009}         # system busy, API frequency limit
MAX_USERS_PER_CALL = 1000              # WeCom message/send touser limit
ROBOT_TEXT_BYTES = 2048
ROBOT_MARKDOWN_BYTES = 4096
BASE_API_PER_MIN = 10000               # "base API calls" limit per enterprise per API
# Linli-local codes (negative, never used by the platform) for failures found before/after a call
ERR_LOCAL_INVALID = -1001      # we refused the request (too many users, missing owner, ...)
ERR_LOCAL_FAIL_LIST = -1002    # the platform accepted the call but listed our target as failed
ERR_LOCAL_DEFER = -1003        # our own per-member limit: try again later (not an attempt)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    errcode: int = 0
    errmsg: str = ""
    retryable: bool = False
    detail: dict = field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        """Accepted, but a person (a customer group's owner) must still confirm it."""
        return self.ok and bool(self.detail.get("waiting"))


def result_from(data: dict, detail: dict | None = None) -> SendResult:
    """Classify a decoded WeChat response body."""
    code = int(data.get("errcode", 0) or 0)
    msg = str(data.get("errmsg", ""))
    if code == 0:
        return SendResult(True, 0, msg or "ok", detail=detail or {})
    return SendResult(False, code, msg, retryable=code in RETRYABLE_ERRORS, detail=detail or {})


def limit_bucket(per_min: int, *, now, sleep) -> TokenBucket:
    """A bucket that never exceeds `per_min` in ANY 60-second window.

    A bucket with burst b and refill r/min can do b + r within one minute, so a platform that
    counts a sliding minute (the world does; the real one may) would answer 45009 to a naive
    burst=rate bucket. We split the budget: a quarter as burst (a cascade's first posts go out
    at once), the rest as steady refill.
    """
    burst = max(1, per_min // 4)
    return TokenBucket(max(per_min - burst, per_min / 2), burst, now=now, sleep=sleep)


class Sender(Protocol):
    async def send(self, target: str, payload: dict) -> SendResult: ...


class PlatformError(Exception):
    """A call that could not produce a usable body (network, 5xx, token fetch refused)."""

    def __init__(self, result: SendResult):
        super().__init__(f"{result.errcode} {result.errmsg}")
        self.result = result


def _body(payload_text: str) -> dict:
    return {"content": payload_text}


async def _request(app, method: str, url: str, *, params: dict, body: dict | None = None) -> dict:
    """One HTTP call through the shared session; returns the JSON body or raises PlatformError."""
    if app.http is None:
        raise RuntimeError("app.http is not open: call app.start() first")
    # ensure_ascii=False: some WeChat endpoints show \\uXXXX escapes literally to the user.
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else None
    try:
        async with app.http.request(method, url, params=params, data=data,
                                    headers=headers) as resp:
            if resp.status >= 500 or resp.status == 429:
                raise PlatformError(SendResult(False, resp.status, f"HTTP {resp.status}",
                                               retryable=True))
            if resp.status != 200:
                raise PlatformError(SendResult(False, resp.status, f"HTTP {resp.status}"))
            try:
                return await resp.json(content_type=None)
            except ValueError:
                # a garbled 200 is usually a proxy or a cut connection, not our message's fault
                raise PlatformError(SendResult(False, resp.status, "body is not JSON",
                                               retryable=True)) from None
    except (asyncio.TimeoutError, aiohttp.ClientError) as e:
        raise PlatformError(SendResult(False, -2, f"{type(e).__name__}: {e}",
                                       retryable=True)) from None


class AccessToken:
    """One cached access token with one refresher.

    The lock matters on the OA side: fetching a new token there invalidates the old one after
    ~5 minutes, so concurrent refreshes would knock each other's tokens out.
    """

    def __init__(self, app, url: str, params: dict, *, margin_s: float = 300.0):
        self.app, self.url, self.params, self.margin_s = app, url, params, margin_s
        self.token: str | None = None
        self.expires_at = 0.0
        self.fetches = 0
        self._lock = asyncio.Lock()

    def _valid(self) -> bool:
        return self.token is not None and self.app.clock.now() < self.expires_at

    async def get(self) -> str:
        if self._valid():
            return self.token
        async with self._lock:
            if self._valid():  # somebody else refreshed while we waited
                return self.token
            for attempt in (1, 2):
                data = await _request(self.app, "GET", self.url, params=self.params)
                self.fetches += 1
                code = int(data.get("errcode", 0) or 0)
                if code == 0 and "access_token" in data:
                    break
                # A token endpoint's own 40001/40014/42001 or "busy" is sometimes a one-off
                # (a credential being rotated on the platform side): ask once more before
                # calling it permanent. A wrong secret answers the same twice and fails then.
                if attempt == 1 and code in TOKEN_ERRORS | RETRYABLE_ERRORS:
                    log.warning("token endpoint %s answered %s; asking once more", self.url, code)
                    continue
                raise PlatformError(result_from(data if code else
                                                {"errcode": -1, "errmsg": "no access_token"}))
            ttl = float(data.get("expires_in", 7200))
            self.token = data["access_token"]
            self.expires_at = self.app.clock.now() + ttl - min(self.margin_s, ttl / 2)
            log.info("access token refreshed from %s (ttl %ss)", self.url, int(ttl))
            return self.token

    def invalidate(self, token: str) -> None:
        # Only drop the token that failed: if a concurrent caller already refreshed, keep that one.
        if self.token == token:
            self.token = None


class Api:
    """POSTs to one platform with a token, with the refresh-once-and-retry rule."""

    def __init__(self, app, base: str, token: AccessToken | None):
        self.app, self.base, self.token = app, base.rstrip("/"), token

    async def post(self, path: str, body: dict, *, params: dict | None = None) -> dict:
        params = dict(params or {})
        if self.token is None:
            return await _request(self.app, "POST", self.base + path, params=params, body=body)
        for _attempt in (1, 2):
            tok = await self.token.get()
            data = await _request(self.app, "POST", self.base + path,
                                  params={**params, "access_token": tok}, body=body)
            code = int(data.get("errcode", 0) or 0)
            if code not in TOKEN_ERRORS:
                return data
            self.token.invalidate(tok)
            log.warning("token rejected on %s (%s); refreshing", path, code)
        # A fresh token rejected again: treat like a platform hiccup, the outbox retries later.
        return {"errcode": -1, "errmsg": f"token rejected twice ({code})"}

    async def call(self, path: str, body: dict, **kw) -> tuple[dict | None, SendResult | None]:
        try:
            return await self.post(path, body, **kw), None
        except PlatformError as e:
            return None, e.result


def _content(payload: dict, markdown_ok: bool) -> tuple[str, str]:
    if markdown_ok and payload.get("markdown"):
        return "markdown", payload["markdown"]
    return "text", payload.get("text") or payload.get("markdown") or ""


# -- WeCom app -> members ---------------------------------------------------------------------
class WecomUserSender:
    """message/send: target is up to 1,000 userids joined by '|'."""

    def __init__(self, api: Api, agent_id: int, bucket: TokenBucket, member_bucket=None):
        self.api, self.agent_id, self.bucket = api, agent_id, bucket
        # WeCom silently DROPS messages past 30/min to one member (WeCom message/send docs): a social worker
        # given 40 follow-up tasks at once would never see 10 of them. So each member has a
        # bucket of their own and we wait rather than lose a message.
        self.member_bucket = member_bucket
        self.members: dict[str, TokenBucket] = {}

    def _member(self, user: str) -> TokenBucket:
        if user not in self.members:
            self.members[user] = self.member_bucket()
        return self.members[user]

    def restore_member_usage(self, sent: dict[str, list[float]]) -> int:
        """After a restart: rebuild each member's bucket from the times messages went to them
        (the outbox reads them from the rows sent in the last minute), so the limit is not
        forgotten and a fresh full bucket does not push a member past 30 in one minute.
        Returns how many members had recent messages."""
        if self.member_bucket is None:
            return 0
        for user, times in sent.items():
            if user and times:
                self._member(user).replay(times)
        return sum(1 for u, t in sent.items() if u and t)

    async def send(self, target: str, payload: dict) -> SendResult:
        users = target.split("|")
        if len(users) > MAX_USERS_PER_CALL:
            return SendResult(False, ERR_LOCAL_INVALID, f"more than {MAX_USERS_PER_CALL} users")
        if self.member_bucket is not None:
            buckets = [self._member(user) for user in users]
            wait = max(b.wait_time() for b in buckets)
            if wait > 0:
                # not now: hand the row back to the outbox for later instead of holding one of
                # its concurrency slots (a backlog for one person must not stall everyone else)
                return SendResult(False, ERR_LOCAL_DEFER, "per-member limit", retryable=True,
                                  detail={"defer_s": wait})
            taken = [b for b in buckets if b.try_acquire()]
            if len(taken) < len(buckets):  # someone's bucket emptied meanwhile: give back, try later
                for b in taken:
                    b.tokens += 1
                return SendResult(False, ERR_LOCAL_DEFER, "per-member limit", retryable=True,
                                  detail={"defer_s": max(b.wait_time() for b in buckets) or 0.1})
        msgtype, content = _content(payload, markdown_ok=True)
        body = {"touser": target, "msgtype": msgtype, "agentid": self.agent_id,
                msgtype: _body(content),
                # the outbox is at-least-once: a resend after a crash is dropped by the platform.
                # Conversational replies opt out: the same "谢谢" to the same person twice in
                # 30 minutes is legitimate, and the platform would drop the second silently.
                "enable_duplicate_check": 1 if payload.get("dedupe", True) else 0,
                "duplicate_check_interval": 1800}
        await self.bucket.acquire()
        data, err = await self.api.call("/cgi-bin/message/send", body)
        if err:
            return err
        detail = {"msgid": data.get("msgid", "")}
        if data.get("invaliduser"):
            detail["invaliduser"] = data["invaliduser"]  # as the platform says it: "a|b"
        return result_from(data, detail)


def batch_userids(userids: list[str], size: int = MAX_USERS_PER_CALL) -> list[str]:
    """Split userids into message/send targets of at most `size` ids each."""
    return ["|".join(userids[i:i + size]) for i in range(0, len(userids), size)]


# -- WeCom app chats ----------------------------------------------------------------------------
class AppChatSender:
    """appchat/send: target is a chatid the app created. Rate-limited by recipients, not calls."""

    def __init__(self, api: Api, bucket: TokenBucket):
        self.api, self.bucket = api, bucket
        self.sizes: dict[str, int] = {}  # chatid -> member count, for the recipients budget

    async def _size(self, chatid: str) -> int:
        if chatid not in self.sizes:
            try:
                tok = await self.api.token.get()
                data = await _request(self.api.app, "GET", self.api.base + "/cgi-bin/appchat/get",
                                      params={"access_token": tok, "chatid": chatid})
            except PlatformError:
                return 1  # unknown for now; the send itself will report what is wrong
            if int(data.get("errcode", 0) or 0) != 0:
                return 1
            self.sizes[chatid] = max(1, len(data.get("chat_info", {}).get("userlist", [])))
        return self.sizes[chatid]

    async def send(self, target: str, payload: dict) -> SendResult:
        msgtype, content = _content(payload, markdown_ok=True)
        await self.bucket.acquire(await self._size(target))
        data, err = await self.api.call("/cgi-bin/appchat/send",
                                        {"chatid": target, "msgtype": msgtype,
                                         msgtype: _body(content), "safe": 0})
        return err or result_from(data)

    async def create_appchat(self, name: str, owner: str, userlist: list[str],
                             chatid: str | None = None) -> SendResult:
        body = {"name": name, "owner": owner, "userlist": list(userlist)}
        if chatid:
            body["chatid"] = chatid
        data, err = await self.api.call("/cgi-bin/appchat/create", body)
        if err:
            return err
        res = result_from(data, {"chatid": data.get("chatid", chatid)})
        if res.ok:
            self.sizes[res.detail["chatid"]] = len(set(userlist) | {owner})
        return res


# -- WeCom group robot webhook ------------------------------------------------------------------
def split_utf8(text: str, limit: int) -> list[str]:
    """Split text into pieces of at most `limit` UTF-8 bytes, preferring line breaks."""
    if len(text.encode("utf-8")) <= limit:
        return [text]
    parts, cur, size = [], [], 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > limit:
            piece = "".join(cur)
            cut = piece.rfind("\n")
            if cut > len(piece) // 2:  # a line break in the second half: cut there
                parts.append(piece[:cut])
                cur = list(piece[cut + 1:])
            else:
                parts.append(piece)
                cur = []
            size = len("".join(cur).encode("utf-8"))
        cur.append(ch)
        size += n
    if cur:
        parts.append("".join(cur))
    return [p for p in parts if p]


class RobotSender:
    """webhook/send?key=<target>: no token; 20 posts/min per robot, so one bucket per key."""

    def __init__(self, app, base: str, per_min: int, *, now, sleep):
        self.api = Api(app, base, None)
        self.per_min, self._now, self._sleep = per_min, now, sleep
        self.buckets: dict[str, TokenBucket] = {}
        # (key, digest) -> parts already posted, so a retry after a failed middle part does not
        # repeat the parts the group has already seen.
        self._progress: dict[tuple[str, str], int] = {}

    def _bucket(self, key: str) -> TokenBucket:
        if key not in self.buckets:
            self.buckets[key] = limit_bucket(self.per_min, now=self._now, sleep=self._sleep)
        return self.buckets[key]

    async def send(self, target: str, payload: dict) -> SendResult:
        msgtype, content = _content(payload, markdown_ok=True)
        limit = ROBOT_MARKDOWN_BYTES if msgtype == "markdown" else ROBOT_TEXT_BYTES
        parts = split_utf8(content, limit)
        memo = (target, hashlib.sha1(f"{msgtype}\0{content}".encode()).hexdigest())
        done = self._progress.get(memo, 0)
        for i in range(done, len(parts)):
            await self._bucket(target).acquire()
            data, err = await self.api.call("/cgi-bin/webhook/send",
                                            {"msgtype": msgtype, msgtype: _body(parts[i])},
                                            params={"key": target})
            res = err or result_from(data)
            if not res.ok:
                if i > 0:
                    self._progress[memo] = i
                return SendResult(res.ok, res.errcode, res.errmsg, res.retryable,
                                  {**res.detail, "parts_sent": i, "parts": len(parts)})
        self._progress.pop(memo, None)
        return SendResult(True, 0, "ok", detail={"parts": len(parts)})


# -- Official Account customer-service message -------------------------------------------------
class OaCustomSender:
    """message/custom/send to an openid. 45015 (outside the 48 h window) and 45047 (quota) are
    permanent for this message: retrying cannot help until the resident writes again."""

    def __init__(self, api: Api, bucket: TokenBucket):
        self.api, self.bucket = api, bucket

    async def send(self, target: str, payload: dict) -> SendResult:
        await self.bucket.acquire()
        data, err = await self.api.call("/cgi-bin/message/custom/send",
                                        {"touser": target, "msgtype": "text",
                                         "text": _body(_content(payload, False)[1])})
        return err or result_from(data)


# -- Official Account template message (service notice) ---------------------------------------
DEFAULT_TEMPLATE_ID = "linli_alert_notice"  # the local world's; a real account needs its own


class OaTemplateSender:
    """message/template/send: reaches a follower outside the 48 h window (verified service
    accounts). The template is assumed to have one field, {{content.DATA}}; `url` is the ack
    link the notice opens."""

    def __init__(self, api: Api, template_id: str, bucket: TokenBucket):
        self.api, self.template_id, self.bucket = api, template_id, bucket

    async def send(self, target: str, payload: dict) -> SendResult:
        body = {"touser": target, "template_id": payload.get("template_id") or self.template_id,
                "data": {"content": {"value": _content(payload, False)[1]}}}
        if payload.get("url"):
            body["url"] = payload["url"]
        await self.bucket.acquire()
        data, err = await self.api.call("/cgi-bin/message/template/send", body)
        return err or result_from(data, {"msgid": data.get("msgid")})


# -- WeCom customer groups (residents on personal WeChat) --------------------------------------
class CustomerGroupSender:
    """externalcontact/add_msg_template for one customer group. Success only means the owner's
    client now shows a send to confirm: the result is `waiting` with the platform's msgid."""

    def __init__(self, app, api: Api, bucket: TokenBucket):
        self.app, self.api, self.bucket = app, api, bucket

    def _owner(self, chat_id: str) -> str | None:
        return sends_data.customer_group_owner(self.app.store, chat_id)

    async def send(self, target: str, payload: dict) -> SendResult:
        owner = payload.get("owner") or self._owner(target)
        if not owner:
            return SendResult(False, ERR_LOCAL_INVALID,
                              f"no owner userid for customer group {target}")
        await self.bucket.acquire()
        data, err = await self.api.call("/cgi-bin/externalcontact/add_msg_template",
                                        {"chat_type": "group", "sender": owner,
                                         "chat_id_list": [target], "allow_select": False,
                                         "text": _body(_content(payload, False)[1])})
        if err:
            return err
        res = result_from(data)
        if not res.ok:
            return res
        if target in (data.get("fail_list") or []):
            return SendResult(False, ERR_LOCAL_FAIL_LIST,
                              "group listed in fail_list (monthly mass-send quota reached?)")
        return SendResult(True, 0, "ok", detail={"waiting": True, "msgid": data.get("msgid", "")})


def _wall_sleep(clock):
    """Sleep for clock-seconds: a ScaledClock (the demo's --speed) turns them into fewer wall
    seconds, or a rate limit would wait `speed` times too long."""
    to_wall = getattr(clock, "wall_seconds", None)
    if to_wall is None:
        return asyncio.sleep
    return lambda s: asyncio.sleep(to_wall(s))


def build_senders(app, *, sleep=None) -> dict[str, Sender]:
    """The channels, keyed by the names stored in `sends.channel`.

    `sleep` is what rate limiting waits with: asyncio.sleep, or the clock's own sleep if it has
    one (a fake clock that advances instead of waiting), or whatever a test passes.
    """
    s, now = app.settings, app.clock.now
    sleep = sleep or getattr(app.clock, "sleep", None) or _wall_sleep(app.clock)
    wecom_token = AccessToken(app, s.wecom.api_base.rstrip("/") + "/cgi-bin/gettoken",
                              {"corpid": s.wecom.corp_id, "corpsecret": s.wecom.secret})
    oa_token = AccessToken(app, s.oa.api_base.rstrip("/") + "/cgi-bin/token",
                           {"grant_type": "client_credential", "appid": s.oa.app_id,
                            "secret": s.oa.app_secret})
    wecom = Api(app, s.wecom.api_base, wecom_token)
    oa = Api(app, s.oa.api_base, oa_token)

    def bucket(per_min: int) -> TokenBucket:
        return limit_bucket(per_min, now=now, sleep=sleep)

    return {
        "wecom_user": WecomUserSender(wecom, s.wecom.agent_id,
                                      bucket(s.wecom.message_send_per_min),
                                      member_bucket=lambda: bucket(s.wecom.per_member_per_min)),
        "wecom_appchat": AppChatSender(wecom, bucket(s.wecom.appchat_recipients_per_min)),
        "robot": RobotSender(app, s.wecom.api_base, s.wecom.robot_posts_per_min,
                             now=now, sleep=sleep),
        "oa_cs": OaCustomSender(oa, bucket(s.oa.custom_send_per_min)),
        # no [oa] template_id setting yet: picked up if config grows one
        "oa_template": OaTemplateSender(oa, getattr(s.oa, "template_id", "") or
                                        DEFAULT_TEMPLATE_ID, bucket(s.oa.custom_send_per_min)),
        "customer_group": CustomerGroupSender(app, wecom, bucket(BASE_API_PER_MIN)),
    }
