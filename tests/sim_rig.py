"""Linli + the local world, wired for tests: a real register in a real SQLite file, the world's
platform APIs and Linli's callbacks both on localhost HTTP, one injected FakeClock.

The world reads the same register file Linli imports and nothing of Linli's; this rig is the
entry layer that knows both, so Linli's side of the discrete-event drive (its escalation timers,
its send backoffs) is wired here, in `LinliPeer`."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestServer

from bot.app import App
from bot.core.clock import FakeClock
from bot.core.config import load
from bot.data.store import Store
from bot.domain.register import import_register
from bot.world import sim
from bot.world.dalong import generate
from bot.world.sim import World

T0 = 1_717_200_000.0  # 2024-06-01 08:00 Asia/Shanghai


def settings_for(tmp_path, **sections):
    s = load("config.toml", env={})
    repl = {"store": dataclasses.replace(s.store, path=str(tmp_path / "linli.db"))}
    for name, values in sections.items():
        repl[name] = dataclasses.replace(getattr(s, name), **values)
    return dataclasses.replace(s, **repl)


async def make_sim(tmp_path, *, households=60, seed=11, register=None, groups=None, **sections):
    """Import a register (generated unless given) into Linli, give the world the same file, start
    both. Returns a rig."""
    clock = FakeClock(T0)
    s = settings_for(tmp_path, **sections)
    store = Store(s.store.path)
    if register is None:
        register = tmp_path / "register.csv"
        info = generate(register, households=households, seed=seed)
        groups = info["groups_file"]
    import_register(store, register, groups_path=groups, now=clock.now())
    world = World(s, register, groups=groups, clock=clock)
    url = await world.start()
    s = dataclasses.replace(s, wecom=dataclasses.replace(s.wecom, api_base=url),
                            oa=dataclasses.replace(s.oa, api_base=url))
    app = App(s, store=store, clock=clock)
    server = TestServer(app.web_app())
    await server.start_server()
    await world.connect(str(server.make_url("")).rstrip("/"))
    return SimpleNamespace(app=app, world=world, server=server, clock=clock, store=store, settings=s)


async def close_sim(rig) -> None:
    await rig.server.close()
    await rig.world.close()


class LinliPeer:
    """Linli's side of the discrete-event drive (bot.world.sim.Peer)."""

    def __init__(self, app):
        self.app, self.clock = app, app.clock

    async def settle(self) -> None:
        await self.app.settle()

    async def run_due(self) -> None:
        # everything due later: escalation, scheduled CAP, schedules, upward reports, digests
        await self.app.timers.run_due()
        await self.app.settle()

    def next_due(self) -> float | None:
        pending = self.app.store.scalar("SELECT MIN(next_at) FROM sends WHERE state='pending'")
        later = [t for t in (self.app.timers.next_due_at(), pending) if t is not None and t > self.clock.now()]
        return min(later) if later else None


async def run_until(app, world, end: float) -> None:
    """Drive Linli (`app`) and the world on their shared FakeClock up to clock time `end`."""
    await sim.run_until(LinliPeer(app), world, end)


def staff(store) -> dict:
    return store.q1("SELECT * FROM residents WHERE roles LIKE '%staff%' ORDER BY id LIMIT 1")


def household_labels(store) -> dict[int, str]:
    """Linli's household ids -> labels: how tests line Linli's rows up with the world's truth,
    which names households by label (the world never sees Linli's ids)."""
    return {r["id"]: r["label"] for r in store.q("SELECT id, label FROM households")}


@pytest.fixture
async def small_sim(tmp_path):
    """A 60-household Dalong-shaped rig (seed 11), closed afterwards: import it into a test module
    (`from sim_rig import small_sim`) instead of writing the same fixture again."""
    rig = await make_sim(tmp_path, households=60, seed=11)
    yield rig
    await close_sim(rig)
