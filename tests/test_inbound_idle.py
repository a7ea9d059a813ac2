"""An idle worker stays idle whatever the history (issue #15 item 2): the pending query reads a
partial index of unhandled rows (its plan is pinned here, not its timing), the idle loop skips
the query while no other process has committed, and handled history is pruned after the
retention without ever reusing an inbound id."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from types import SimpleNamespace

import pytest
from helpers_callbacks import NOW, make_app, make_settings, text_xml

from bot.core.clock import FakeClock
from bot.data import inbox as rows
from bot.data.store import Store
from bot.transports.inbound import inbox

DAY = 86400


def _insert(store, n, *, state="done", received_at=NOW, start=0):
    store.conn.executemany(
        "INSERT INTO inbound (dedupe_key, channel, user_id, msg_type, content, at, received_at, raw, "
        "state, fields) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(f"wecom:msg:{start + i}", "wecom", f"u{i}", "text", "收到", NOW, received_at,
          text_xml(msg_id=str(start + i)), state,
          json.dumps({"channel": "wecom", "user_id": f"u{i}", "msg_type": "text", "text": "收到",
                      "msg_id": str(start + i), "at": NOW}))
         for i in range(n)])


def plan(store, sql, params):
    return [r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.mark.parametrize("analyzed", [False, True])
def test_the_pending_query_reads_the_partial_index_not_the_table(tmp_path, analyzed):
    store = Store(tmp_path / "plan.db")
    _insert(store, 3000)                          # history
    _insert(store, 3, state="new", start=10_000)  # work
    if analyzed:  # with statistics the planner must still not prefer a walk over the rowids
        store.conn.execute("ANALYZE")
    steps = plan(store, rows.PENDING_SQL, (0, 200))
    assert steps == ["SEARCH inbound USING INDEX inbound_pending (id>?)"]
    assert not any(s.startswith("SCAN") for s in steps)
    assert [r["id"] for r in rows.pending_rows(store, after=0, limit=200)] == [3001, 3002, 3003]


def test_the_partial_index_holds_only_pending_rows(tmp_path):
    store = Store(tmp_path / "idx.db")
    _insert(store, 50)
    _insert(store, 2, state="new", start=100)
    # an index-only count: the partial index has exactly the pending rows
    assert store.scalar("SELECT COUNT(*) FROM inbound INDEXED BY inbound_pending WHERE state = 'new'") == 2


class _App:
    """Just what pruning reads (an object, not a namespace: the pruner remembers it weakly)."""

    def __init__(self, store, clock_at, **server):
        self.store, self.clock = store, FakeClock(clock_at)
        self.settings = SimpleNamespace(server=SimpleNamespace(**server))


_app = _App


def test_pruning_removes_old_handled_rows_only(tmp_path):
    store = Store(tmp_path / "prune.db")
    _insert(store, 10, received_at=NOW)                             # old, handled
    _insert(store, 2, state="failed", received_at=NOW, start=100)   # old, failed: history too
    _insert(store, 3, state="new", received_at=NOW, start=200)      # old but never handled
    _insert(store, 4, received_at=NOW + 29 * DAY, start=300)        # recent
    app = _app(store, NOW + 31 * DAY)
    assert inbox.prune_history(app) == (12, 0)
    left = store.q("SELECT state, received_at FROM inbound")
    assert sorted(r["state"] for r in left) == ["done"] * 4 + ["new"] * 3


def test_pruning_never_lets_an_id_be_reused(tmp_path):
    """Replies are keyed by inbound id (reply:<id>:<n>): if every row were pruned SQLite would
    hand out id 1 again and the new message's reply would collide with an old sent one."""
    store = Store(tmp_path / "ids.db")
    _insert(store, 5, received_at=NOW)
    app = _app(store, NOW + 365 * DAY)
    assert inbox.prune_history(app) == (4, 0)  # the newest row stays
    assert [r["id"] for r in store.q("SELECT id FROM inbound")] == [5]
    _insert(store, 1, state="new", start=99)
    assert store.scalar("SELECT max(id) FROM inbound") == 6


def test_pruning_works_in_chunks(tmp_path):
    store = Store(tmp_path / "chunks.db")
    _insert(store, 25, received_at=NOW)
    app = _app(store, NOW + 40 * DAY)
    assert inbox.prune_history(app, limit=10) == (10, 0)
    assert inbox.prune_history(app, limit=10) == (10, 0)
    assert inbox.prune_history(app, limit=10) == (4, 0)


@pytest.mark.parametrize("days, expected", [(30, 30 * DAY), (7, 7 * DAY), (0, DAY), (-5, DAY)])
def test_retention_is_configurable_with_a_floor_of_a_day(days, expected):
    app = _app(None, NOW, inbound_retention_days=days)
    assert inbox.retention_s(app) == expected
    assert inbox.retention_s(_app(None, NOW)) == inbox.INBOUND_RETENTION_DAYS * DAY  # the default


