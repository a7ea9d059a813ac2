"""Linli + the local world, wired for tests: a real register in a real SQLite file, the world's
platform APIs and Linli's callbacks both on localhost HTTP, one injected FakeClock."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from aiohttp.test_utils import TestServer

from bot.app import App
from bot.core.clock import FakeClock
from bot.core.config import load
from bot.world.dalong import generate
from bot.domain.register import import_register
from bot.data.store import Store
from bot.world.sim import World

T0 = 1_717_200_000.0  # 2024-06-01 08:00 Asia/Shanghai


def settings_for(tmp_path, **sections):
    s = load("config.toml", env={})
    repl = {"store": dataclasses.replace(s.store, path=str(tmp_path / "linli.db"))}
    for name, values in sections.items():
        repl[name] = dataclasses.replace(getattr(s, name), **values)
    return dataclasses.replace(s, **repl)


async def make_sim(tmp_path, *, households=60, seed=11, register=None, groups=None, **sections):
    """Import a register (generated unless given), start the world and Linli. Returns a rig."""
    clock = FakeClock(T0)
    s = settings_for(tmp_path, **sections)
    store = Store(s.store.path)
    if register is None:
        register = tmp_path / "register.csv"
        info = generate(register, households=households, seed=seed)
        groups = info["groups_file"]
    import_register(store, register, groups_path=groups, now=clock.now())
    world = World(s, Store(s.store.path), clock=clock)
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


def staff(store) -> dict:
    return store.q1("SELECT * FROM residents WHERE roles LIKE '%staff%' ORDER BY id LIMIT 1")
