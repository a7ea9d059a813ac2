"""Keeps bench/ from rotting: the in-process ceiling of `python -m bench callbacks` (verify,
decrypt, parse, insert, commit with wechatpy + SQLite) runs on a few messages and its rows land.
Not a timing test: nothing here is measured."""
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench import reference


def test_ceiling_records_every_message(tmp_path):
    db = tmp_path / "ceiling.db"
    reference.create_db(db)
    latencies = reference.run_ceiling(db, 50, warmup=2, first_msg_id=500)
    assert len(latencies) == 50 and all(t > 0 for t in latencies)
    assert reference.count_rows(db) == 52
    conn = sqlite3.connect(db)
    keys = {r[0] for r in conn.execute("SELECT dedupe_key FROM inbound")}
    row = conn.execute("SELECT channel, msg_type, content, state FROM inbound LIMIT 1").fetchone()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert keys == {f"wecom:msg:{i}" for i in range(500, 552)}
    assert row == ("wecom", "text", "收到", "new")


async def test_relay_bench_runs_on_a_small_register():
    """`python -m bench relay` end to end on a small register: the world reads the generated
    register file, Linli relays, and every resident on WeChat is reached."""
    from bench import relay

    r = await relay.run_relay(400)
    assert r["reached"] == r["reachable"] > 300
    assert r["households_reached"] > 0 and set(r["states"]) == {"sent"}
