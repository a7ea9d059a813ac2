"""The local WeChat world's platform: WeCom and Official Account HTTP APIs, served for real.

`make_platform_app(state)` is an aiohttp Application that answers the same paths, request
shapes, response shapes and error codes as qyapi.weixin.qq.com / api.weixin.qq.com, so Linli
can only tell it apart by URL. `WorldState` is the ground truth: who exists, which groups
exist and who is in them, and every message that actually reached someone. Simulated people
(bot/world/people.py) act through WorldState's methods, not through this module.

Platform rules modelled (from the WeCom and Official Account developer documentation): errors inside HTTP 200; tokens expire (42001) and a new
OA token retires the old one after 5 minutes; message/send takes 1,000 users and *silently*
drops messages past 30/min or 1,000/h per member; robots 20 posts/min (45009); OA customer
service only within 48 h of the user's last message, 5 messages (45015/45047), template
notices to any follower; customer-group
sends wait for the owner's confirmation, 4 per group per month; personal groups are out of
reach of every API.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from aiohttp import web

from bot.core.clock import Clock

log = logging.getLogger("linli.world.platform")

GROUP_KINDS = ("app_chat", "robot", "personal", "customer")
OA_WINDOW_S = 48 * 3600
OA_WINDOW_QUOTA = 5
MEMBER_PER_MIN, MEMBER_PER_HOUR = 30, 1000
ROBOT_PER_MIN = 20
APPCHAT_RECIPIENTS_PER_MIN = 20000
CUSTOMER_SENDS_PER_MONTH = 4
OA_OLD_TOKEN_GRACE_S = 300


@dataclass
class Delivery:
    """One message that reached a person or a group (what people would actually see)."""
    id: int
    at: float
    via: str            # wecom_app, appchat, robot, oa_cs, customer_group, human
    msgtype: str
    text: str
    user: str | None = None     # direct messages
    chat_id: str | None = None  # group messages
    sender: str | None = None
    url: str | None = None      # a template notice's link (the ack page)


@dataclass
class Group:
    chat_id: str
    kind: str
    members: set[str]
    owner: str | None = None
    name: str = ""
    robot_key: str | None = None
    messages: list[Delivery] = field(default_factory=list)


@dataclass
class Fault:
    errcode: int | None = None   # answer HTTP 200 with this errcode
    status: int | None = None    # answer this HTTP status (e.g. 502)
    drop: bool = False           # close the connection without an answer
    latency_s: float = 0.0       # wait before answering (or before the fault)
    times: int | None = 1        # for the next N matching calls (None: until cleared)
    probability: float | None = None  # or each call with this probability (seeded RNG)
    after: int = 0               # let this many matching calls through first


def _err(code: int, msg: str, **extra) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": msg, **extra},
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _ok(**extra) -> web.Response:
    return _err(0, "ok", **extra)


class WorldState:
    def __init__(self, settings, *, clock: Clock | None = None, seed: int | None = None,
                 token_ttl_s: int = 7200, sleep=asyncio.sleep):
        self.corp_id, self.corp_secret = settings.wecom.corp_id, settings.wecom.secret
        self.agent_id = settings.wecom.agent_id
        self.app_id, self.app_secret = settings.oa.app_id, settings.oa.app_secret
        self.clock = clock or Clock()
        self.rng = random.Random(settings.world.seed if seed is None else seed)
        self.token_ttl_s = token_ttl_s
        self.sleep = sleep  # for injected latency
        self.users: dict[str, str] = {}                 # wecom userid -> name
        self.openids: dict[str, str] = {}               # OA openid -> name
        self.groups: dict[str, Group] = {}
        self.robot_keys: dict[str, str] = {}            # webhook key -> chat_id
        self.inbox: dict[str, list[Delivery]] = defaultdict(list)  # direct messages per user
        self.deliveries: list[Delivery] = []
        self.dropped: list[tuple[str, str]] = []        # (user, text) silently dropped by limits
        self.calls: dict[str, int] = defaultdict(int)   # path -> requests seen
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.listeners: list[Callable[[Delivery], None]] = []
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (realm, expires_at)
        self._wecom_token: str | None = None
        self._oa_token: str | None = None
        self._ids = itertools.count(1)
        self._last_wrote: dict[str, float] = {}
        self._oa_sent_in_window: dict[str, int] = defaultdict(int)
        self._member_sends: dict[str, deque] = defaultdict(deque)
        self._robot_posts: dict[str, deque] = defaultdict(deque)
        self._appchat_recipients: deque = deque()
        self._customer_sends: dict[tuple[str, str], int] = defaultdict(int)  # (chat, yyyymm)
        self.templates: dict[str, dict] = {}            # msgid -> pending/confirmed mass send
        self._recent_bodies: dict[str, float] = {}      # message/send duplicate check

    # -- who exists ------------------------------------------------------------------------------
    def register_user(self, userid: str, name: str = "") -> None:
        """A WeCom member of the corp (staff, leads)."""
        self.users[userid] = name or userid

    def register_openid(self, openid: str, name: str = "") -> None:
        """A resident following the Official Account."""
        self.openids[openid] = name or openid

    def user_wrote(self, openid: str, at: float | None = None) -> None:
        """The resident sent the OA a message: opens a fresh 48 h window with a fresh quota."""
        self.openids.setdefault(openid, openid)
        self._last_wrote[openid] = self.clock.now() if at is None else at
        self._oa_sent_in_window[openid] = 0

    def add_group(self, chat_id: str, kind: str, members, *, owner: str | None = None,
                  name: str = "", robot_key: str | None = None) -> Group:
        """A chat group. Robot groups are reached by their webhook key (default: chat_id)."""
        if kind not in GROUP_KINDS:
            raise ValueError(f"unknown group kind {kind!r}")
        g = Group(chat_id, kind, set(members), owner, name or chat_id)
        if kind == "robot":
            g.robot_key = robot_key or chat_id
            self.robot_keys[g.robot_key] = chat_id
        self.groups[chat_id] = g
        return g

    # -- what happened ---------------------------------------------------------------------------
    def _deliver(self, d: Delivery) -> Delivery:
        self.deliveries.append(d)
        if d.chat_id:
            self.groups[d.chat_id].messages.append(d)
        if d.user:
            self.inbox[d.user].append(d)
        for fn in list(self.listeners):
            try:
                fn(d)
            except Exception:
                log.exception("world listener failed")
        return d

    def deliver_to_user(self, user: str, text: str, via: str, msgtype: str = "text",
                        url: str | None = None) -> Delivery:
        return self._deliver(Delivery(next(self._ids), self.clock.now(), via, msgtype, text,
                                      user=user, url=url))

    def deliver_to_group(self, chat_id: str, text: str, via: str, sender: str | None = None,
                         msgtype: str = "text") -> Delivery:
        return self._deliver(Delivery(next(self._ids), self.clock.now(), via, msgtype, text,
                                      chat_id=chat_id, sender=sender))

    def human_post(self, chat_id: str, sender: str, text: str) -> Delivery:
        """A person posts in a group by hand (the only way into a personal WeChat group)."""
        g = self.groups[chat_id]
        if sender not in g.members and sender != g.owner:
            raise ValueError(f"{sender} is not in group {chat_id}")
        return self.deliver_to_group(chat_id, text, "human", sender=sender)

    def subscribe(self, fn: Callable[[Delivery], None]) -> None:
        """Call fn(delivery) for every message that reaches someone (simulated people react)."""
        self.listeners.append(fn)

    def messages_for(self, user: str) -> list[Delivery]:
        """Direct messages the user received."""
        return list(self.inbox.get(user, []))

    def seen_by(self, user: str) -> list[Delivery]:
        """Direct messages plus messages in every group the user is in, in order."""
        chats = {c for c, g in self.groups.items() if user in g.members or user == g.owner}
        return [d for d in self.deliveries if d.user == user or d.chat_id in chats]

    def group_messages(self, chat_id: str) -> list[Delivery]:
        return list(self.groups[chat_id].messages)

    def confirm(self, msgid: str) -> bool:
        """The owner taps 'send' on a customer-group mass send: it reaches the group now."""
        t = self.templates.get(msgid)
        if t is None or t["state"] != "waiting":
            return False
        t["state"] = "sent"
        for chat_id in t["chats"]:
            self.deliver_to_group(chat_id, t["text"], "customer_group", sender=t["sender"])
        return True

    def pending_confirmations(self, owner: str | None = None) -> list[str]:
        return [m for m, t in self.templates.items() if t["state"] == "waiting"
                and (owner is None or t["sender"] == owner)]

    # -- fault injection -------------------------------------------------------------------------
    def inject(self, path: str, **kw) -> Fault:
        """Make calls to `path` (e.g. '/cgi-bin/message/send') misbehave; see Fault."""
        f = Fault(**kw)
        self.faults[path].append(f)
        return f

    def clear_faults(self, path: str | None = None) -> None:
        if path is None:
            self.faults.clear()
        else:
            self.faults.pop(path, None)

    def _pick_fault(self, path: str) -> Fault | None:
        for f in list(self.faults.get(path, [])):
            if f.after > 0:
                f.after -= 1
                continue
            if f.probability is not None:
                if self.rng.random() < f.probability:
                    return f
                continue
            if f.times is not None:
                f.times -= 1
                if f.times <= 0:
                    self.faults[path].remove(f)
            return f
        return None

    # -- tokens ----------------------------------------------------------------------------------
    def issue_token(self, realm: str) -> tuple[str, int]:
        now = self.clock.now()
        current = self._wecom_token if realm == "wecom" else self._oa_token
        if realm == "wecom" and current and self._tokens[current][1] > now:
            # WeCom hands back the same token while it is valid
            return current, int(self._tokens[current][1] - now)
        if realm == "oa" and current and current in self._tokens:
            # a new OA token retires the previous one after a grace period
            r, exp = self._tokens[current]
            self._tokens[current] = (r, min(exp, now + OA_OLD_TOKEN_GRACE_S))
        token = secrets.token_urlsafe(48)
        self._tokens[token] = (realm, now + self.token_ttl_s)
        if realm == "wecom":
            self._wecom_token = token
        else:
            self._oa_token = token
        return token, self.token_ttl_s

    def expire_tokens(self) -> None:
        """Make every issued token expire now (as if two hours had passed for them)."""
        now = self.clock.now()
        self._tokens = {t: (r, min(exp, now)) for t, (r, exp) in self._tokens.items()}

    def check_token(self, token: str | None, realm: str) -> tuple[int, str] | None:
        if not token:
            return 41001, "access_token missing"
        rec = self._tokens.get(token)
        if rec is None or rec[0] != realm:
            return (40014, "invalid access_token") if realm == "wecom" else \
                (40001, "invalid credential, access_token is invalid or not latest")
        if rec[1] <= self.clock.now():
            return 42001, "access_token expired"
        return None

    def duplicate(self, body: dict) -> bool:
        """enable_duplicate_check: the same request JSON within the interval is not delivered
        again (default interval 1800 s, as documented)."""
        if not body.get("enable_duplicate_check"):
            return False
        key = json.dumps(body, sort_keys=True, ensure_ascii=False)
        now = self.clock.now()
        last = self._recent_bodies.get(key)
        self._recent_bodies[key] = now
        return last is not None and now - last < float(body.get("duplicate_check_interval", 1800))

    # -- sliding windows -------------------------------------------------------------------------
    def _window(self, q: deque, span: float, limit: int, n: int = 1) -> bool:
        """Record n events now if the window allows; False (and record nothing) if over."""
        now = self.clock.now()
        while q and q[0][0] <= now - span:
            q.popleft()
        if sum(c for _, c in q) + n > limit:
            return False
        q.append((now, n))
        return True

    def _member_allows(self, user: str) -> bool:
        q = self._member_sends[user]
        now = self.clock.now()
        while q and q[0] <= now - 3600:
            q.popleft()
        last_min = sum(1 for t in q if t > now - 60)
        if last_min >= MEMBER_PER_MIN or len(q) >= MEMBER_PER_HOUR:
            return False
        q.append(now)
        return True


# -- HTTP handlers -------------------------------------------------------------------------------
async def _json_body(request: web.Request) -> dict | None:
    try:
        data = json.loads(await request.read() or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _content(body: dict) -> tuple[str, str] | None:
    msgtype = body.get("msgtype")
    if msgtype not in ("text", "markdown"):
        return None
    content = (body.get(msgtype) or {}).get("content")
    return (msgtype, content) if isinstance(content, str) and content else None


WORLD_KEY = web.AppKey("world", WorldState)


def make_platform_app(world: WorldState) -> web.Application:
    W = world

    @web.middleware
    async def faults(request: web.Request, handler):
        W.calls[request.path] += 1
        f = W._pick_fault(request.path)
        if f is None:
            return await handler(request)
        if f.latency_s:
            await W.sleep(f.latency_s)
        if f.drop:
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("world: connection dropped by fault injection")
        if f.status:
            return web.Response(status=f.status, text=f"world: injected HTTP {f.status}")
        if f.errcode is not None:
            return _err(f.errcode, "world: injected error" if f.errcode != -1 else "system busy")
        return await handler(request)  # latency only

    async def authed(request: web.Request, realm: str):
        problem = W.check_token(request.query.get("access_token"), realm)
        if problem:
            return _err(*problem), None
        body = await _json_body(request)
        if body is None:
            return _err(47001, "data format error"), None
        return None, body

    # WeCom -------------------------------------------------------------------------------------
    async def gettoken(request: web.Request):
        if request.query.get("corpid") != W.corp_id:
            return _err(40013, "invalid corpid")
        if request.query.get("corpsecret") != W.corp_secret:
            return _err(40001, "invalid credential")
        token, ttl = W.issue_token("wecom")
        return _ok(access_token=token, expires_in=ttl)

    async def message_send(request: web.Request):
        bad, body = await authed(request, "wecom")
        if bad:
            return bad
        if body.get("agentid") != W.agent_id:
            return _err(40056, "invalid agentid")
        content = _content(body)
        if content is None:
            return _err(44004, "empty content or invalid msgtype")
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        if len(users) > 1000:
            return _err(40031, "invalid userid list: more than 1000 users")
        invalid = [u for u in users if u not in W.users]
        valid = [u for u in dict.fromkeys(users) if u in W.users]
        if not valid:
            return _err(81013, "user & party & tag all invalid")
        if W.duplicate(body):
            valid = []  # the same request within the check interval: accepted, not delivered
        for u in valid:
            if W._member_allows(u):
                W.deliver_to_user(u, content[1], "wecom_app", content[0])
            else:
                W.dropped.append((u, content[1]))  # the platform drops these without a word
        return _ok(invaliduser="|".join(invalid), invalidparty="", invalidtag="",
                   unlicenseduser="", msgid=f"msg{next(W._ids)}")

    async def appchat_create(request: web.Request):
        bad, body = await authed(request, "wecom")
        if bad:
            return bad
        owner, users = body.get("owner"), list(body.get("userlist") or [])
        if not isinstance(users, list) or not 2 <= len(set(users) | {owner} - {None}) <= 2000:
            return _err(86006, "chat member count must be 2..2000")
        if any(u not in W.users for u in users):
            return _err(86007, "invalid chat member")
        if owner is not None and owner not in W.users:
            return _err(86005, "invalid chat owner")
        chatid = body.get("chatid") or f"wr{secrets.token_hex(8)}"
        if chatid in W.groups:
            return _err(86215, "chatid already exists")
        W.add_group(chatid, "app_chat", users, owner=owner or users[0], name=body.get("name", ""))
        return _ok(chatid=chatid)

    def app_chat(chatid) -> Group | None:
        g = W.groups.get(chatid or "")
        return g if g is not None and g.kind == "app_chat" else None  # others: not the app's

    async def appchat_get(request: web.Request):
        problem = W.check_token(request.query.get("access_token"), "wecom")
        if problem:
            return _err(*problem)
        g = app_chat(request.query.get("chatid"))
        if g is None:
            return _err(86003, "chatid not exist")
        return _ok(chat_info={"chatid": g.chat_id, "name": g.name, "owner": g.owner,
                              "userlist": sorted(g.members | {g.owner} - {None})})

    async def appchat_send(request: web.Request):
        bad, body = await authed(request, "wecom")
        if bad:
            return bad
        g = app_chat(body.get("chatid"))
        if g is None:
            return _err(86003, "chatid not exist")
        content = _content(body)
        if content is None:
            return _err(44004, "empty content or invalid msgtype")
        n = len(g.members | {g.owner} - {None})
        if not W._window(W._appchat_recipients, 60, APPCHAT_RECIPIENTS_PER_MIN, n):
            return _err(45009, "api freq out of limit")
        W.deliver_to_group(g.chat_id, content[1], "appchat", msgtype=content[0])
        return _ok()

    async def webhook_send(request: web.Request):
        chat_id = W.robot_keys.get(request.query.get("key", ""))
        if chat_id is None:
            return _err(93000, "invalid webhook url")
        body = await _json_body(request)
        if body is None:
            return _err(40035, "invalid parameter")
        content = _content(body)
        if content is None:
            return _err(40008, "invalid message type")
        limit = 4096 if content[0] == "markdown" else 2048
        if len(content[1].encode("utf-8")) > limit:
            return _err(40058, f"content exceed max length {limit}")
        if not W._window(W._robot_posts[chat_id], 60, ROBOT_PER_MIN):
            return _err(45009, "api freq out of limit")
        W.deliver_to_group(chat_id, content[1], "robot", msgtype=content[0])
        return _ok()

    async def add_msg_template(request: web.Request):
        bad, body = await authed(request, "wecom")
        if bad:
            return bad
        if body.get("chat_type") != "group":
            return _err(40058, "only chat_type group is simulated")
        sender = body.get("sender")
        if sender not in W.users:
            return _err(60111, "invalid userid (sender)")
        chats = list(body.get("chat_id_list") or [])
        text = ((body.get("text") or {}).get("content")) or ""
        if not chats or not text:
            return _err(41035, "missing chat_id_list or content")
        month = datetime.fromtimestamp(W.clock.now(), timezone.utc).strftime("%Y%m")
        ok, fail = [], []
        for c in chats:
            g = W.groups.get(c)
            if g is None or g.kind != "customer" or g.owner != sender:
                return _err(701008 if g is None else 40003, f"invalid chat_id {c}")
            if W._customer_sends[(c, month)] >= CUSTOMER_SENDS_PER_MONTH:
                fail.append(c)
            else:
                W._customer_sends[(c, month)] += 1
                ok.append(c)
        msgid = ""
        if ok:
            msgid = f"msgGC{secrets.token_hex(10)}"
            W.templates[msgid] = {"state": "waiting", "chats": ok, "sender": sender,
                                  "text": text, "at": W.clock.now()}
        return _ok(fail_list=fail, msgid=msgid)

    # Official Account --------------------------------------------------------------------------
    async def oa_token(request: web.Request):
        q = request.query
        if q.get("grant_type") != "client_credential":
            return _err(40002, "invalid grant_type")
        if q.get("appid") != W.app_id:
            return _err(40013, "invalid appid")
        if q.get("secret") != W.app_secret:
            return _err(40001, "invalid credential, invalid appsecret")
        token, ttl = W.issue_token("oa")
        return web.json_response({"access_token": token, "expires_in": ttl})  # no errcode: as real

    async def to_follower(request: web.Request):
        """(error response or None, body, openid) for an OA send to one follower."""
        bad, body = await authed(request, "oa")
        if bad:
            return bad, None, None
        openid = body.get("touser")
        if openid not in W.openids:
            return _err(40003, "invalid openid"), None, None
        return None, body, openid

    async def custom_send(request: web.Request):
        bad, body, openid = await to_follower(request)
        if bad:
            return bad
        content = _content(body)
        if content is None or content[0] != "text":
            return _err(40008, "invalid message type")
        wrote = W._last_wrote.get(openid)
        if wrote is None or W.clock.now() - wrote > OA_WINDOW_S:
            return _err(45015, "response out of time limit or subscription is canceled")
        if W._oa_sent_in_window[openid] >= OA_WINDOW_QUOTA:
            return _err(45047, "out of response count limit")
        W._oa_sent_in_window[openid] += 1
        W.deliver_to_user(openid, content[1], "oa_cs")
        return _ok()

    async def template_send(request: web.Request):
        bad, body, openid = await to_follower(request)
        if bad:
            return bad
        if not body.get("template_id"):
            return _err(40037, "invalid template_id")
        data = body.get("data") or {}
        text = "\n".join(str(v.get("value", "")) for v in data.values() if isinstance(v, dict))
        if not text:
            return _err(47003, "argument invalid! data.content.value empty")
        W.deliver_to_user(openid, text, "oa_template", url=body.get("url"))
        return _ok(msgid=next(W._ids))

    app = web.Application(middlewares=[faults])
    app[WORLD_KEY] = world
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    app.router.add_post("/cgi-bin/message/send", message_send)
    app.router.add_post("/cgi-bin/appchat/create", appchat_create)
    app.router.add_get("/cgi-bin/appchat/get", appchat_get)
    app.router.add_post("/cgi-bin/appchat/send", appchat_send)
    app.router.add_post("/cgi-bin/webhook/send", webhook_send)
    app.router.add_post("/cgi-bin/externalcontact/add_msg_template", add_msg_template)
    app.router.add_get("/cgi-bin/token", oa_token)
    app.router.add_post("/cgi-bin/message/custom/send", custom_send)
    app.router.add_post("/cgi-bin/message/template/send", template_send)
    return app
