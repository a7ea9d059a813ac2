"""The alert page bounded (issue #15 item 3, #13 items 1 and 7): a downsampled curve, paged lists
with "more", live updates as small diffs shared by every viewer of the same view, an ended warning
shown as ended with no stream.

A real register in a real SQLite file and a FakeClock; acks are written by the domain's own
`record_ack` (triggers keep the counters). The HTTP tests mount the alert page's own routes
(bot.web.alert_view.add_routes) on a small aiohttp app with a real login session; the page itself
comes from the dashboard as the lead wires it (tests/test_dashboard.py)."""
from __future__ import annotations

import asyncio
import json
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sim_rig import T0, settings_for, staff

from bot.app import App
from bot.core.clock import FakeClock
from bot.data.store import Store
from bot.domain import alerts
from bot.domain.acks import record_ack
from bot.domain.alerts import Draft
from bot.domain.register import import_register
from bot.web import alert_view, auth
from bot.world.dalong import generate

PASSWORD = "pw-for-the-alert-page"


@pytest.fixture
def world(tmp_path):
    """A 400-household register, one warning to everyone, nothing acked yet."""
    s = settings_for(tmp_path)
    store = Store(s.store.path)
    reg = tmp_path / "register.csv"
    info = generate(reg, households=400, seed=5)
    import_register(store, reg, groups_path=info["groups_file"], now=T0)
    app = App(s, store=store, clock=FakeClock(T0))
    alert_id = alerts.issue(app, Draft(type="暴雨", colour="orange", issuer_id=staff(store)["id"]))
    yield app, store, alert_id
    store.close()


def households(store, alert_id, n=None, offset=0) -> list[dict]:
    rows = store.q("SELECT h.* FROM households h JOIN alert_scope s ON s.building_id=h.building_id "
                   "WHERE s.alert_id=? AND h.active=1 ORDER BY h.id", (alert_id,))
    return rows[offset:offset + n] if n is not None else rows[offset:]


def ack(app, alert_id, household_ids, *, at=None, answer="ok"):
    """These households acknowledge (at clock time `at`, the clock then put back)."""
    alert = alerts.find(app.store, alert_id)
    now = app.clock.now()
    for h in household_ids:
        if at is not None:
            app.clock.t = at
        record_ack(app, alert=alert, household_id=h, resident_id=None, channel="link", answer=answer, raw="1")
    app.clock.t = now


def alert_row(store, alert_id):
    return store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))


