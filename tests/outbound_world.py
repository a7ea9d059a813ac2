"""Shared rig for the outbound tests: the real world platform app on a local TestServer, and a
minimal app object (settings, store, clock, http, senders, outbox) pointed at it.

A SimpleNamespace instead of bot.app.App keeps these tests independent of the inbound side; the
production wiring is the same two calls, build_senders(app) and Outbox(app).
"""
from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.core import config
from bot.core.clock import FakeClock
from bot.data.store import Store
from bot.transports.outbound.outbox import Outbox
from bot.transports.outbound.senders import build_senders
from bot.world.platform import WorldState, make_platform_app


def settings(base_url: str = "http://127.0.0.1:1", *, send: dict | None = None,
             wecom: dict | None = None, oa: dict | None = None):
    s = config.load(None, env={})
    return dataclasses.replace(
        s,
        wecom=dataclasses.replace(s.wecom, corp_id="wwtestcorp", agent_id=1000002,
                                  secret="corp-secret", token="T", api_base=base_url,
                                  **(wecom or {})),
        oa=dataclasses.replace(s.oa, app_id="wxtestapp", app_secret="oa-secret", token="T",
                               api_base=base_url, **(oa or {})),
        send=dataclasses.replace(s.send, **{"timeout_s": 2.0, **(send or {})}),
    )


class Rig(SimpleNamespace):
    """world, server, clock, app, senders, outbox, slept (fake sleeps), requests (path, at)."""

    def max_per_minute(self, path: str) -> int:
        """Most requests to `path` started within any 60 s of fake time."""
        ts = [t for p, t in self.requests if p == path]
        return max((sum(1 for u in ts if t - 60 < u <= t) for t in ts), default=0)

    def rows(self, where: str = "1=1", params=()) -> list[dict]:
        return self.app.store.q(f"SELECT * FROM sends WHERE {where} ORDER BY id", params)


async def make_rig(*, send=None, wecom=None, oa=None, token_ttl_s=7200) -> Rig:
    clock = FakeClock()
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:  # rate limiting advances time instead of waiting
        slept.append(s)
        clock.advance(s)
        await asyncio.sleep(0)

    world = WorldState(settings(), clock=clock, seed=1, token_ttl_s=token_ttl_s,
                       sleep=lambda s: asyncio.sleep(min(s, 0.005)))
    server = TestServer(make_platform_app(world))
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    s = settings(base, send=send, wecom=wecom, oa=oa)
    # every request as Linli starts it, stamped with fake time: what the rate limits govern
    # (the world stamps on arrival, which fake time can skew when sleeps jump the clock)
    requests: list[tuple[str, float]] = []
    trace = aiohttp.TraceConfig()

    async def on_start(_session, _ctx, params):
        requests.append((params.url.path, clock.now()))

    trace.on_request_start.append(on_start)
    app = SimpleNamespace(settings=s, store=Store(":memory:"), clock=clock,
                          http=aiohttp.ClientSession(
                              timeout=aiohttp.ClientTimeout(total=s.send.timeout_s),
                              trace_configs=[trace]))
    app.senders = build_senders(app, sleep=fake_sleep)
    app.outbox = Outbox(app)
    return Rig(world=world, server=server, clock=clock, app=app, senders=app.senders,
               outbox=app.outbox, slept=slept, requests=requests)


async def close_rig(r: Rig) -> None:
    await r.outbox.stop()
    await r.app.http.close()
    await r.server.close()
    r.app.store.close()


@pytest.fixture
async def rig():
    r = await make_rig()
    yield r
    await close_rig(r)
