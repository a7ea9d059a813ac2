"""Inbound callbacks per second, p50/p99 answer latency and full per-message cost: Linli vs
the usual ways to write the same callback with wechatpy, for AES-encrypted WeCom text messages on
loopback (issue 3, issue #15 item 4).

    python -m bench callbacks [-n 5000] [--warmup 500] [-c 32] [--history 1000000] [--sends world]

Targets: >= 2x the strongest reference at equal durability, p99 < 50 ms.

- ceiling: bench.reference.handle (verify, decrypt, parse, insert, commit) in a plain loop.
- references, each the same handle() with a commit per message before the answer, one process
  per core under gunicorn: Flask on sync workers, Flask on gthread workers (keep-alive, threads),
  aiohttp on gunicorn's aiohttp worker (uvloop, keep-alive).
- linli: `python -m bot serve --config <temp config>`: the real front + worker processes, real
  store file (full schema), a register holding every sending user; each message is handled and
  answered by a reply that the outbox sends to the local world's platform API (own process).

Every target starts from a copy of one store file holding --history rows of inbound history.
Load comes from a second process (`python -c`): aiohttp, fixed concurrency, requests
pre-built with wechatpy's crypto (unique MsgIds, current timestamps) before the clock starts.
Linli's clock stops when the last reply has reached the platform, not at the last answer; its
full per-message cost is request sent -> reply received by the platform.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import reference

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TEXT = "收到"  # a registered resident's ack with no alert open: handled, and answered by a reply


# -- measuring ------------------------------------------------------------------------------

@dataclass
class Result:
    target: str
    count: int
    elapsed: float                           # first timed request → last answer, or last reply
    latencies: list[float]                   # per request: sent → answer received (s)
    bad: list = field(default_factory=list)  # (index, status, body) of non-"success" answers
    rows: int | None = None                  # rows in the DB afterwards
    rows_expected: int | None = None
    notes: list[str] = field(default_factory=list)
    cpu_ms: float | None = None              # server CPU (all its processes) per request
    foreign: float = 0.0                     # CPU used by unrelated processes (cores) meanwhile
    full: list[float] | None = None          # per message: sent → reply received by the platform
    replies_missing: int = 0                 # timed messages whose reply never reached it
    kind: str = "reference"                  # "ceiling" | "reference" | "linli"

    @property
    def rps(self) -> float:
        return self.count / self.elapsed

    def pct(self, p: float, values: list[float] | None = None) -> float:
        s = sorted(self.latencies if values is None else values)
        return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] * 1000 if s else float("nan")

    @property
    def ok(self) -> bool:
        return (not self.bad and not self.replies_missing
                and (self.rows_expected is None or self.rows == self.rows_expected))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"nproc={os.cpu_count()}, CPU: {model}, Python {platform.python_version()} "
            f"({platform.system()} {platform.release()})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process we started (by its pid), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- the load generator (runs in its own process) -------------------------------------------

def _loadgen_main(spec: str) -> None:
    """The load generator's process (`python -c`, so no multiprocessing helper process outlives
    the run): prints "started" when it begins, then its result as one JSON line."""
    a = json.loads(spec)
    try:
        out = asyncio.run(_loadgen(a["port"], a["warmup"], a["count"], a["concurrency"],
                                   a["first_msg_id"], a["n_users"],
                                   lambda: print("started", flush=True), a["replies_port"],
                                   a["drain_timeout"]))
    except BaseException as e:  # report, don't hang the parent
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)


async def _drain(session, replies_port: int, want: int, timeout: float) -> int:
    """Wait until the local platform has received `want` replies (or timeout); how many came."""
    url = f"http://127.0.0.1:{replies_port}{REPLIES_PATH}/count"
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(url) as r:
            n = int(await r.text())
        if n >= want or time.monotonic() >= deadline:
            return n
        await asyncio.sleep(0.01)


async def _loadgen(port, warmup, count, concurrency, first_msg_id, n_users, started,
                   replies_port=None, drain_timeout=120.0) -> dict:
    import aiohttp
    from yarl import URL

    reqs = [(URL.build(scheme="http", host="127.0.0.1", port=port, path=reference.PATH,
                       query_string=f"msg_signature={sig}&timestamp={ts}&nonce={nonce}",
                       encoded=True), body)
            for sig, ts, nonce, body in reference.build_requests(
                warmup + count, reference.users(n_users), first_msg_id, TEXT)]
    headers = {"Content-Type": "text/xml"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    clock = time.monotonic  # CLOCK_MONOTONIC: the same clock in every process of the machine
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def phase(batch):
            starts = [0.0] * len(batch)
            lat = [0.0] * len(batch)
            bad = []
            it = iter(enumerate(batch))

            async def worker():
                for i, (url, body) in it:
                    starts[i] = t0 = clock()
                    try:
                        async with session.post(url, data=body, headers=headers) as r:
                            text, status = await r.read(), r.status
                    except Exception as e:
                        text, status = b"", f"{type(e).__name__}: {e}"
                    lat[i] = clock() - t0
                    if status != 200 or text != b"success":
                        bad.append((i, status, text[:120].decode("utf-8", "replace")))

            t0 = clock()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return t0, clock(), starts, lat, bad

        started()  # the parent starts counting the server's CPU time here
        cpu0 = time.process_time()
        _, _, _, _, bad_warm = await phase(reqs[:warmup])
        if replies_port:
            # the timed phase starts with no warm-up reply still queued
            await _drain(session, replies_port, warmup, drain_timeout)
        t0, answered, starts, lat, bad = await phase(reqs[warmup:])
        replies = []
        if replies_port:
            # the clock stops only when every reply has been handed to the platform
            await _drain(session, replies_port, warmup + count, drain_timeout)
            async with session.get(f"http://127.0.0.1:{replies_port}{REPLIES_PATH}") as r:
                replies = await r.json()
        cpu = time.process_time() - cpu0
    return {"t0": t0, "answered": answered, "starts": starts, "latencies": lat,
            "bad": bad_warm + bad, "replies": replies, "loadgen_cpu_s": cpu}


def full_costs(starts: list[float], warmup: int, n_users: int,
               replies: list[tuple[float, str]]) -> tuple[list[float], int]:
    """Per timed message, request sent → its reply received by the platform (seconds), and how
    many timed messages got no reply. Request i comes from user i % n_users (warm-up first);
    replies carry no message id, so the k-th reply a user gets belongs to that user's k-th
    request (a user's requests are n_users apart, far longer than any reordering)."""
    by_user: dict[str, list[float]] = {}
    for t, user in sorted(map(tuple, replies)):
        by_user.setdefault(user, []).append(t)
    users = reference.users(n_users)
    seen: dict[str, int] = {}
    costs, missing = [], 0
    for i in range(warmup + len(starts)):
        u = users[i % n_users]
        k = seen[u] = seen.get(u, -1) + 1
        if i < warmup:
            continue
        got = by_user.get(u, [])
        if k < len(got):
            costs.append(got[k] - starts[i - warmup])
        else:
            missing += 1
    return costs, missing


def _cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU of a process and its live descendants (gunicorn's workers, Linli's
    fronts), or of the process alone."""
    if not descendants:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            pass
    return total


def _machine_busy_seconds() -> float:
    """CPU seconds spent by everything on the machine so far (all cores, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, busy_cores: float = 0.25) -> float:
    """On a shared machine, wait (up to max_wait s) for a second in which other processes use
    less than `busy_cores`; returns the load of the last second measured."""
    if max_wait <= 0:
        return 0.0
    deadline = time.monotonic() + max_wait
    while True:
        b0 = _machine_busy_seconds()
        time.sleep(1.0)
        load = _machine_busy_seconds() - b0
        if load < busy_cores or time.monotonic() >= deadline:
            return load


def run_load(target: str, port: int, *, warmup: int, count: int, concurrency: int,
             first_msg_id: int, n_users: int, server_pid: int | None = None,
             aux_pid: int | None = None, replies_port: int | None = None,
             drain_timeout: float = 120.0, kind: str = "reference",
             split_cpu: bool = True) -> Result:
    spec = json.dumps({"port": port, "warmup": warmup, "count": count,
                       "concurrency": concurrency, "first_msg_id": first_msg_id,
                       "n_users": n_users, "replies_port": replies_port,
                       "drain_timeout": drain_timeout})
    p = subprocess.Popen([sys.executable, "-c", "import sys, bench.callbacks as b; "
                          "b._loadgen_main(sys.argv[1])", spec],
                         cwd=ROOT, env=_child_env(), stdout=subprocess.PIPE)
    limit = 300 + 2 * drain_timeout

    def line() -> str:
        if not select.select([p.stdout], [], [], limit)[0]:
            raise RuntimeError(f"load generator gave no result in {limit:.0f} s")
        text = p.stdout.readline().decode()
        if not text:
            raise RuntimeError(f"load generator exited (status {p.wait()}) without a result")
        return text

    try:
        out = line()
        if out.strip() == "started":
            cpu0, wall0 = (_cpu_seconds(server_pid) if server_pid else 0.0), time.perf_counter()
            own0 = _cpu_seconds(server_pid, descendants=False) if server_pid else 0.0
            busy0 = _machine_busy_seconds()
            aux0 = _cpu_seconds(aux_pid) if aux_pid else 0.0
            out = line()
            cpu, wall = ((_cpu_seconds(server_pid) if server_pid else 0.0) - cpu0,
                         time.perf_counter() - wall0)
            own = (_cpu_seconds(server_pid, descendants=False) if server_pid else 0.0) - own0
            busy = _machine_busy_seconds() - busy0
            aux = (_cpu_seconds(aux_pid) - aux0) if aux_pid else 0.0
        out = json.loads(out)
    finally:
        stop(p)
        p.stdout.close()
    if "error" in out:
        raise RuntimeError(f"load generator failed: {out['error']}")
    end = out["answered"]
    r = Result(target, count, 0.0, out["latencies"], out["bad"], kind=kind)
    if replies_port:
        r.full, r.replies_missing = full_costs(out["starts"], warmup, n_users, out["replies"])
        if out["replies"]:
            end = max(end, max(t for t, _ in out["replies"]))
        r.notes.append(f"{target}: {len(out['replies'])}/{warmup + count} replies handed to the "
                       f"platform; the last one {1000 * (end - out['answered']):.0f} ms after "
                       "the last answer" + (f"; {r.replies_missing} timed messages got NO reply"
                                            if r.replies_missing else ""))
    r.elapsed = end - out["t0"]
    r.cpu_ms = 1000 * cpu / (warmup + count) if server_pid else None
    r.notes.append(f"{target}: server processes busy {100 * cpu / wall:.0f}% of one core "
                   "during the load" if server_pid else "")
    if server_pid and kind == "linli" and split_cpu:
        # the worker is `linli serve` itself, the fronts its children
        n = warmup + count
        r.notes.append(f"{target}: CPU per message: fronts (verify, decrypt, record, answer) "
                       f"{1000 * (cpu - own) / n:.2f} ms, worker (handle, reply, send) "
                       f"{1000 * own / n:.2f} ms")
    foreign = max(0.0, busy - cpu - aux - out["loadgen_cpu_s"])
    r.foreign = foreign / wall
    platform_note = f"local platform (replies) {100 * aux / wall:.0f}%; " if aux_pid else ""
    r.notes.append(f"{target}: load generator used {100 * out['loadgen_cpu_s'] / wall:.0f}% "
                   f"of one core; {platform_note}other processes on the machine "
                   f"{100 * r.foreign:.0f}% of one core")
    return r


# -- the store every target starts from ---------------------------------------------------------

def build_template(path: Path, history: int, users: list[str]) -> float:
    """Linli's store file (full schema, migrations) with one active resident per sending user
    and `history` rows of handled inbound history. Every target, the references included, works
    on a copy of it, so each inserts into the same table holding the same rows. Returns the
    seconds it took."""
    t0 = time.perf_counter()
    _seed_register(path, users)
    conn = sqlite3.connect(str(path))
    try:
        if history:
            reference.prefill_history(conn, history, n_users=len(users))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one self-contained file to copy
    finally:
        conn.close()
    return time.perf_counter() - t0


def _copy_db(template: Path, dest: Path) -> Path:
    shutil.copyfile(template, dest)
    return dest


def _history_rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM inbound").fetchone()[0]
    finally:
        conn.close()


# -- targets --------------------------------------------------------------------------------

def bench_ceiling(tmp: Path, template: Path, count: int, warmup: int) -> Result:
    db = _copy_db(template, tmp / "ceiling.db")
    before = _history_rows(db)
    wall0, cpu0, busy0 = time.perf_counter(), time.process_time(), _machine_busy_seconds()
    lat = reference.run_ceiling(db, count, warmup=warmup)
    wall = time.perf_counter() - wall0
    cpu, busy = time.process_time() - cpu0, _machine_busy_seconds() - busy0
    # elapsed = the timed loop only (the sum of per-message times; the loop adds nothing else)
    r = Result("ceiling: same work, plain loop, no HTTP (1 core)", count, sum(lat), lat,
               kind="ceiling")
    r.rows, r.rows_expected = reference.count_rows(db), before + warmup + count
    r.cpu_ms = 1000 * sum(lat) / count  # wall time per message (CPU, plus any fsync wait)
    r.foreign = max(0.0, busy - cpu) / wall
    r.notes.append(f"ceiling: other processes on the machine {100 * r.foreign:.0f}% of one core")
    return r


def _child_env(**extra) -> dict:
    # no LINLI_* overrides from the caller's shell may change what is measured
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def have_gunicorn() -> bool:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


def have_flask() -> bool:
    try:
        import flask  # noqa: F401
    except ImportError:
        return False
    return True


# the references: name -> (label, gunicorn options, WSGI/aiohttp app, first MsgId)
REFERENCES = ("sync", "gthread", "aiohttp")


def _reference_spec(name: str, workers: int, threads: int) -> tuple[str, list[str], str, int]:
    if name == "sync":
        return (f"Flask, gunicorn {workers} sync workers (connection closed per answer)",
                ["-k", "sync"], "bench.flask_app:app", 10_000_000)
    if name == "gthread":
        return (f"Flask, gunicorn {workers} gthread workers × {threads} threads (keep-alive)",
                ["-k", "gthread", "--threads", str(threads)], "bench.flask_app:app", 30_000_000)
    if name == "aiohttp":
        return (f"aiohttp, gunicorn {workers} aiohttp workers (uvloop, keep-alive)",
                ["-k", "aiohttp.GunicornUVLoopWebWorker"], "bench.reference:aiohttp_app",
                40_000_000)
    raise ValueError(f"unknown reference {name!r}")


def bench_reference(name: str, tmp: Path, template: Path, count: int, warmup: int,
                    concurrency: int, workers: int, threads: int) -> Result:
    """One reference served by gunicorn (each worker: its own SQLite connection(s) to one file,
    a commit per message before the answer)."""
    if not have_gunicorn() or (name != "aiohttp" and not have_flask()):
        raise SystemExit(f"reference {name!r} needs flask and gunicorn: pip install -e '.[bench]'")
    label, opts, app, first_id = _reference_spec(name, workers, threads)
    db = _copy_db(template, tmp / f"{name}.db")
    before = _history_rows(db)
    port = free_port()
    log = open(tmp / f"gunicorn-{name}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), *opts,
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", app],
        cwd=ROOT, env=_child_env(BENCH_DB=str(db)), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        r = run_load(f"reference: {label}", port, warmup=warmup, count=count,
                     concurrency=concurrency, first_msg_id=first_id,
                     n_users=linli_users(warmup + count),  # the same requests as Linli's
                     server_pid=proc.pid)
    finally:
        stop(proc)
        log.close()
    r.rows, r.rows_expected = reference.count_rows(db), before + warmup + count
    # a reference does all its work before it answers: nothing is left for later
    r.full = r.latencies
    return r


def _linli_config(tmp: Path, port: int, api_base: str, sends: str,
                  send_per_min: int | None = None) -> Path:
    # None: Linli's own default, WeCom's documented 10,000 calls/min for message/send
    limit = f"message_send_per_min = {send_per_min}\n" if send_per_min else ""
    send = ("max_attempts = 5\n" if sends == "world" else
            # an unreachable platform: one retry, then the row is 'dead'; short backoff so the
            # retry, too, falls inside the measured window
            "max_attempts = 2\nbackoff_base_s = 0.2\nbackoff_max_s = 1.0\ntimeout_s = 2.0\n")
    cfg = tmp / "linli.toml"
    cfg.write_text(f"""\
timezone = "Asia/Shanghai"
[store]
path = "{tmp / 'linli.db'}"
[server]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"
timestamp_window_s = 300
max_body_bytes = 65536
link_secret = "bench-link-secret"
[wecom]
corp_id = "{reference.CORP_ID}"
agent_id = {reference.AGENT_ID}
secret = "local-world-wecom-secret"
token = "{reference.TOKEN}"
encoding_aes_key = "{reference.AES_KEY}"
api_base = "{api_base}"
{limit}[send]
{send}""", encoding="utf-8")
    return cfg


def _seed_register(db: Path, users: list[str]) -> None:
    """The Linli schema (migrations) plus one active resident per sending user."""
    from bot.data.store import Store

    store = Store(db)
    with store.transaction():
        store.conn.executemany(
            "INSERT INTO residents (key, name, roles, wecom_userid, active, updated_at) "
            "VALUES (?,?,?,?,1,?)",
            [(f"bench-{u}", f"住户{u[-4:]}", "resident", u, time.time()) for u in users])
    store.close()


REPLIES_PATH = "/__bench/replies"


def _platform_main(port: int, users: list[str]) -> None:
    """The local world's platform APIs (gettoken, message/send, ...) in their own process, so
    Linli's replies get real HTTP answers, as from qyapi.weixin.qq.com. It also notes when each
    reply arrived (CLOCK_MONOTONIC, for the full per-message cost) and to whom: GET
    REPLIES_PATH/count and REPLIES_PATH, read by the load generator."""
    import json
    import logging

    from aiohttp import web

    from bot.core.config import load
    from bot.world.platform import WorldState, make_platform_app

    logging.basicConfig(level=logging.WARNING)
    settings = load(ROOT / "config.toml", env={})
    state = WorldState(settings)
    state.corp_id, state.agent_id = reference.CORP_ID, reference.AGENT_ID
    for u in users:
        state.register_user(u)
    received: list[tuple[float, str]] = []

    @web.middleware
    async def handed_over(request: web.Request, handler):
        if request.path != "/cgi-bin/message/send":
            return await handler(request)
        t = time.monotonic()  # the platform has the request: the reply is handed over
        resp = await handler(request)
        try:
            accepted = json.loads(resp.body).get("errcode") == 0
            touser = str(json.loads(await request.read()).get("touser", ""))
        except (ValueError, TypeError, AttributeError):
            accepted, touser = False, ""
        if accepted:
            received.extend((t, u) for u in touser.split("|") if u)
        return resp

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(len(received)))

    async def log(request: web.Request) -> web.Response:
        return web.json_response(received)

    app = make_platform_app(state)
    app.middlewares.append(handed_over)
    app.router.add_get(f"{REPLIES_PATH}/count", count)
    app.router.add_get(REPLIES_PATH, log)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                handle_signals=True)