# -- the curve ---------------------------------------------------------------------------------------
def test_curve_of_many_acks_is_bounded_and_keeps_its_ends():
    # 100k first acks, one every 30 ms from t=5 s: one bucket row per CURVE_BUCKETS slot at most
    start, n = 1000.0, 100_000
    end = 5 + n * 0.03
    frame = alert_view.curve_frame(end)
    width = frame["span"] / alert_view.CURVE_BUCKETS
    buckets: dict[int, list] = {}
    for i in range(n):
        at = start + 5 + i * 0.03
        b = buckets.setdefault(int((at - start) // width), [0, at, at])
        b[0] += 1
        b[2] = at
    rows = [(k, c, lo, hi) for k, (c, lo, hi) in sorted(buckets.items())]
    c = alert_view.curve_svg(rows, n, start, end)
    pts = [tuple(map(float, p.split(","))) for p in c["points"].split()]
    assert c["count"] == len(pts) <= 2 * alert_view.CURVE_BUCKETS + 2
    assert pts[0] == (c["left"], c["bottom"])                   # starts at 0 s, 0 %
    assert pts[-1][1] == c["top"]                               # ends at 100 %
    assert pts[-1][0] == round(c["left"] + (c["right"] - c["left"]) * end / c["span"], 1)  # at `end`
    assert [p[0] for p in pts] == sorted(p[0] for p in pts)     # time never runs backwards
    assert [p[1] for p in pts] == sorted((p[1] for p in pts), reverse=True)  # coverage never falls


def test_curve_with_no_acks_is_a_flat_line_to_now():
    c = alert_view.curve_svg([], 50, 0.0, 120.0)
    assert c["points"].split() == [f"{c['left']:g},{c['bottom']:g}",
                                   f"{round(c['left'] + (c['right'] - c['left']) * 120 / 600, 1):g},{c['bottom']:g}"]


def test_the_page_curve_is_bucketed_from_the_store(world):
    app, store, alert_id = world
    homes = households(store, alert_id)
    alert = alert_row(store, alert_id)
    # 300 households, one every 7 s: more first acks than the curve may draw points for
    for i, h in enumerate(homes[:300]):
        ack(app, alert_id, [h["id"]], at=alert["created_at"] + 3 + 7 * i)
    assert alert["expires_at"] > alert["created_at"] + 3 + 7 * 300  # still on: the curve ends now
    app.clock.advance(3 + 7 * 300)
    snap = alert_view.snapshot(app, alert, None)
    c = snap["curve"]
    pts = [tuple(map(float, p.split(","))) for p in c["points"].split()]
    assert len(pts) <= 2 * alert_view.CURVE_BUCKETS + 2 < 2 * 300
    assert pts[0] == (c["left"], c["bottom"])
    total = snap["households"]
    assert pts[-1][1] == round(c["bottom"] - (c["bottom"] - c["top"]) * 300 / total, 1)
    # the first ack keeps its own time: the line is flat until then
    assert pts[1] == (round(c["left"] + (c["right"] - c["left"]) * 3 / c["span"], 1), c["bottom"])


def test_a_leads_curve_counts_only_their_buildings(world):
    app, store, alert_id = world
    homes = households(store, alert_id)
    mine = homes[0]["building_id"]
    theirs = [h for h in homes if h["building_id"] == mine]
    ack(app, alert_id, [h["id"] for h in homes[:40]])
    snap = alert_view.snapshot(app, alert_row(store, alert_id), frozenset({mine}))
    acked_here = sum(1 for h in homes[:40] if h["building_id"] == mine)
    assert snap["households"] == len(theirs) and snap["acked"] == acked_here
    c = snap["curve"]
    assert c["points"].split()[-1].endswith(f",{round(c['bottom'] - (c['bottom'] - c['top']) * acked_here / len(theirs), 1):g}")


# -- paged lists -------------------------------------------------------------------------------------
def test_unacked_list_pages_by_household_and_skips_the_acked(world, monkeypatch):
    app, store, alert_id = world
    monkeypatch.setattr(alert_view, "UNACKED_PAGE", 25)
    homes = households(store, alert_id)
    ack(app, alert_id, [h["id"] for h in homes[:10]])
    snap = alert_view.snapshot(app, alert_row(store, alert_id), None)
    shown = [h["id"] for g in snap["unacked"] for h in g["households"]]
    assert shown == [h["id"] for h in homes[10:35]]
    assert snap["unacked_more"] and snap["unacked_last"] == homes[34]["id"]
    assert snap["unacked_total"] == len(homes) - 10
    from bot.data import dashboard as queries
    nxt = queries.unacked_page(store, alert_id, None, snap["unacked_last"], 25)
    assert [h["id"] for h in nxt] == [h["id"] for h in homes[35:60]]
    assert queries.unacked_page(store, alert_id, None, homes[-1]["id"], 25) == []


def test_long_building_lists_are_cut_with_a_count_of_the_rest(world, monkeypatch):
    app, store, alert_id = world
    monkeypatch.setattr(alert_view, "BUILDINGS_INLINE", 3)
    monkeypatch.setattr(alert_view, "BUILDINGS_PAGE", 2)
    snap = alert_view.snapshot(app, alert_row(store, alert_id), None)
    parents = [n for n in alert_view.walk(snap["tree"]) if n["more"]]
    assert parents, "the register has compounds of more than 2 buildings"
    for n in parents:
        assert len(n["children"]) == 2 and all(k["kind"] == "building" for k in n["children"])
    html = alert_view.live_html(snap)["tree"]
    assert html.count("/more/buildings?offset=2&amp;node=") == len(parents)


def test_hops_and_followups_show_one_page_and_a_total(world, monkeypatch):
    app, store, alert_id = world
    monkeypatch.setattr(alert_view, "HOPS_PAGE", 3)
    snap = alert_view.snapshot(app, alert_row(store, alert_id), None)
    total = store.scalar("SELECT COUNT(*) FROM hops WHERE alert_id=?", (alert_id,))
    assert len(snap["hops"]) == 3 < total == snap["hops_total"]
    html = alert_view.live_html(snap)["hops"]
    assert html.count('data-hop="') == 3 and "/more/hops?offset=3" in html


# -- live diffs --------------------------------------------------------------------------------------
def test_a_diff_carries_only_what_changed(world):
    app, store, alert_id = world
    alert = alert_row(store, alert_id)
    prev = alert_view.live_state(app, alert, None)
    assert alert_view.diff(prev, alert_view.live_state(app, alert, None, prev), app=app, alert=alert) is None
    home = households(store, alert_id, 1)[0]
    ack(app, alert_id, [home["id"]])
    cur = alert_view.live_state(app, alert, None, prev)
    d = alert_view.diff(prev, cur, app=app, alert=alert)
    # the household's building and the nodes above it, nothing else
    path, node = [], store.q1("SELECT id, parent_id FROM nodes WHERE id=?", (home["building_id"],))
    while node is not None:
        path.append(str(node["id"]))
        node = store.q1("SELECT id, parent_id FROM nodes WHERE id=?", (node["parent_id"],)) if node["parent_id"] else None
    assert sorted(d["nodes"]) == sorted(path)
    assert d["nodes"][str(home["building_id"])][0] == 1
    assert d["gone"] == [home["id"]] and d["acked"] == 1
    assert set(d["html"]) == {"totals", "curve"}
    assert "hops" not in d and "reached" not in d and "state" not in d
    assert len(alert_view.encode(d)) < 8_000
    # and from there, nothing again
    assert alert_view.diff(cur, alert_view.live_state(app, alert, None, cur), app=app, alert=alert) is None


def test_a_diff_of_a_leads_view_names_only_their_households(world):
    app, store, alert_id = world
    homes = households(store, alert_id)
    mine = homes[0]["building_id"]
    other = next(h for h in homes if h["building_id"] != mine)
    alert = alert_row(store, alert_id)
    scope = frozenset({mine})
    prev = alert_view.live_state(app, alert, scope)
    ack(app, alert_id, [other["id"]])
    assert alert_view.diff(prev, alert_view.live_state(app, alert, scope, prev), app=app, alert=alert,
                           scope=scope) is None
    ack(app, alert_id, [homes[0]["id"]])
    d = alert_view.diff(prev, alert_view.live_state(app, alert, scope, prev), app=app, alert=alert, scope=scope)
    assert d["gone"] == [homes[0]["id"]] and str(other["building_id"]) not in d["nodes"]


def test_a_changed_hop_is_sent_as_its_row(world):
    app, store, alert_id = world
    alert = alert_row(store, alert_id)
    prev = alert_view.live_state(app, alert, None)
    hop = store.q1("SELECT id FROM hops WHERE alert_id=? ORDER BY id LIMIT 1", (alert_id,))
    with store.transaction():
        store.conn.execute("UPDATE hops SET state='failed' WHERE id=?", (hop["id"],))
    d = alert_view.diff(prev, alert_view.live_state(app, alert, None, prev), app=app, alert=alert)
    assert list(d["hops"]) == [str(hop["id"])] and f'data-hop="{hop["id"]}"' in d["hops"][str(hop["id"])]
    assert "nodes" not in d


def test_a_storm_of_acks_resends_the_list_instead_of_naming_every_household(world, monkeypatch):
    app, store, alert_id = world
    monkeypatch.setattr(alert_view, "MAX_IDS", 5)
    alert = alert_row(store, alert_id)
    prev = alert_view.live_state(app, alert, None)
    ack(app, alert_id, [h["id"] for h in households(store, alert_id, 6)])
    d = alert_view.diff(prev, alert_view.live_state(app, alert, None, prev), app=app, alert=alert)
    assert "gone" not in d and 'id="unacked"' in d["html"]["unacked"]


# -- an ended warning --------------------------------------------------------------------------------
def test_a_lifted_or_expired_warning_is_ended(world):
    app, store, alert_id = world
    alert = alert_row(store, alert_id)
    assert not alert_view.ended(alert, app.clock.now())
    assert alert_view.ended(alert, alert["expires_at"])                 # past expiry, not yet marked
    assert alert_view.snapshot(app, alert, None)["ended"] is False
    alerts.follow_on(app, alert_id, "lift", text="", issuer_id=staff(store)["id"])
    lifted = alert_row(store, alert_id)
    assert lifted["state"] == "lifted" and alert_view.snapshot(app, lifted, None)["ended"] is True


# -- over HTTP: the stream, "more", an ended warning ---------------------------------------------------
@pytest.fixture
async def http(world):
    app, store, alert_id = world
    auth.create_user(store, "admin", PASSWORD)
    wa = web.Application()
    hub = alert_view.add_routes(wa, app)
    hub.poll_s = 0.01  # wall seconds between checks; nothing below waits on a duration
    client = TestClient(TestServer(wa))
    await client.start_server()
    result, token = await auth.login(app, "admin", PASSWORD, "127.0.0.1")
    assert result == "ok"
    client.session.cookie_jar.update_cookies({auth.COOKIE: token})
    yield client, hub
    await hub.shutdown()
    await client.close()


async def next_event(resp) -> tuple[str, dict]:
    """The next SSE event (name, data); the timeout only guards against a hang."""
    async def read():
        event, data = None, None
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and event:
                return event, data
    return await asyncio.wait_for(read(), timeout=10)


async def test_the_stream_sends_a_snapshot_then_only_diffs(world, http):
    app, store, alert_id = world
    client, hub = http
    resp = await client.get(f"/alerts/{alert_id}/events")
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    name, snap = await next_event(resp)
    assert name == "snapshot" and set(snap["html"]) == set(alert_view.SECTIONS) and snap["acked"] == 0
    home = households(store, alert_id, 1)[0]
    ack(app, alert_id, [home["id"]])
    name, d = await next_event(resp)
    assert name == "diff" and d["gone"] == [home["id"]] and d["acked"] == 1 and d["v"] > snap["v"]
    assert "tree" not in d.get("html", {}) and "unacked" not in d.get("html", {})
    resp.close()


async def test_viewers_of_the_same_view_share_one_build_per_change(world, http):
    app, store, alert_id = world
    client, hub = http
    first = await client.get(f"/alerts/{alert_id}/events")
    await next_event(first)
    second = await client.get(f"/alerts/{alert_id}/events")
    await next_event(second)
    builds = hub.builds
    ack(app, alert_id, [households(store, alert_id, 1)[0]["id"]])
    a, b = await next_event(first), await next_event(second)
    assert a == b and a[0] == "diff"
    assert hub.builds == builds + 1  # one state built for the change, not one per viewer
    first.close()
    second.close()


async def test_a_page_at_the_current_version_gets_no_snapshot(world, http):
    app, store, alert_id = world
    client, hub = http
    watcher = await client.get(f"/alerts/{alert_id}/events")
    await next_event(watcher)
    version = alert_view.snapshot(app, alert_row(store, alert_id), None)["version"]
    assert version > 0
    page = await client.get(f"/alerts/{alert_id}/events?v={version}")
    ack(app, alert_id, [households(store, alert_id, 1)[0]["id"]])
    name, d = await next_event(page)
    assert name == "diff" and d["v"] > version
    watcher.close()
    page.close()


async def test_an_ended_warning_opens_no_stream(world, http):
    app, store, alert_id = world
    client, hub = http
    alerts.follow_on(app, alert_id, "lift", text="", issuer_id=staff(store)["id"])
    resp = await client.get(f"/alerts/{alert_id}/events")
    assert resp.status == 204 and hub.open == 0 and hub.feeds == {}


async def test_a_warning_ending_while_watched_ends_the_stream(world, http):
    app, store, alert_id = world
    client, hub = http
    resp = await client.get(f"/alerts/{alert_id}/events")
    await next_event(resp)
    alerts.follow_on(app, alert_id, "lift", text="", issuer_id=staff(store)["id"])
    name, d = await next_event(resp)
    assert name == "diff" and d["ended"] is True and d["state"] == "lifted"
    assert (await next_event(resp))[0] == "ended"
    assert await resp.content.read() == b""  # the server closed the stream


async def test_more_returns_the_next_rows_of_each_list(world, http, monkeypatch):
    app, store, alert_id = world
    client, _ = http
    monkeypatch.setattr(alert_view, "UNACKED_PAGE", 20)
    monkeypatch.setattr(alert_view, "MORE_PAGE", 4)
    homes = households(store, alert_id)
    resp = await client.get(f"/alerts/{alert_id}/more/unacked?after={homes[19]['id']}")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
    ids = [int(x) for x in re.findall(r'data-h="(\d+)"', await resp.text())]
    assert ids == [h["id"] for h in homes[20:40]]
    assert f"/more/unacked?after={homes[39]['id']}" in await resp.text()
    body = await (await client.get(f"/alerts/{alert_id}/more/hops?offset=2")).text()
    assert body.count('data-hop="') == 4 and "/more/hops?offset=6" in body
    compound = store.q1("SELECT n.id, COUNT(b.id) AS k FROM nodes n JOIN nodes b ON b.parent_id=n.id "
                        "AND b.kind='building' GROUP BY n.id ORDER BY k DESC LIMIT 1")
    body = await (await client.get(f"/alerts/{alert_id}/more/buildings?offset=1&node={compound['id']}")).text()
    assert body.count('data-building="') == min(4, compound["k"] - 1)


@pytest.mark.parametrize("query", ["offset=-1", "offset=abc", "offset=1e3", "offset=99999999999"])
async def test_more_refuses_a_bad_offset(world, http, query):
    _, _, alert_id = world
    client, _ = http
    assert (await client.get(f"/alerts/{alert_id}/more/hops?{query}")).status == 400


async def test_more_of_an_unknown_node_or_section_is_not_found(world, http):
    _, _, alert_id = world
    client, _ = http
    assert (await client.get(f"/alerts/{alert_id}/more/buildings?node=999999")).status == 404
    assert (await client.get(f"/alerts/{alert_id}/more/people")).status == 404
    assert (await client.get("/alerts/999999/more/hops")).status == 404


async def test_more_and_the_stream_need_a_login(world, http):
    _, _, alert_id = world
    client, _ = http
    client.session.cookie_jar.clear()
    resp = await client.get(f"/alerts/{alert_id}/more/hops", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    resp = await client.get(f"/alerts/{alert_id}/events", allow_redirects=False)
    assert resp.status == 302
