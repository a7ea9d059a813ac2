"""Keeps bench/ from rotting: the in-process ceiling of `python -m bench callbacks` (verify,
decrypt, parse, insert, commit with wechatpy + SQLite) runs on a few messages and its rows land.
Not a timing test: nothing here is measured."""
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench import reference  # noqa: E402  (after the sys.path line above)


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


async def test_relay_bench_per_group_kind_on_a_small_register():
    """App-chat building groups reach everyone too; the platform-limit arithmetic holds."""
    from bench import relay

    r = await relay.run_relay(400, "app_chat")
    assert r["kind"] == "app_chat" and r["reached"] == r["reachable"] > 300
    t, why = relay.limit_time_to_95("app_chat", 40_000, 100)
    assert t == 60.0 * 38_000 / 20_000 and "20,000/min" in why
    assert relay.limit_time_to_95("oa_template", 200_000, 0)[0] is None  # past 100,000 a day
    assert relay.limit_time_to_95("robot", 1_000, 10, 0.5)[0] == 0.5
    lines = relay.kinds_table({"app_chat": dict(r, seconds=1.0)}, {"reached": 10, "seconds": 1.0}, None, 400)
    assert any(line.startswith("| app chat |") for line in lines)


async def test_drill_bench_runs_on_a_small_register():
    """`python -m bench drill` end to end on a small register, without the prediction part: both
    chains play the same seeded people and the table has every row."""
    from bench import drill
    from bot.core.config import DEMO_GROUPS, DEMO_REGISTER, load
    from bot.world.register_file import RegisterFile

    out = await drill.bench(7, 120, 1800.0, False, load("config.toml", env={}), DEMO_REGISTER, DEMO_GROUPS,
                            RegisterFile)
    m, li = out["manual"], out["linli"]
    assert m["households"] == li["households"] == 120
    assert 0 < m["acked"] <= li["acked"] and li["never_reached"] <= m["never_reached"]
    text = drill.report(out, "machine")
    for row in ("time to 50%", "time to 95%", "households never reached", "not visited within 30 min", "no news"):
        assert row in text
