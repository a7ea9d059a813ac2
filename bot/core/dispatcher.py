"""Routers, the dispatcher and the middleware chain (aiogram's shape, PTB's fixed signature).

A handler is `async def handler(ctx, msg) -> None`, registered on a module's Router with
filters. A filter is a side-effect-free `(ctx, msg) -> bool | dict`; a dict counts as a match and
is merged into `ctx.match`. The Dispatcher tries routers in the order given, first match wins,
and wraps that lookup in middlewares `async def mw(ctx, msg, next)`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from bot.core import texts
from bot.core.models import Inbound

log = logging.getLogger("linli.dispatcher")

Filter = Callable[["Ctx", Inbound], "bool | dict"]
Handler = Callable[["Ctx", Inbound], Awaitable[None]]
Next = Callable[["Ctx", Inbound], Awaitable[None]]
Middleware = Callable[["Ctx", Inbound, Next], Awaitable[None]]

# outbox channel for a reply to the sender, by inbound channel
REPLY_CHANNEL = {"wecom": "wecom_user", "oa": "oa_cs"}


@dataclass
class Ctx:
    """What a handler gets besides the message: the app, the sender, what the filters parsed."""

    app: Any
    msg: Inbound
    resident: dict | None = None
    match: dict = field(default_factory=dict)
    handler: str | None = None  # name of the handler that ran, for logs and tests
    _replies: int = 0

    @property
    def store(self):
        return self.app.store

    @property
    def settings(self):
        return self.app.settings

    def render(self, template: str, /, **kw) -> str:
        return texts.render(template, **kw)

    async def reply(self, template: str, /, **kw) -> int | None:
        """Render a template and send it back to the sender on the same channel."""
        return await self.reply_text(self.render(template, **kw))

    async def reply_text(self, text: str) -> int | None:
        """Queue already-rendered text to the sender (the outbox wakes its worker itself).
        The key is derived from the inbound row and the reply's position, so re-running a
        handler for the same message (a retry, a resume) queues nothing new: the outbox ignores
        a key it already has."""
        self._replies += 1
        ref = self.msg.inbound_id if self.msg.inbound_id is not None else self.msg.dedupe_key
        return self.app.outbox.enqueue(
            key=f"reply:{ref}:{self._replies}", channel=REPLY_CHANNEL[self.msg.channel],
            target=self.msg.user_id, payload={"text": text, "dedupe": False}, purpose="reply")


@dataclass
class Route:
    handler: Handler
    filters: tuple[Filter, ...]

    def check(self, ctx: Ctx, msg: Inbound) -> dict | None:
        """All filters must pass; returns what they parsed, or None if one fails."""
        found: dict = {}
        for f in self.filters:
            result = f(ctx, msg)
            if not result:
                return None
            if isinstance(result, dict):
                found.update(result)
        return found


class Router:
    """One conversation concern's handlers, in registration order."""

    def __init__(self, name: str):
        self.name = name
        self.routes: list[Route] = []

    def message(self, *filters: Filter) -> Callable[[Handler], Handler]:
        """Any message type, events included."""
        def register(handler: Handler) -> Handler:
            self.routes.append(Route(handler, filters))
            return handler
        return register

    def text(self, *filters: Filter) -> Callable[[Handler], Handler]:
        return self.message(_type_is("text"), *filters)

    def event(self, *filters: Filter) -> Callable[[Handler], Handler]:
        return self.message(_type_is("event"), *filters)

    def find(self, ctx: Ctx, msg: Inbound) -> tuple[Route, dict] | None:
        for route in self.routes:
            found = route.check(ctx, msg)
            if found is not None:
                return route, found
        return None

    def __repr__(self) -> str:
        return f"Router({self.name!r}, {len(self.routes)} routes)"


def _type_is(msg_type: str) -> Filter:
    return lambda ctx, msg: msg.msg_type == msg_type


class Dispatcher:
    def __init__(self, app, routers: list[Router], middlewares: list[Middleware] = ()):
        self.app = app
        self.routers = list(routers)
        self.middlewares = list(middlewares)  # outermost first

    async def dispatch(self, msg: Inbound) -> Ctx:
        """Run the middleware chain around the first matching handler; returns the Ctx."""
        ctx = Ctx(app=self.app, msg=msg, resident=msg.resident)
        call: Next = self._route
        for mw in reversed(self.middlewares):
            call = _bind(mw, call)
        await call(ctx, msg)
        return ctx

    async def _route(self, ctx: Ctx, msg: Inbound) -> None:
        for router in self.routers:
            hit = router.find(ctx, msg)
            if hit is not None:
                route, found = hit
                ctx.match.update(found)
                ctx.handler = f"{router.name}.{route.handler.__name__}"
                await route.handler(ctx, msg)
                return
        log.info("no handler for %s %s from %s", msg.channel, msg.msg_type, msg.user_id)


def _bind(mw: Middleware, nxt: Next) -> Next:
    async def call(ctx: Ctx, msg: Inbound) -> None:
        await mw(ctx, msg, nxt)
    return call
