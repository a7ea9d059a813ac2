"""Worker CPU while idle, by rows of inbound history (issue #15 item 2: idle must stay idle).

    python -m bench idle [--rows 0,100000,1000000] [--seconds 15] [--fronts 1]

For each history size: a fresh store (Linli's schema, migrations included) gets that many
handled `inbound` rows; `linli serve --fronts N` starts on it with nothing to do (no alert, no
callback, an unreachable platform), and after a settle time the CPU of the worker process (the
one that polls for recorded callbacks) and of its fronts is read from /proc over --seconds of
wall time. Target: worker < 1% of a core at 1,000,000 rows.

Runs against whatever tree it sits in, so the same file measures a checkout before a change.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.callbacks import _child_env, _cpu_seconds, _linli_config, free_port, machine, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def seed_history(db: Path, rows: int, *, batch: int = 50_000) -> float:
    """`rows` handled callbacks, as months of traffic leave them. Returns seconds spent."""
    from bot.data.store import Store

    t0 = time.perf_counter()
    store = Store(db)  # the schema of this tree, every migration applied
    now = time.time()
    xml = "<xml><FromUserName>u</FromUserName><MsgType>text</MsgType><Content>收到</Content></xml>"
    fields = json.dumps({"channel": "wecom", "user_id": "u", "msg_type": "text", "text": "收到"})
    conn = store.conn
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO inbound (dedupe_key, channel, user_id, msg_type, content, at, received_at, raw, "
            "state, fields) VALUES (?,?,?,?,?,?,?,?,'done',?)",
            ((f"wecom:msg:{start + i}", "wecom", f"u{(start + i) % 5000}", "text", "收到",
              now - 86400, now - 3600, xml, fields) for i in range(n)))
        conn.execute("COMMIT")
    store.close()
    return time.perf_counter() - t0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def own_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(rows: int, seconds: float, fronts: int, settle: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="linli-idle-"))
    db = tmp / "linli.db"
    seeded = seed_history(db, rows)
    port = free_port()
    cfg = _linli_config(tmp, port, f"http://127.0.0.1:{free_port()}", "refused")
    log = open(tmp / "linli.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--fronts", str(fronts), "--config", str(cfg)],
                            cwd=ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, timeout=60)
        time.sleep(settle)  # start-up work (migrations, resume, first timers) is not idling
        fronts_pids = children(proc.pid)
        w0, f0, t0 = own_cpu(proc.pid), sum(_cpu_seconds(p) for p in fronts_pids), time.perf_counter()
        time.sleep(seconds)
        w1, f1, t1 = own_cpu(proc.pid), sum(_cpu_seconds(p) for p in fronts_pids), time.perf_counter()
    finally:
        stop(proc)
        log.close()
    size = db.stat().st_size
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    wall = t1 - t0
    return {"rows": rows, "worker_pct": 100 * (w1 - w0) / wall, "fronts_pct": 100 * (f1 - f0) / wall,
            "seconds": wall, "seed_s": seeded, "db_mb": size / 1e6}


def add_args(p) -> None:
    p.add_argument("--rows", default="0,100000,1000000", help="history sizes, comma-separated")
    p.add_argument("--seconds", type=float, default=15.0, help="measured idle time per size")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after start-up before measuring")
    p.add_argument("--fronts", type=int, default=1)


def run(args) -> int:
    sizes = [int(x) for x in args.rows.split(",") if x.strip()]
    lines = [f"idle worker CPU by inbound history ({machine()})", "",
             "| inbound rows (handled) | worker % of a core | fronts % of a core | DB MB |",
             "|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    results = []
    for n in sizes:
        r = measure(n, args.seconds, args.fronts, args.settle)
        results.append(r)
        line = f"| {n:,} | {r['worker_pct']:.2f} | {r['fronts_pct']:.2f} | {r['db_mb']:.0f} |"
        lines.append(line)
        print(line, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "idle.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    worst = max(r["worker_pct"] for r in results) if results else 0.0
    print(f"\nworst: {worst:.2f}% of a core (target < 1%); written to bench/out/idle.md")
    return 0


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench idle", description=__doc__.splitlines()[0])
    add_args(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
