"""Composition root: wires settings, store, clock, outbox, reach, timers, dispatcher and routes.

Nothing here holds business logic; it only decides who gets which collaborator. An `App` is the
`Deps` (bot/domain/ports.py) every domain act takes: settings, store, clock, outbox, reach, timers.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3

import aiohttp
from aiohttp import web

from bot.core import vocabulary
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.core.dispatcher import Dispatcher
from bot.core.scheduler import Scheduler
from bot.data.store import Store
from bot.domain import consult, digest, escalation, feed, relay, schedules, upward
from bot.domain.timers import Timers
from bot.transports.inbound import cap, inbox
from bot.transports.inbound.routes import add_callback_routes
from bot.transports.outbound.cap_out import CapPostSender, JsonWebhookSender
from bot.transports.outbound.outbox import Outbox
from bot.transports.outbound.reach import PlatformReach
from bot.transports.outbound.senders import build_senders
from bot.web.ack import add_ack_routes
from bot.web.dashboard import add_dashboard_routes
from bot.web.render import APP_KEY
from handlers import build_dispatcher

log = logging.getLogger("linli.app")

ROLES = ("all", "front", "worker")


class App:
    """role: 'all' — one process does everything (tests, demo, small deployments);
    'front' — serve HTTP and record callbacks only (several may share the port);
    'worker' — handle recorded callbacks, run the outbox and the timers (exactly one)."""

    settings: Settings
    store: Store
    clock: Clock
    outbox: Outbox
    reach: PlatformReach
    timers: Timers
    scheduler: Scheduler
    dispatcher: Dispatcher
    record_conn: sqlite3.Connection | None  # a front's own non-blocking connection (server.py)

    def __init__(self, settings: Settings, *, store: Store | None = None,
                 clock: Clock | None = None, role: str = "all"):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self.role = role
        self.dispatch_inline = role == "all"
        self.settings = settings
        # the office's own words on top of bot/core/vocabulary.toml
        vocabulary.reset()
        vocabulary.extend(settings.vocabulary)
        self.store = store or Store(settings.store.path)
        self.clock = clock or Clock()
        self.http: aiohttp.ClientSession | None = None
        self.record_conn = None
        self._tasks: set[asyncio.Task] = set()
        self.senders = build_senders(self)
        # reporting upward to the street office: a CAP message and/or a JSON webhook
        self.senders.update(cap=CapPostSender(self), webhook=JsonWebhookSender(self))
        self.reach = PlatformReach()
        self.outbox = Outbox(self)
        self.dispatcher = build_dispatcher(self)
        self.scheduler = Scheduler(self.clock, settings.timezone)
        # everything due later, in one timer: silence escalating, scheduled weather-service warnings,
        # staff's scheduled and recurring notices, coverage reported upward, digests of held notices
        self.timers = Timers(self, self.scheduler, [escalation, feed, schedules, upward, digest, consult])
        # the relay reacts to each send's outcome inside the transaction that records it
        self.outbox.subscribe("*", lambda row, result: relay.on_send_result(self, row, result))

    # -- background work -------------------------------------------------------------
    def spawn(self, coro, name: str | None = None) -> asyncio.Task:
        """Run work after answering the platform; tracked so shutdown can drain it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def settle(self) -> None:
        """Wait until background tasks (and the sends they queued) are done. Used by tests."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.outbox.drain()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self.http is None:
            self.http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.send.timeout_s))
        if self.role == "front":
            return  # a front only answers HTTP; the worker sends, dispatches and keeps time
        fixed = relay.reconcile(self)
        if fixed:
            log.warning("start-up: %d hop(s) whose post was sent but not recorded as done, fixed", fixed)
        await self.outbox.start()
        if self.role == "worker":
            self.spawn(inbox.consume(self), name="inbound-consumer")
        else:
            # messages recorded (and answered "success") but not handled before a stop: the
            # platform will not resend them, so handle them now
            await inbox.resume(self)
        # timers are derived from the database: re-arming at start-up is what makes a restart
        # lose none of them
        self.scheduler.start()
        self.timers.rearm()

    async def close(self) -> None:
        self.scheduler.shutdown()
        for task in [t for t in self._tasks if t.get_name() == "inbound-consumer"]:
            task.cancel()  # an endless loop: settle() would wait for it forever
        await self.settle()
        await self.outbox.stop()
        if self.http is not None:
            await self.http.close()
            self.http = None

    def web_app(self) -> web.Application:
        wa = web.Application(client_max_size=self.settings.server.max_body_bytes)
        wa[APP_KEY] = self
        add_callback_routes(wa, self)
        add_ack_routes(wa, self)
        add_dashboard_routes(wa, self, cap_receive=cap.receive)

        async def on_startup(_):
            await self.start()

        async def on_cleanup(_):
            await self.close()

        wa.on_startup.append(on_startup)
        wa.on_cleanup.append(on_cleanup)
        return wa