def _state_counts(db: Path, table: str) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return dict(conn.execute(f"SELECT state, count(*) FROM {table} GROUP BY state").fetchall())
    finally:
        conn.close()


def linli_users(total: int) -> int:
    """Sending users for `total` messages: at most 5 each. WeCom drops more than 30 messages a
    minute to one member, so Linli's outbox holds replies to a member back past a burst of 7 and
    23 a minute after (senders.limit_bucket); with 11 messages per user (5,500 to 500 users) that
    per-member pacing, not Linli's work, set the pace: every run ended at ≈ 480 req/s."""
    return max(500, -(-total // 5))


# The platform takes 10,000 message/send calls a minute per enterprise (Linli's outbox spends them
# as a 2,500 burst and 125/s after: bot.transports.outbound.senders.limit_bucket), so past the
# burst any implementation that replies through the API hands replies over at 125/s whatever
# its CPU. "linli-nolimit" lifts the limit (the local world does not enforce it) to show what
# Linli's own pipeline costs.
NO_LIMIT_PER_MIN = 10_000_000
LINLI_TARGETS = {"linli": None, "linli-nolimit": NO_LIMIT_PER_MIN}


def bench_linli(tmp: Path, template: Path, count: int, warmup: int, concurrency: int,
                sends: str, profile: str | None, drain_timeout: float = 120.0,
                send_per_min: int | None = None) -> Result:
    n_users = linli_users(warmup + count)
    db = tmp / "linli.db"
    _copy_db(template, db)
    before = _history_rows(db)
    port = free_port()
    platform_proc = None
    if sends == "world":
        pport = free_port()
        platform_proc = subprocess.Popen(
            [sys.executable, "-c",
             f"import bench.callbacks as b; b._platform_main({pport}, b.reference.users({n_users}))"],
            cwd=ROOT, env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(pport, platform_proc)
        api_base = f"http://127.0.0.1:{pport}"
    else:
        api_base = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    cfg = _linli_config(tmp, port, api_base, sends, send_per_min)
    cmd = [sys.executable, "-m", "bot", "serve", "--config", str(cfg)]
    if profile:
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        # --nonblocking: sample without pausing the process (the default pause distorts timing);
        # --subprocesses: the front processes too
        cmd = [spy, "record", "--nonblocking", "--subprocesses", "--rate", "250", "--format", "raw",
               "--output", profile, "--"] + cmd
    log = open(tmp / "linli.log", "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        label = ("linli serve, WeCom's send limit lifted (Linli's own cost)" if send_per_min else
                 "linli serve (front + worker; replies within WeCom's 10,000/min)")
        r = run_load(label, port, warmup=warmup,
                     count=count, concurrency=concurrency, first_msg_id=20_000_000,
                     n_users=n_users, server_pid=proc.pid,
                     aux_pid=platform_proc.pid if platform_proc else None,
                     replies_port=pport if platform_proc else None,
                     drain_timeout=drain_timeout, kind="linli",
                     # under py-spy the server pid is py-spy's: no worker/front split then
                     split_cpu=not profile)
        at_end = _state_counts(db, "inbound")
        sent = _state_counts(db, "sends")
    finally:
        if profile:  # py-spy writes its output when the child exits; SIGINT ends both
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            stop(proc)
        log.close()
        if platform_proc is not None:
            stop(platform_proc)
    r.rows, r.rows_expected = reference.count_rows(db), before + warmup + count
    total = warmup + count
    r.notes.append(f"linli: {at_end.get('done', 0) - before}/{total} new inbound rows handled "
                   f"when the clock stopped (failed: {at_end.get('failed', 0)}); outbox: "
                   + ", ".join(f"{k}={v}" for k, v in sorted(sent.items())))
    return r


# -- report ---------------------------------------------------------------------------------

def strongest(results: dict[str, Result]) -> Result | None:
    refs = [r for r in results.values() if r.kind == "reference" and r.ok]
    return max(refs, key=lambda r: r.rps) if refs else None


def table(results: dict[str, Result], meta: str, targets_met: list[str]) -> str:
    top = strongest(results)
    cores = os.cpu_count() or 1
    top_cap = max((r for r in results.values() if r.kind == "reference" and r.ok and r.cpu_ms),
                  key=lambda r: cores / r.cpu_ms, default=None)
    lines = [("| target | req/s | p50 ms | p99 ms | × strongest reference | full p50 ms "
              "| full p99 ms | server CPU ms/req | CPU-bound capacity req/s (× strongest) "
              "| checks |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results.values():
        vs = f"{r.rps / top.rps:.2f}×" if top and r.kind != "ceiling" else "–"
        if r.kind == "ceiling":
            checks = "–"
        else:
            checks = "all 200 \"success\"" if not r.bad else f"{len(r.bad)} bad answers"
        if r.rows_expected is not None:
            checks += f"; rows {r.rows:,}/{r.rows_expected:,}"
        if r.replies_missing:
            checks += f"; {r.replies_missing} replies missing"
        cpu = f"{r.cpu_ms:.2f}" if r.cpu_ms is not None else "–"
        full50 = f"{r.pct(50, r.full):.2f}" if r.full else "–"
        full99 = f"{r.pct(99, r.full):.2f}" if r.full else "–"
        if r.cpu_ms and r.kind != "ceiling":
            cap = f"{1000 * cores / r.cpu_ms:,.0f}"
            if top_cap:
                cap += f" ({top_cap.cpu_ms / r.cpu_ms:.2f}×)"
        else:
            cap = "–"
        lines.append(f"| {r.target} | {r.rps:,.0f} | {r.pct(50):.2f} | {r.pct(99):.2f} | {vs} "
                     f"| {full50} | {full99} | {cpu} | {cap} | {checks} |")
    notes = [n for r in results.values() for n in r.notes if n]
    notes.append(f"CPU-bound capacity = {cores} cores × 1000 / server CPU ms per request: the "
                 "rate the server's own CPU cost allows with the machine to itself, robust to "
                 "other processes' load (which the req/s column is not)")
    return "\n".join(["## Inbound callbacks (AES-encrypted WeCom text, loopback)", "", meta, ""]
                     + lines + [""] + [f"- {n}" for n in notes + targets_met]) + "\n"


def verdict(results: dict[str, Result]) -> list[str]:
    top, ceil = strongest(results), results.get("ceiling")
    out = []
    for key in LINLI_TARGETS:
        li = results.get(key)
        if li is None:
            continue
        out.append(f"{key}: ≥ 2× the strongest reference ({top.target if top else 'none run'}): "
                   + (f"{li.rps / top.rps:.2f}× — {'met' if li.rps >= 2 * top.rps else 'NOT met'}"
                      if top else "–")
                   + (f"; {100 * li.rps / ceil.rps:.0f}% of the ceiling's rate" if ceil else "")
                   + f"; p99 < 50 ms: {li.pct(99):.1f} ms — "
                   + ("met" if li.pct(99) < 50 else "NOT met")
                   + "; correctness (all 200 \"success\", exactly N new rows, every reply handed "
                   "over): " + ("met" if li.ok else "NOT met"))
    return out


def run(args) -> int:
    if args.nice:
        # every target inherits it (servers, load generator, platform): equal for all of them,
        # it only keeps other processes on a shared machine from taking the CPU mid-run
        os.nice(args.nice)
    wanted = args.only or ["ceiling", *REFERENCES, *LINLI_TARGETS]
    if not have_gunicorn():
        skipped = [w for w in wanted if w in REFERENCES]
        if skipped and args.only:
            raise SystemExit("the gunicorn references need flask and gunicorn: "
                             "pip install -e '.[bench]'")
        if skipped:
            print("gunicorn is not installed: skipping " + ", ".join(skipped)
                  + " (pip install -e '.[bench]')", flush=True)
        wanted = [w for w in wanted if w not in REFERENCES]
    meta = (f"Machine: {machine()}. Every target starts from the same store file holding "
            f"{args.history:,} rows of inbound history. Load: {args.count} requests per HTTP "
            f"target after {args.warmup} warm-up, concurrency {args.concurrency}, from a second "
            f"process (aiohttp client, same machine); best of {args.rounds} round(s) by req/s, "
            "targets interleaved"
            + (f", all at niceness {args.nice}" if args.nice else "") + ". Linli's replies go to "
            + ("the local world's platform APIs (own process); its clock stops when the last "
               "reply has been handed to them" if args.sends == "world"
               else "an unreachable port (connection refused, 2 attempts)") + ".")
    tmp_root = Path(tempfile.mkdtemp(prefix="linli-bench-"))
    best: dict[str, Result] = {}
    try:
        template = tmp_root / "template.db"
        took = build_template(template, args.history,
                              reference.users(linli_users(args.warmup + args.count)))
        print(f"store with {args.history:,} rows of history built in {took:.1f} s", flush=True)
        for rnd in range(1, args.rounds + 1):
            tmp = tmp_root / f"round{rnd}"
            tmp.mkdir()
            got: dict[str, Result] = {}
            for name in wanted:
                wait_quiet(args.quiet_wait)
                if name == "ceiling":
                    got[name] = bench_ceiling(tmp, template, args.count, min(args.warmup, 200))
                elif name in REFERENCES:
                    got[name] = bench_reference(name, tmp, template, args.count, args.warmup,
                                                args.concurrency, args.workers, args.threads)
                else:
                    got[name] = bench_linli(tmp, template, args.count, args.warmup,
                                            args.concurrency, args.sends,
                                            args.profile if rnd == 1 and name == wanted[-1]
                                            else None,
                                            args.drain_timeout, LINLI_TARGETS[name])
                for f in tmp.glob("*.db*"):  # a few hundred MB each: keep the disk free
                    f.unlink()
            print(f"round {rnd}/{args.rounds}: " + ", ".join(
                f"{k} {r.rps:,.0f} req/s p99 {r.pct(99):.1f} ms" for k, r in got.items()),
                flush=True)
            for k, r in got.items():
                if k not in best or (r.rps > best[k].rps and r.ok) or not best[k].ok:
                    best[k] = r
    finally:
        if args.keep:
            print(f"kept {tmp_root}")
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)
    order = ["ceiling", *REFERENCES, *LINLI_TARGETS]
    results = {k: best[k] for k in order if k in best}
    warn = [f"WARNING: other processes used {100 * r.foreign:.0f}% of a core during "
            f"'{r.target}': the numbers are disturbed, re-run on a quiet machine"
            for r in results.values() if r.foreign > 0.25]
    md = table(results, meta, verdict(results) + warn)
    print()
    print(md)
    for r in results.values():
        for i, status, body in r.bad[:5]:
            print(f"  {r.target}: request {i}: {status} {body!r}")
    out = Path(args.out) if args.out else OUT / "callbacks.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md, encoding="utf-8")
    print(f"wrote {out}")
    return 0 if all(r.ok for r in results.values()) else 1


def add_args(p) -> None:
    p.add_argument("-n", "--count", type=int, default=5000, help="timed requests per target")
    p.add_argument("--warmup", type=int, default=500, help="untimed requests first")
    p.add_argument("-c", "--concurrency", type=int, default=32)
    p.add_argument("--history", type=int, default=1_000_000,
                   help="rows of handled inbound history every target's table holds first")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="gunicorn workers for the references (default: one per core)")
    p.add_argument("--threads", type=int, default=8,
                   help="threads per gthread worker (gthread reference)")
    p.add_argument("--sends", choices=["world", "refused"], default="world",
                   help="where Linli's replies go: the local world's platform APIs, or a port "
                        "where nothing listens")
    p.add_argument("--only", action="append", choices=["ceiling", *REFERENCES, *LINLI_TARGETS],
                   help="run only these targets (repeatable)")
    p.add_argument("--profile", metavar="FILE",
                   help="record the last Linli target of round 1 (worker and fronts) with "
                        "py-spy (raw folded stacks) into FILE")
    p.add_argument("--rounds", type=int, default=2,
                   help="run the targets this many times, interleaved; report each one's best")
    p.add_argument("--quiet-wait", type=float, default=5.0, metavar="S",
                   help="before each target, wait up to S seconds for the machine to be idle")
    p.add_argument("--drain-timeout", type=float, default=120.0, metavar="S",
                   help="how long to wait for Linli's replies to reach the platform")
    p.add_argument("--nice", type=int, default=0, metavar="N",
                   help="run everything at this niceness (negative needs root): on a shared "
                        "machine, keeps other processes from disturbing the run")
    p.add_argument("--out", metavar="FILE", help="where to write the table (default bench/out/)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (DBs, server logs)")
