"""The local WeChat world as one object: platform APIs + people + callback delivery, and the
drivers that move it: `run_until` for tests (discrete events on an injected clock, no sleeping)
and `run_forever` for the demo and `linli world` (wall-clock pacing of a ScaledClock).

The world is a peer of Linli, not a part of it: it knows the register file and the platform API
traffic it serves. Whatever a test needs from Linli's side while driving both (its timers, its
send backoffs) comes in through a `Peer` the caller builds (tests/sim_rig.py)."""
from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web

from bot.core.clock import FakeClock
from bot.world.callbacks import CallbackClient
from bot.world.chat import add_chat_routes
from bot.world.people import Behaviours, People
from bot.world.platform import WorldState, make_platform_app
from bot.world.register_file import RegisterFile

log = logging.getLogger("linli.world")
# people's messages in flight to Linli at once when the world runs on the wall clock. One at a
# time (before) left people half an hour of simulated time behind at 60x; more than Linli can
# answer only queues inside Linli (measured: 400 in flight answered in 2-3 s wall each, past the
# platform's freshness window at 60x)
PEOPLE_IN_FLIGHT = 64


class World:
    """The platform, its people and their way back to Linli.

    `register` is the register file the community office imports (CSV or XLSX; a path, or a
    loaded RegisterFile) and `groups` its groups file; both default to `[world] register` and
    `[world] groups` in the settings. That file and the API calls Linli makes are all the world
    knows; it never opens Linli's database."""

    def __init__(self, settings, register: RegisterFile | str | Path | None = None, *, clock,
                 groups: str | Path | None = None, duplicate_probability: float = 0.0,
                 sleep=asyncio.sleep, behaviours: Behaviours | None = None):
        self.settings, self.clock = settings, clock
        self.register = load_register(settings, register, groups)
        for reason in self.register.skipped:
            log.warning("register: skipped %s", reason)
        self.linli_url: str | None = None
        self.state = WorldState(settings, clock=clock, sleep=sleep)
        self.http: aiohttp.ClientSession | None = None
        self.duplicate_probability = duplicate_probability
        # the platform knows its users and groups from the start; they can answer once connected
        self.people = People(self.state, self.register, settings, clock=clock)
        self.people.populate()
        if behaviours is not None:
            self.people.behaviours = behaviours
        self.runner: web.AppRunner | None = None
        self.url: str | None = None
        self._wake = asyncio.Event()
        self.state.subscribe(lambda d: self._wake.set())

    @property
    def connected(self) -> bool:
        return self.people.callbacks is not None

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
        """Know Linli's callback base URL: from now on people's messages reach Linli."""
        self.linli_url = linli_url
        # a connection for every message people may have in flight
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=PEOPLE_IN_FLIGHT))
        self.people.callbacks = CallbackClient(self.settings, linli_url, self.http, clock=self.clock,
                                               duplicate_probability=self.duplicate_probability,
                                               rng=random.Random(self.settings.world.seed))

    def person_with_role(self, role: str, *, channel: str = "wecom") -> dict | None:
        """The first person of the register with this role on this channel (file order)."""
        column = "wecom_userid" if channel == "wecom" else "oa_openid"
        return next((r for r in self.people.person.values()
                     if role in r["roles"].split(",") and r[column] == r["uid"]), None)

    async def close(self) -> None:
        self.people.cancel_inflight()
        if self.http:
            await self.http.close()
        if self.runner:
            await self.runner.cleanup()

    async def run_forever(self) -> None:
        """Carry out people's actions when their (scaled) time comes."""
        while True:
            nxt = self.people.next_at()
            if nxt is not None and nxt <= self.clock.now():
                await self.people.start_due(self.clock.now(), limit=PEOPLE_IN_FLIGHT)
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


def load_register(settings, register=None, groups=None) -> RegisterFile:
    """The register the world plays: given, or `[world] register` / `[world] groups`."""
    if isinstance(register, RegisterFile):
        return register
    if register is None:
        register = getattr(settings.world, "register", None)
        groups = groups if groups is not None else getattr(settings.world, "groups", None)
        if not register:
            raise ValueError("the world needs the register file: pass it or set [world] register")
    if not isinstance(register, (str, Path)):
        raise TypeError(f"register must be a path or a RegisterFile, not {type(register).__name__} "
                        "(the world reads the register file, never Linli's database)")
    return RegisterFile.load(register, groups or None)


class Peer(Protocol):
    """What the discrete-event driver needs from the other side (Linli, wired by the caller)."""
    clock: FakeClock

    async def settle(self) -> None:
        """Finish everything that is due now (callbacks handled, sends sent)."""

    async def run_due(self) -> None:
        """Run the timed work that is due now (escalations), then settle."""

    def next_due(self) -> float | None:
        """The clock time (after now) of the next thing the peer waits for, if any."""


async def run_until(peer: Peer, world: World, end: float, *, step_cap: int = 1_000_000) -> None:
    """Discrete-event drive of a peer + the world on a shared FakeClock up to clock time `end`.

    Each round lets the peer finish what is due now, then jumps the clock to the next thing
    anyone is waiting for: a person's action or whatever the peer says is next (for Linli: an
    escalation deadline, a send's backoff).
    """
    clock = peer.clock
    for _ in range(step_cap):
        await peer.settle()
        await world.people.run_until(clock.now())
        await peer.settle()
        await peer.run_due()
        candidates = [t for t in (world.people.next_at(), peer.next_due())
                      if t is not None and t > clock.now()]
        if (world.people.next_at() or float("inf")) <= clock.now():
            continue
        if not candidates or min(candidates) > end:
            clock.t = max(clock.t, end)
            await world.people.run_until(end)
            await peer.run_due()
            return
        clock.t = min(candidates)
    raise RuntimeError("simulation did not converge")
