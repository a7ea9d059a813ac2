"""The local WeChat world as one object: platform APIs + people + callback delivery, and the
drivers that move it: `run_until` for tests (discrete events on an injected clock, no sleeping)
and `run_forever` for the demo and `linli world` (wall-clock pacing of a ScaledClock)."""
from __future__ import annotations

import asyncio
import logging
import random

import aiohttp
from aiohttp import web

from bot.world.callbacks import CallbackClient
from bot.world.chat import add_chat_routes
from bot.world.people import People
from bot.world.platform import WorldState, make_platform_app

log = logging.getLogger("linli.world")


class World:
    def __init__(self, settings, store, *, clock, duplicate_probability: float = 0.0,
                 sleep=asyncio.sleep):
        self.settings, self.store, self.clock = settings, store, clock
        self.linli_url: str | None = None
        self.state = WorldState(settings, clock=clock, sleep=sleep)
        self.http: aiohttp.ClientSession | None = None
        self.duplicate_probability = duplicate_probability
        self.people: People | None = None
        self.runner: web.AppRunner | None = None
        self.url: str | None = None
        self._wake = asyncio.Event()

    def platform_app(self) -> web.Application:
        app = make_platform_app(self.state)
        add_chat_routes(app, self)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the platform APIs and get ready to deliver callbacks. Returns the base URL."""
        self.runner = web.AppRunner(self.platform_app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{port}"
        return self.url

    async def connect(self, linli_url: str) -> None:
        """Know Linli's callback base URL and bring the register's people to life."""
        self.linli_url = linli_url
        self.http = aiohttp.ClientSession()
        callbacks = CallbackClient(self.settings, linli_url, self.http, clock=self.clock,
                                   duplicate_probability=self.duplicate_probability,
                                   rng=random.Random(self.settings.world.seed))
        self.people = People(self.state, self.store, self.settings, callbacks, clock=self.clock)
        self.people.populate()
        self.state.subscribe(lambda d: self._wake.set())

    async def close(self) -> None:
        if self.http:
            await self.http.close()
        if self.runner:
            await self.runner.cleanup()

    async def run_forever(self) -> None:
        """Carry out people's actions when their (scaled) time comes."""
        while True:
            nxt = self.people.next_at()
            if nxt is not None and nxt <= self.clock.now():
                await self.people.run_until(self.clock.now())
                continue
            wait = 1.0
            if nxt is not None:
                to_wall = getattr(self.clock, "wall_seconds", lambda s: s)
                wait = min(1.0, max(0.0, to_wall(nxt - self.clock.now())))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass


async def run_until(app, world: World, end: float, *, step_cap: int = 1_000_000) -> None:
    """Discrete-event drive of Linli + the world on a FakeClock up to clock time `end`.

    Each round lets Linli finish what is due now (callbacks, sends), then jumps the clock to the
    next thing anyone is waiting for: a person's action, an escalation deadline, a send's backoff.
    """
    from bot.domain import escalation

    for _ in range(step_cap):
        await app.settle()
        await world.people.run_until(app.clock.now())
        await app.settle()
        await escalation.run_due(app)
        await app.settle()
        candidates = [t for t in (world.people.next_at(), escalation.next_due_at(app),
                                  app.store.scalar("SELECT MIN(next_at) FROM sends WHERE state='pending'"))
                      if t is not None and t > app.clock.now()]
        due_now = (world.people.next_at() or float("inf")) <= app.clock.now()
        if due_now:
            continue
        if not candidates or min(candidates) > end:
            app.clock.t = max(app.clock.t, end)
            await world.people.run_until(end)
            await escalation.run_due(app)
            await app.settle()
            return
        app.clock.t = min(candidates)
    raise RuntimeError("simulation did not converge")
