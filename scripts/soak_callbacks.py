"""Soak: N concurrent signed, AES-encrypted WeCom callbacks at `linli serve`, then count what was
recorded exactly once and what every request was answered.

    .venv/bin/python scripts/soak_callbacks.py [-n 1000] [--fronts 1] [--rounds 2] [--retries 3]
    .venv/bin/python scripts/soak_callbacks.py --url http://127.0.0.1:8080 --db data/linli.db

Without --url it starts its own `linli serve --fronts N` on a temporary store (the register
holds every sending user, so each message is handled and answered with a reply queued to an
unreachable platform). With --url it fires at a running server that must be configured with the
demo WeCom credentials of config.toml (bench/reference.py), and reads --db afterwards.

All N requests of a round are sent at once (no connection limit). Like the platform, the client
waits 5 s for an answer, and a request answered with anything but 200 "success" (or not
answered) is sent again, up to --retries more times. The report says, per round:
- the first answers (status → count) and latency p50/p99/max;
- the final outcome after retries; "lost" = no "success" after all attempts;
- recorded rows: how many of the N MsgIds have exactly one `inbound` row (UNIQUE makes two
  impossible; the check is that none is missing), and whether any was answered "success"
  without a row (must be 0);
- "valid message answered 4xx": must be 0 (the platform does not retry a 4xx: it would be lost).
Exit status 0 only when nothing was lost and no valid message got a 4xx.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import reference  # noqa: E402
from bench.callbacks import _child_env, _linli_config, _seed_register, free_port, stop, wait_port  # noqa: E402

PLATFORM_TIMEOUT_S = 5.0


async def fire(url: str, reqs, retries: int) -> dict:
    import aiohttp

    first: list = [None] * len(reqs)
    final: list = [None] * len(reqs)
    latency = [0.0] * len(reqs)
    attempts = [0] * len(reqs)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=PLATFORM_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i):
            sig, ts, nonce, body = reqs[i]
            for attempt in range(retries + 1):
                attempts[i] += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(f"{url}{reference.PATH}", data=body,
                                            params={"msg_signature": sig, "timestamp": ts, "nonce": nonce},
                                            headers={"Content-Type": "text/xml"}) as r:
                        text = await r.read()
                        status = r.status if text == b"success" or r.status != 200 else "200-not-success"
                except asyncio.TimeoutError:
                    status = "no answer in 5 s"
                except aiohttp.ClientError as e:
                    status = f"{type(e).__name__}"
                if attempt == 0:
                    first[i], latency[i] = status, time.perf_counter() - t0
                final[i] = status
                if status == 200:
                    return

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(reqs))))
        elapsed = time.perf_counter() - t0
    return {"first": first, "final": final, "latency": latency, "attempts": attempts, "elapsed": elapsed}


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] * 1000 if s else 0.0


def recorded(db: Path, keys: list[str]) -> collections.Counter:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        found = collections.Counter()
        for chunk in range(0, len(keys), 500):
            part = keys[chunk:chunk + 500]
            for (key,) in conn.execute(
                    f"SELECT dedupe_key FROM inbound WHERE dedupe_key IN ({','.join('?' * len(part))})", part):
                found[key] += 1
        return found
    finally:
        conn.close()


def wait_handled(db: Path, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            states = dict(conn.execute("SELECT state, COUNT(*) FROM inbound GROUP BY state").fetchall())
        finally:
            conn.close()
        if not states.get("new") or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def report_round(n: int, out: dict, rows: collections.Counter, keys: list[str], states: dict) -> tuple[str, bool]:
    first = collections.Counter(map(str, out["first"]))
    final = collections.Counter(map(str, out["final"]))
    lost = sum(1 for s in out["final"] if s != 200)
    once = sum(1 for k in keys if rows[k] == 1)
    missing = [i for i, k in enumerate(keys) if rows[k] == 0]
    success_without_row = sum(1 for i in missing if out["final"][i] == 200)
    valid_4xx = sum(1 for s in out["first"] + out["final"] if isinstance(s, int) and 400 <= s < 500)
    retried = sum(1 for a in out["attempts"] if a > 1)
    lines = [
        f"  first answers: {dict(sorted(first.items()))}; latency p50 {pct(out['latency'], 50):.0f} ms, "
        f"p99 {pct(out['latency'], 99):.0f} ms, max {max(out['latency']) * 1000:.0f} ms; "
        f"all answered in {out['elapsed']:.1f} s",
        f"  after the platform's retries ({retried} requests retried): {dict(sorted(final.items()))}; lost: {lost}",
        f"  recorded exactly once: {once}/{n}; missing: {len(missing)}; answered success without a row: "
        f"{success_without_row}; valid message answered 4xx: {valid_4xx}",
        f"  inbound rows by state once handled: {states}",
    ]
    ok = lost == 0 and valid_4xx == 0 and success_without_row == 0 and once == n
    return "\n".join(lines), ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=1000, help="concurrent callbacks per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--fronts", type=int, default=1, help="front processes of the started server")
    p.add_argument("--retries", type=int, default=3, help="resends after a non-success answer, as the platform")
    p.add_argument("--url", help="a running linli serve (default: start one)")
    p.add_argument("--db", help="its store (with --url)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)

    users = reference.users(500)
    proc = None
    tmp = Path(tempfile.mkdtemp(prefix="linli-soak-"))
    if args.url:
        if not args.db:
            p.error("--url needs --db")
        url, db = args.url.rstrip("/"), Path(args.db)
    else:
        db = tmp / "linli.db"
        _seed_register(db, users)
        port = free_port()
        cfg = _linli_config(tmp, port, f"http://127.0.0.1:{free_port()}", "refused")
        log = open(tmp / "linli.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--fronts", str(args.fronts),
                                 "--config", str(cfg)], cwd=ROOT, env=_child_env(), stdout=log,
                                stderr=subprocess.STDOUT)
        wait_port(port, proc)
        time.sleep(1.0)  # let every front bind the shared port
        url = f"http://127.0.0.1:{port}"
    print(f"soak: {args.n} concurrent signed, encrypted callbacks x {args.rounds} rounds at {url} "
          f"({'started here, ' + str(args.fronts) + ' front(s) + worker' if proc else 'running server'}); "
          f"nproc={os.cpu_count()}")
    all_ok = True
    try:
        for r in range(args.rounds):
            first_id = 50_000_000 + r * 1_000_000 + int(time.time()) % 100_000 * 10
            reqs = reference.build_requests(args.n, users, first_id)
            keys = [f"wecom:msg:{first_id + i}" for i in range(args.n)]
            out = asyncio.run(fire(url, reqs, args.retries))
            states = wait_handled(db)
            text, ok = report_round(args.n, out, recorded(db, keys), keys, states)
            print(f"round {r + 1}:\n{text}")
            all_ok &= ok
    finally:
        if proc is not None:
            stop(proc)
            log.close()
            tb = (tmp / "linli.log").read_text(errors="replace")
            print(f"server log: {tb.count('Traceback')} tracebacks, "
                  f"{tb.count('answered 503')} answered 503, {tb.count('client went away')} client went away")
        if args.keep or not proc:
            print(f"kept {tmp}")
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    print("soak: OK" if all_ok else "soak: FAILED (lost messages or a valid message answered 4xx)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
