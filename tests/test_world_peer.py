"""The world is a peer of Linli (issue #9): it imports bot.core only, reads the register file and
never Linli's database, learns the rest from the API calls it serves, and is driven alongside
whatever peer the caller wires in."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_architecture import graph

from bot.core.clock import FakeClock
from bot.core.config import load
from bot.data.store import Store
from bot.world.dalong import generate
from bot.world.register_file import RegisterFile
from bot.world.sim import World, run_until

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_717_200_000.0


def settings(**world):
    s = load("config.toml", env={})
    return dataclasses.replace(s, world=dataclasses.replace(s.world, **world))


@pytest.fixture
def register(tmp_path):
    info = generate(tmp_path / "reg.csv", households=20, seed=2)
    return Path(info["register"]), Path(info["groups_file"])


def test_the_world_imports_only_the_core():
    bad = sorted(f"{m} -> {d}" for m, deps in graph().items() if m.startswith("bot.world")
                 for d in deps if not d.startswith(("bot.core", "bot.world")))
    assert bad == []


def test_no_world_module_opens_a_database():
    names = set()
    for f in (ROOT / "bot" / "world").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {a.name for a in node.names} | {getattr(node, "module", None) or ""}
    assert names and not names & {"sqlite3", "sqlite_utils", "bot.data", "bot.data.store"}


async def test_the_world_stands_on_the_register_file_alone(tmp_path, register):
    """No database anywhere: the world knows its users and groups from the file, and learns an
    app chat Linli creates from the API call that creates it."""
    w = World(settings(), register[0], groups=register[1], clock=FakeClock(T0))
    assert not list(tmp_path.glob("*.db"))
    rf = RegisterFile.load(*register)
    assert set(w.people.person) == {p.uid for p in rf.people if p.uid}
    assert {g.name for g in w.state.groups.values()} == {g.name for g in rf.groups}
    assert not w.connected
    lead = w.person_with_role("building_lead")
    async with TestClient(TestServer(w.platform_app())) as c:
        tok = (await (await c.get("/cgi-bin/gettoken", params={"corpid": w.state.corp_id,
                                                                "corpsecret": w.state.corp_secret})).json())
        staff = w.person_with_role("staff")
        r = await (await c.post("/cgi-bin/appchat/create", params={"access_token": tok["access_token"]},
                                json={"chatid": "newchat", "name": "防汛群",
                                      "userlist": [staff["uid"], lead["uid"]]})).json()
        assert r["errcode"] == 0 and w.state.groups["newchat"].members == {staff["uid"], lead["uid"]}
        # before the world knows where Linli is, nobody can write to it
        r = await c.post("/chat/api/send", json={"person": lead["uid"], "chat": "bot", "text": "已转发"})
        assert r.status == 503


def test_the_register_comes_from_settings_or_is_refused(tmp_path, register):
    s = settings()
    if "register" in {f.name for f in dataclasses.fields(s.world)}:
        w = World(settings(register=str(register[0]), groups=str(register[1])), clock=FakeClock(T0))
        assert w.people.person
        with pytest.raises(ValueError, match="register"):
            World(settings(register=""), clock=FakeClock(T0))
    else:  # settings without a [world] register: the caller must say which file
        with pytest.raises(ValueError, match="register"):
            World(s, clock=FakeClock(T0))
    with pytest.raises(TypeError, match="never Linli's database"):
        World(s, Store(tmp_path / "linli.db"), clock=FakeClock(T0))


class Peer:
    """A stand-in for Linli: it waits for one timer and records when its due work ran."""

    def __init__(self, clock, due):
        self.clock, self.due, self.ran = clock, list(due), []

    async def settle(self):
        pass

    async def run_due(self):
        while self.due and self.due[0] <= self.clock.now():
            self.ran.append(self.due.pop(0))

    def next_due(self):
        return next((t for t in self.due if t > self.clock.now()), None)


async def test_run_until_jumps_to_the_peers_next_due_and_stops_at_the_end(register):
    clock = FakeClock(T0)
    w = World(settings(), register[0], groups=register[1], clock=clock)
    peer = Peer(clock, [T0 + 100, T0 + 250, T0 + 10_000])
    await run_until(peer, w, T0 + 300)
    assert peer.ran == [T0 + 100, T0 + 250] and clock.now() == T0 + 300
    await run_until(peer, w, T0 + 20_000)
    assert peer.ran[-1] == T0 + 10_000 and clock.now() == T0 + 20_000
