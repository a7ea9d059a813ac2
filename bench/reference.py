"""The work every reference does for one callback, written the straightforward way with wechatpy:
verify the signature, decrypt, parse (wechatpy.enterprise.parse_message), insert one row into
Linli's `inbound` table, commit. Shared by the in-process ceiling, the Flask references (sync and
threaded gunicorn workers) and the aiohttp reference (`aiohttp_app`, gunicorn's aiohttp worker),
so they all do exactly the same thing. No Flask import here: the smoke tests import this module.
"""
from __future__ import annotations

import re
import secrets
import sqlite3
import time
from pathlib import Path

from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.data.store import MIGRATIONS, _split_sql

# The demo credentials of config.toml (no secret): every target is configured with these.
TOKEN = "LinliDemoToken"
AES_KEY = "DoGSgGYHvHZ1kpKiLeN/CkVCF2nfZMlKuaRTqkebPek"
CORP_ID = "wwlinlidemo0001"
AGENT_ID = 1000002
PATH = "/wecom/callback"

INSERT = ("INSERT OR IGNORE INTO inbound (dedupe_key, channel, user_id, resident_id, chat_id, "
          "msg_type, content, event, at, received_at, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?)")


def inbound_ddl() -> str:
    """Linli's own CREATE TABLE inbound, taken from bot.data.store so the row shape cannot drift."""
    for stmt in _split_sql(MIGRATIONS[0]):
        if stmt.startswith("CREATE TABLE inbound "):
            return stmt
    raise RuntimeError("bot.data.store has no CREATE TABLE inbound")


def create_db(path: str | Path) -> None:
    """A fresh file with just the inbound table, in WAL mode (persistent in the file)."""
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(inbound_ddl())
    conn.commit()
    conn.close()


def connect(path: str | Path) -> sqlite3.Connection:
    """Same durability as Linli's Store: WAL, synchronous=NORMAL, a busy timeout (two gunicorn
    workers write to one file), one commit per message."""
    conn = sqlite3.connect(str(path), timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def prefill_history(conn: sqlite3.Connection, rows: int, n_users: int = 500,
                    now: float | None = None) -> None:
    """`rows` rows of handled inbound history (state 'done', received over the last days, well
    inside Linli's 30-day retention so nothing is pruned during a run), written with one
    INSERT ... SELECT: a million rows take seconds, not the minutes a callback each would."""
    now = time.time() if now is None else now
    raw = message_xml("bench0000", "收到", 0, int(now))
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO inbound (dedupe_key, channel, user_id, msg_type, content, at, received_at, "
        "raw, state) SELECT 'wecom:msg:h' || i, 'wecom', 'bench' || printf('%04d', i % ?), "
        "'text', '收到', ? - i * 0.25, ? - i * 0.25, ?, 'done' FROM n",
        (rows, max(1, n_users), now, now, raw))
    conn.commit()


def make_crypto() -> WeChatCrypto:
    return WeChatCrypto(TOKEN, AES_KEY, CORP_ID)


def handle(crypto: WeChatCrypto, conn: sqlite3.Connection, signature: str, timestamp: str,
           nonce: str, body: bytes | str) -> None:
    """One callback: verify + decrypt (wechatpy checks the signature inside decrypt_message and
    raises InvalidSignatureException), parse, insert, commit. Returns after the commit."""
    xml = crypto.decrypt_message(body, signature, timestamp, nonce)
    msg = parse_message(xml)
    conn.execute(INSERT, (f"wecom:msg:{msg.id}", "wecom", msg.source, None, None, msg.type,
                          getattr(msg, "content", None), None, float(msg.time), time.time(), xml))
    conn.commit()


async def aiohttp_app():
    """The same handler the usual async way: an aiohttp route calling handle() (the commit runs
    on the event loop: SQLite in WAL mode commits without an fsync at synchronous=NORMAL), one
    connection per process. Served with gunicorn's aiohttp worker, one process per core:
    `gunicorn -k aiohttp.GunicornUVLoopWebWorker bench.reference:aiohttp_app` (BENCH_DB set)."""
    import os

    from aiohttp import web
    from wechatpy.enterprise.exceptions import InvalidCorpIdException
    from wechatpy.exceptions import InvalidSignatureException

    crypto, conn = make_crypto(), connect(os.environ["BENCH_DB"])

    async def callback(request: web.Request) -> web.Response:
        q = request.query
        try:
            handle(crypto, conn, q.get("msg_signature", ""), q.get("timestamp", ""),
                   q.get("nonce", ""), await request.read())
        except (InvalidSignatureException, InvalidCorpIdException):
            raise web.HTTPForbidden() from None
        return web.Response(text="success")

    async def close(_app) -> None:
        conn.close()

    app = web.Application()
    app.router.add_post(PATH, callback)
    app.on_cleanup.append(close)
    return app


# -- building requests as the platform does ------------------------------------------------

_SIG = re.compile(r"<MsgSignature><!\[CDATA\[([0-9a-f]+)\]\]></MsgSignature>")


def message_xml(user: str, text: str, msg_id: int, at: int) -> str:
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{at}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{msg_id}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>")


def build_requests(count: int, users: list[str], first_msg_id: int, text: str = "收到",
                   crypto: WeChatCrypto | None = None) -> list[tuple[str, str, str, bytes]]:
    """`count` signed, AES-encrypted WeCom text callbacks with unique MsgIds, built with
    wechatpy's own crypto: (msg_signature, timestamp, nonce, body)."""
    crypto = crypto or make_crypto()
    out = []
    for i in range(count):
        ts, nonce = str(int(time.time())), secrets.token_hex(5)
        xml = message_xml(users[i % len(users)], text, first_msg_id + i, int(ts))
        body = crypto.encrypt_message(xml, nonce, ts)
        out.append((_SIG.search(body).group(1), ts, nonce, body.encode()))
    return out


def users(n: int) -> list[str]:
    return [f"bench{i:04d}" for i in range(n)]


def run_ceiling(db_path: str | Path, count: int, *, warmup: int = 0,
                first_msg_id: int = 1) -> list[float]:
    """The in-process ceiling: the same work in a plain loop, no HTTP. Requests are built first
    (untimed). Returns the per-message latencies in seconds (warm-up excluded)."""
    crypto = make_crypto()
    reqs = build_requests(warmup + count, users(64), first_msg_id, crypto=crypto)
    conn = connect(db_path)
    try:
        for req in reqs[:warmup]:
            handle(crypto, conn, *req)
        lat = []
        clock = time.perf_counter
        for req in reqs[warmup:]:
            t0 = clock()
            handle(crypto, conn, *req)
            lat.append(clock() - t0)
        return lat
    finally:
        conn.close()


def count_rows(db_path: str | Path) -> int:
    conn = sqlite3.connect(str(db_path))
    try:
        return conn.execute("SELECT count(*) FROM inbound").fetchone()[0]
    finally:
        conn.close()
