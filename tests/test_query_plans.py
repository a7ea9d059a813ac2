"""The queries on the ack path use an index, so an ack costs the same at the 100th and the 100,000th
(EXPLAIN QUERY PLAN, not a timing: deterministic on any machine)."""
from __future__ import annotations

import pytest

from bot.data.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "plans.db")
    yield s
    s.close()


def plan(store: Store, sql: str, params=()) -> str:
    return " | ".join(r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params))


@pytest.mark.parametrize("sql, index", [
    # the resident's last answer (duplicate / changed answer check on every ack)
    ("SELECT * FROM acks WHERE alert_id=? AND resident_id=? ORDER BY id DESC LIMIT 1", "acks_alert_resident"),
    # the household's last answer (the link door, proxy acks)
    ("SELECT * FROM acks WHERE alert_id=? AND household_id=? ORDER BY at DESC, id DESC LIMIT 1",
     "acks_alert_household"),
    # households that asked for help (coverage on every dashboard refresh)
    ("SELECT DISTINCT household_id FROM acks WHERE alert_id=? AND answer='help'", "acks_alert_answer"),
    # the k-th first ack (time to 50/90/100%)
    ("SELECT at FROM ack_firsts WHERE alert_id=? ORDER BY at LIMIT 1 OFFSET ?", "ack_firsts_time"),
])
def test_ack_path_queries_use_an_index(store, sql, index):
    params = (1, 1) if sql.count("?") == 2 else (1,)
    got = plan(store, sql, params)
    assert f"INDEX {index}" in got, got
    assert "SCAN acks" not in got and "SCAN ack_firsts" not in got, got


def test_the_data_layer_runs_the_planned_queries(store):
    # the strings above are the ones bot/data/acks.py runs: keep them in step
    import inspect

    from bot.data import acks

    src = inspect.getsource(acks)
    assert "WHERE alert_id=? AND resident_id=? ORDER BY id DESC LIMIT 1" in src
    assert "answer='help'" in src
    assert "ORDER BY at LIMIT 1 OFFSET ?" in src


def test_a_residents_open_consultations_probe_the_voters_by_key(store, monkeypatch):
    # asked on every short chat message of a resident (is it a vote?): the consultations still live
    # are few, each probed by consultation_voters' primary key, never a scan of all voters
    from bot.data import consult

    seen = []
    real_q = store.q
    monkeypatch.setattr(store, "q", lambda sql, params=(): (seen.append((sql, params)), real_q(sql, params))[1])
    consult.for_household(store, 1, since=0.0)
    (sql, params), = seen
    got = plan(store, sql, params)
    assert "SEARCH v USING PRIMARY KEY (consultation_id=? AND household_id=?)" in got, got
    assert "SCAN v" not in got, got
