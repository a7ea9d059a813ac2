"""The local world's chat window: WeChat on a phone, in a browser, as any person of the register.

Pick a person, see the chats the world has them in (the private chat with the bot account, their
groups), read what reaches them as it arrives, and type. What a person types to the bot travels to
Linli through the real signed, encrypted callback protocol (the same CallbackClient the simulated
people use); what they post in a group is a human post in WorldState, as if forwarded by hand.

The page polls small JSON endpoints rather than holding a stream open: a poll needs no shutdown
bookkeeping and survives the world restarting under it.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

from aiohttp import web

from bot.core import texts

BOT_CHAT = "bot"  # the id of every person's private chat with the bot account
ROLE_ORDER = ("staff", "social_worker", "grid_lead", "building_lead", "resident")
MAX_TEXT = 2048   # the platforms' own limit for a text message
SEARCH_LIMIT = 30


@dataclass
class Entry:
    seq: int
    key: str            # "dm:<uid>" (private chat with the bot) or "g:<chat_id>"
    at: float
    text: str
    sender: str | None  # uid of the person who wrote it; None for the bot and robots
    via: str            # the Delivery's via, or "typed" for a person's message to the bot
    url: str | None = None
    posted: object | None = None  # callbacks.Posted of a typed message: its delivery status


class ChatLog:
    """One ordered timeline of what people received and what they sent.

    WorldState records deliveries and the CallbackClient records posts, each with a clock time
    that is often equal on a FakeClock, so neither time nor either list alone can say whether a
    reply came before or after the bot's answer. Posts are taken in just before each delivery
    (an answer always follows the message that caused it), and again on every read.
    """

    def __init__(self, world):
        self.world = world
        self._seq = itertools.count(1)
        self.by_key: dict[str, list[Entry]] = defaultdict(list)
        self._posts_seen = 0
        for d in world.state.deliveries:
            self._add_delivery(d)
        world.state.subscribe(self.on_delivery)

    def on_delivery(self, d) -> None:
        self.absorb_posts()
        self._add_delivery(d)

    def _add_delivery(self, d) -> None:
        key = f"dm:{d.user}" if d.user else f"g:{d.chat_id}"
        self._append(Entry(0, key, d.at, d.text, d.sender, d.via, d.url))

    def absorb_posts(self) -> None:
        callbacks = self.world.people.callbacks
        if callbacks is None:  # the world is not connected to Linli yet: nobody has written
            return
        posted = callbacks.posted
        for p in posted[self._posts_seen:]:
            if p.msg_id:  # events (subscribe, menu clicks) carry no text to show
                self._append(Entry(0, f"dm:{p.user}", p.at, p.text, p.user, "typed", posted=p))
        self._posts_seen = len(posted)

    def _append(self, e: Entry) -> None:
        e.seq = next(self._seq)
        self.by_key[e.key].append(e)

    def entries(self, key: str, after: int = 0) -> list[Entry]:
        self.absorb_posts()
        return [e for e in self.by_key.get(key, ()) if e.seq > after]


# -- views: plain dicts for the page's script (display words live in the template) ----------------
def primary_role(roles: str) -> str:
    have = set((roles or "").split(","))
    return next((r for r in ROLE_ORDER if r in have), "resident")


def channel_of(uid: str, row: dict) -> str:
    return "wecom" if row.get("wecom_userid") == uid else "oa"


def person_view(uid: str, row: dict) -> dict:
    return {"uid": uid, "name": row["name"], "role": primary_role(row["roles"]),
            "party": "party_member" in (row["roles"] or ""), "room": row.get("label") or "",
            "channel": channel_of(uid, row)}


def _in_group(uid: str, g) -> bool:
    return uid in g.members or uid == g.owner


class ChatWindow:
    def __init__(self, world):
        self.world, self.log = world, ChatLog(world)

    @property
    def people(self) -> dict:
        return self.world.people.person

    def name_of(self, uid: str | None) -> str:
        s = self.world.state
        row = self.people.get(uid or "")
        return row["name"] if row else s.users.get(uid) or s.openids.get(uid) or (uid or "")

    def message_view(self, e: Entry, uid: str) -> dict:
        p = e.posted
        return {"seq": e.seq, "at": e.at, "text": e.text, "own": e.sender == uid, "via": e.via,
                "sender": e.sender, "name": self.name_of(e.sender) if e.sender else "",
                "url": e.url, "failed": bool(p and p.status is not None and p.status != 200)}

    def chats_of(self, uid: str) -> list[dict]:
        """The private chat with the bot, then every group the person is in, newest first."""
        rows = [{"id": BOT_CHAT, "kind": channel_of(uid, self.people[uid]), "name": "", "size": 2,
                 "key": f"dm:{uid}"}]
        for g in self.world.state.groups.values():
            if _in_group(uid, g):
                rows.append({"id": g.chat_id, "kind": g.kind, "name": g.name, "key": f"g:{g.chat_id}",
                             "size": len(g.members | {g.owner} - {None})})
        for r in rows:
            entries = self.log.entries(r.pop("key"))
            r["last"] = self.message_view(entries[-1], uid) if entries else None
            r["incoming"] = sum(1 for e in entries if e.sender != uid)
        rows.sort(key=lambda r: -(r["last"]["seq"] if r["last"] else 0))
        return rows

    def search(self, q: str) -> list[dict]:
        q = q.strip().lower()
        hits = [(uid, row) for uid, row in self.people.items()
                if not q or q in row["name"].lower() or q in (row.get("label") or "").lower()
                or q == uid.lower()]
        return [person_view(uid, row) for uid, row in hits[:SEARCH_LIMIT]]

    def shortcuts(self) -> dict:
        """One person per role to start from; a resident on the Official Account if possible."""
        out: dict[str, dict] = {}
        for uid, row in self.people.items():
            role = primary_role(row["roles"])
            if role == "resident" and channel_of(uid, row) != "oa":
                continue
            out.setdefault(role, person_view(uid, row))
        return out


CHAT_KEY = web.AppKey("chat_window", ChatWindow)


def add_chat_routes(web_app: web.Application, world) -> None:
    # one window (and one timeline) per world, however many apps serve it
    cw = getattr(world, "chat_window", None) or ChatWindow(world)
    world.chat_window = cw
    web_app[CHAT_KEY] = cw
    tz = world.settings.timezone

    def person_or_404(uid: str | None) -> dict:
        row = cw.people.get(uid or "")
        if row is None:
            raise web.HTTPNotFound(text="no such person")
        return row

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=texts.render("web/chat.html", tz=tz), content_type="text/html",
                            charset="utf-8", headers={"Cache-Control": "no-store"})

    async def people(request: web.Request) -> web.Response:
        return _json({"people": cw.search(request.query.get("q", "")), "shortcuts": cw.shortcuts()})

    async def chats(request: web.Request) -> web.Response:
        uid = request.query.get("person")
        row = person_or_404(uid)
        return _json({"person": person_view(uid, row), "chats": cw.chats_of(uid),
                      "now": world.clock.now()})

    async def messages(request: web.Request) -> web.Response:
        uid, chat = request.query.get("person"), request.query.get("chat", "")
        row = person_or_404(uid)
        meta = next((c for c in cw.chats_of(uid) if c["id"] == chat), None)
        if meta is None:
            raise web.HTTPNotFound(text="not one of this person's chats")
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="after must be a number")
        key = f"dm:{uid}" if chat == BOT_CHAT else f"g:{chat}"
        return _json({"person": person_view(uid, row), "chat": meta, "now": world.clock.now(),
                      "messages": [cw.message_view(e, uid) for e in cw.log.entries(key, after)]})

    async def send(request: web.Request) -> web.Response:
        # JSON only: a plain cross-site form cannot make a person of the world say something
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="send JSON")
        try:
            body = await request.json()
            uid, chat, text = body["person"], body["chat"], str(body["text"]).strip()
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text="person, chat and text are required")
        row = person_or_404(uid)
        if not text or len(text) > MAX_TEXT:
            raise web.HTTPBadRequest(text=f"text must be 1..{MAX_TEXT} characters")
        if chat == BOT_CHAT:
            if world.people.callbacks is None:
                raise web.HTTPServiceUnavailable(text="the world is not connected to Linli yet")
            channel = channel_of(uid, row)
            if channel == "oa":
                world.state.user_wrote(uid)  # the platform opens the 48 h reply window itself
            posted = await world.people.callbacks.send_text(channel, uid, text)
            cw.log.absorb_posts()
            return _json({"ok": posted.status == 200, "status": posted.status})
        g = world.state.groups.get(chat)
        if g is None or not _in_group(uid, g):
            raise web.HTTPNotFound(text="not one of this person's chats")
        world.state.human_post(chat, uid, text)
        return _json({"ok": True})

    web_app.router.add_get("/chat", page)
    web_app.router.add_get("/chat/api/people", people)
    web_app.router.add_get("/chat/api/chats", chats)
    web_app.router.add_get("/chat/api/messages", messages)
    web_app.router.add_post("/chat/api/send", send)


def _json(data: dict) -> web.Response:
    return web.json_response(data, headers={"Cache-Control": "no-store"})