def test_maybe_prune_runs_once_per_period(tmp_path, monkeypatch):
    store = Store(tmp_path / "period.db")
    app = _app(store, NOW + 40 * DAY)
    calls = []
    monkeypatch.setattr(inbox, "prune_history", lambda a: calls.append(1) or (0, 0))
    t = [1000.0]
    inbox.maybe_prune(app, monotonic=lambda: t[0])
    inbox.maybe_prune(app, monotonic=lambda: t[0])
    t[0] += inbox.PRUNE_EVERY_S
    inbox.maybe_prune(app, monotonic=lambda: t[0])
    assert len(calls) == 2


async def test_idle_worker_does_not_query_until_another_process_commits(tmp_path, monkeypatch):
    app = make_app(make_settings(tmp_path))
    app.role, app.dispatch_inline = "worker", False
    queries = []
    real = rows.pending_rows
    monkeypatch.setattr(rows, "pending_rows", lambda *a, **k: queries.append(1) or real(*a, **k))
    monkeypatch.setattr(inbox, "maybe_prune", lambda app, monotonic=None: None)
    handled = []

    async def dispatch(msg):
        handled.append(msg.msg_id)

    app.dispatcher.dispatch = dispatch
    t = [0.0]
    task = asyncio.create_task(inbox.consume(app, idle_s=0, rescan_s=1.0, monotonic=lambda: t[0]))
    for _ in range(50):  # fifty idle polls with the clock standing still
        await asyncio.sleep(0)
    assert len(queries) == 1  # the first pass only

    front = sqlite3.connect(app.store.path, isolation_level=None)  # a front records one
    entry = inbox.entry_for(app, inbox.Inbound(channel="wecom", user_id="u", msg_type="text",
                                               text="收到", msg_id="9", at=NOW,
                                               raw=text_xml(msg_id="9")), resident=None)
    rows.record_batch(front, [entry], NOW)
    for _ in range(200):
        if handled:
            break
        await asyncio.sleep(0)
    assert handled == ["9"]
    before = len(queries)
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(queries) - before <= 2  # the pass after the work, then idle again
    t[0] += 1.0  # the safety rescan
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert app.store.q("SELECT state FROM inbound") == [{"state": "done"}]


async def test_idle_pauses_grow_and_work_resets_them(tmp_path, monkeypatch):
    """Each wake-up costs CPU: idle, the pause doubles from idle_s up to max_idle_s; a message
    brings it back to idle_s so a conversation is handled briskly."""
    app = make_app(make_settings(tmp_path))
    app.role, app.dispatch_inline = "worker", False
    monkeypatch.setattr(inbox, "maybe_prune", lambda app, monotonic=None: None)
    pauses = []

    async def fake_sleep(s):
        pauses.append(s)
        await asyncio.sleep(0)

    async def dispatch(msg):
        pass

    app.dispatcher.dispatch = dispatch
    task = asyncio.create_task(inbox.consume(app, idle_s=0.02, max_idle_s=0.25, rescan_s=1e9,
                                             monotonic=lambda: 0.0, sleep=fake_sleep))
    while len(pauses) < 8:
        await asyncio.sleep(0)
    assert pauses[:6] == [0.02, 0.02, 0.04, 0.08, 0.16, 0.25]  # first pass, then idle doubling
    assert set(pauses[6:]) == {0.25}
    front = sqlite3.connect(app.store.path, isolation_level=None)
    entry = inbox.entry_for(app, inbox.Inbound(channel="wecom", user_id="u", msg_type="text", text="x",
                                               msg_id="5", at=NOW, raw=text_xml(msg_id="5")), resident=None)
    rows.record_batch(front, [entry], NOW)
    n = len(pauses)
    while app.store.q("SELECT state FROM inbound") != [{"state": "done"}] or len(pauses) < n + 3:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0.02 in pauses[n:]  # back to brisk after the work


def test_the_prune_query_reads_the_received_index(tmp_path):
    """Pruning at 1M rows must not scan the table (it stalled the worker 0.6-0.8 s per call)."""
    from bot.data.store import Store

    store = Store(tmp_path / "plan.db")
    plan = " | ".join(r[3] for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM inbound WHERE received_at < ? AND state != 'new' "
        "AND +id < (SELECT max(id) FROM inbound) LIMIT ?", (0, 10)))
    assert "USING INDEX inbound_received" in plan, plan
    import inspect

    from bot.data import inbox
    assert "AND +id < (SELECT max(id) FROM inbound)" in inspect.getsource(inbox.prune)
