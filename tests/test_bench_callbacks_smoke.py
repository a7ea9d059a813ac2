"""Keeps `python -m bench callbacks` working: the whole benchmark, tiny (a couple of hundred
requests per target on a store holding a little history), end to end: the ceiling, the gunicorn
references when gunicorn and Flask are installed (the `bench` extras; skipped otherwise) and
`linli serve` with its replies going to the local world's platform API. Not a timing test:
nothing measured here is compared with anything."""
import argparse
import math
import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench import callbacks, reference  # noqa: E402


def test_prefill_history_writes_handled_rows_that_no_callback_collides_with(tmp_path):
    db = tmp_path / "t.db"
    took = callbacks.build_template(db, 1000, reference.users(10))
    assert took >= 0
    conn = sqlite3.connect(db)
    states = dict(conn.execute("SELECT state, count(*) FROM inbound GROUP BY state").fetchall())
    users = {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM inbound")}
    residents = conn.execute("SELECT count(*) FROM residents WHERE active = 1").fetchone()[0]
    conn.close()
    assert states == {"done": 1000}  # handled history: nothing for Linli's worker to do
    assert users == set(reference.users(10))
    assert residents == 10
    # a benchmark message (MsgId >= 1) inserts beside the history, never onto it
    lat = reference.run_ceiling(db, 5, first_msg_id=1)
    assert len(lat) == 5
    assert reference.count_rows(db) == 1005


def test_full_costs_pairs_each_users_kth_reply_with_their_kth_request():
    # 2 users, 1 warm-up request (user 0), then 4 timed ones: users 1, 0, 1, 0
    starts = [10.0, 11.0, 12.0, 13.0]
    replies = [(5.0, "bench0000"),                       # the warm-up's reply
               (10.5, "bench0001"), (11.2, "bench0000"),
               (12.9, "bench0001")]                     # user 0's second timed reply never came
    costs, missing = callbacks.full_costs(starts, 1, 2, replies)
    assert costs == pytest.approx([0.5, 0.2, 0.9])
    assert missing == 1


def test_a_result_with_a_missing_reply_is_not_ok():
    r = callbacks.Result("x", 2, 1.0, [0.01, 0.02], kind="linli")
    assert r.ok
    r.replies_missing = 1
    assert not r.ok
    assert math.isnan(callbacks.Result("empty", 0, 1.0, []).pct(99))  # no sample: no percentile


def test_the_benchmark_runs_tiny_end_to_end(tmp_path, capsys):
    """One target of each kind (sync Flask and the send-limit-lifted Linli share their code with
    gthread and linli): a few hundred requests, one round, no waiting for a quiet machine."""
    parser = argparse.ArgumentParser()
    callbacks.add_args(parser)
    out = tmp_path / "callbacks.md"
    only = ["--only", "ceiling", "--only", "linli"]
    if callbacks.have_gunicorn() and callbacks.have_flask():
        only += ["--only", "gthread", "--only", "aiohttp"]
    args = parser.parse_args(["-n", "200", "--warmup", "20", "-c", "8", "--history", "2000",
                              "--rounds", "1", "--quiet-wait", "0", "--drain-timeout", "20",
                              "--workers", "1", "--threads", "2", "--out", str(out), *only])
    assert callbacks.run(args) == 0  # every answer 200 "success", rows and replies all there
    md = out.read_text(encoding="utf-8")
    assert "| target | req/s | p50 ms | p99 ms | × strongest reference | full p50 ms" in md
    assert "linli serve" in md and "ceiling" in md
    assert "220/220 replies handed to the platform" in md
    assert "rows 2,220/2,220" in md  # history + warm-up + timed: nothing lost, nothing twice
    if callbacks.have_gunicorn() and callbacks.have_flask():
        assert "gthread workers" in md and "aiohttp workers" in md
        assert "≥ 2× the strongest reference" in md


def test_without_gunicorn_the_references_are_skipped(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(callbacks, "have_gunicorn", lambda: False)
    parser = argparse.ArgumentParser()
    callbacks.add_args(parser)
    out = tmp_path / "callbacks.md"
    args = parser.parse_args(["-n", "20", "--warmup", "0", "--history", "0", "--rounds", "1",
                              "--quiet-wait", "0", "--only", "ceiling", "--out", str(out)])
    assert callbacks.run(args) == 0
    args.only = ["ceiling", "sync"]  # asked for by name: a clear refusal, not a silent skip
    with pytest.raises(SystemExit, match="need flask and gunicorn"):
        callbacks.run(args)
    args.only = None  # the default set: the references are skipped with a word
    args.count = 20
    monkeypatch.setattr(callbacks, "LINLI_TARGETS", {})
    assert callbacks.run(args) == 0
    assert "gunicorn is not installed: skipping sync, gthread, aiohttp" in capsys.readouterr().out


async def test_the_aiohttp_reference_records_a_good_callback_and_refuses_a_bad_signature(
        tmp_path, monkeypatch):
    from aiohttp.test_utils import TestClient, TestServer

    db = tmp_path / "ref.db"
    reference.create_db(db)
    monkeypatch.setenv("BENCH_DB", str(db))
    (sig, ts, nonce, body), = reference.build_requests(1, reference.users(1), 7)
    client = TestClient(TestServer(await reference.aiohttp_app()))
    await client.start_server()
    try:
        bad = await client.post(reference.PATH, data=body,
                                params={"msg_signature": "0" * 40, "timestamp": ts, "nonce": nonce})
        good = await client.post(reference.PATH, data=body,
                                 params={"msg_signature": sig, "timestamp": ts, "nonce": nonce})
        assert (bad.status, good.status, await good.text()) == (403, 200, "success")
    finally:
        await client.close()
    assert reference.count_rows(db) == 1  # the commit came before the answer; the bad one wrote nothing


def test_the_flask_reference_uses_a_connection_per_thread(tmp_path, monkeypatch):
    """gunicorn's gthread workers run requests of one process on several threads: each needs its
    own sqlite3 connection (one may not be shared between threads)."""
    pytest.importorskip("flask")
    import threading

    from bench import flask_app

    db = tmp_path / "ref.db"
    reference.create_db(db)
    monkeypatch.setenv("BENCH_DB", str(db))
    monkeypatch.setattr(flask_app, "_local", threading.local())
    reqs = reference.build_requests(2, reference.users(2), 11)
    client = flask_app.app.test_client()
    statuses, conns = [], []

    def post(req):
        sig, ts, nonce, body = req
        r = client.post(reference.PATH, data=body,
                        query_string={"msg_signature": sig, "timestamp": ts, "nonce": nonce})
        statuses.append((r.status_code, r.get_data(as_text=True)))
        conn = flask_app._db()  # this thread's: the one the request above used
        conns.append(conn)
        conn.close()  # in its own thread: sqlite3 refuses any other

    threads = [threading.Thread(target=post, args=(req,)) for req in reqs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = client.post(reference.PATH, data=reqs[0][3], query_string={
        "msg_signature": "0" * 40, "timestamp": reqs[0][1], "nonce": reqs[0][2]})
    assert statuses == [(200, "success")] * 2 and bad.status_code == 403
    assert len(conns) == 2 and conns[0] is not conns[1]
    assert reference.count_rows(db) == 2
