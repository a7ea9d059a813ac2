"""The `inbound` table: record each callback exactly once, then process it in the background.

Recording happens before the platform gets its answer, so a crash after "success" still leaves
the message in SQLite; the UNIQUE dedupe_key makes the platform's retries (and retries across a
restart) no-ops.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import time

from bot.core.models import Inbound

log = logging.getLogger("linli.inbound")

# what is kept of an Inbound (besides the raw XML) to rebuild it without parsing
_FIELDS = ("channel", "user_id", "msg_type", "text", "event", "event_key", "chat_id", "msg_id", "at",
           "media_id")

# which `residents` column holds each channel's user id
_ID_COLUMN = {"wecom": "wecom_userid", "oa": "oa_openid"}


def find_resident(store, channel: str, user_id: str) -> dict | None:
    """The active resident registered under this channel's user id, or None."""
    column = _ID_COLUMN.get(channel)
    if column is None:
        return None
    return store.q1(f"SELECT * FROM residents WHERE {column} = ? AND active = 1", (user_id,))


def record(app, msg: Inbound) -> Inbound | None:
    """Insert the message; return it with inbound_id and resident set, or None if it was
    already recorded (a platform retry, before or after a restart)."""
    # a front process only records; the worker looks the sender up when it handles the row
    resident = None if getattr(app, "role", "all") == "front" else find_resident(app.store, msg.channel, msg.user_id)
    conn = getattr(app, "record_conn", None) or app.store.conn  # a front's non-blocking connection
    cur = conn.execute(
        "INSERT OR IGNORE INTO inbound (dedupe_key, channel, user_id, resident_id, chat_id, "
        "msg_type, content, event, at, received_at, raw, fields) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (msg.dedupe_key, msg.channel, msg.user_id, resident["id"] if resident else None,
         msg.chat_id, msg.msg_type, msg.text, msg.event, msg.at, app.clock.now(), msg.raw,
         json.dumps({f: getattr(msg, f) for f in _FIELDS}, ensure_ascii=False)))
    if cur.rowcount == 0:
        return None
    return dataclasses.replace(msg, inbound_id=cur.lastrowid, resident=resident)


async def record_async(app, msg: Inbound, *, give_up_s: float = 4.0) -> Inbound | None:
    """record(), waiting for the write lock without blocking the event loop. SQLite's own busy
    handler sleeps the whole thread (every request of this process would stall behind one
    insert); a front process sets busy_timeout=0 and waits here instead."""
    delay, deadline = 0.0005, time.monotonic() + give_up_s
    while True:
        try:
            return record(app, msg)
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.002)


def mark(app, inbound_id: int, state: str, error: str | None = None) -> None:
    app.store.conn.execute("UPDATE inbound SET state = ?, error = ? WHERE id = ?",
                           (state, error, inbound_id))


def pending(app, limit: int | None = None, after: int = 0) -> list[Inbound]:
    """Messages recorded (and answered "success") whose processing never finished, e.g. because
    the process stopped in between, or recorded by a front process for the worker to handle.
    The platform won't resend them, so we must."""
    from bot.transports.inbound import oa, wecom  # re-parsing the stored XML is the transports' job
    parsers = {"wecom": wecom.parse_raw, "oa": oa.parse_raw}
    out = []
    sql = "SELECT * FROM inbound WHERE state = 'new' AND id > ? ORDER BY id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    for row in app.store.q(sql, (after,)):
        try:
            if row.get("fields"):  # normalised when it was recorded: no second XML parse
                msg = Inbound(**json.loads(row["fields"]), raw=row["raw"])
            else:
                msg = parsers[row["channel"]](row["raw"])
        except Exception as e:
            mark(app, row["id"], "failed", f"cannot re-read stored XML: {e}"[:1000])
            continue
        resident = find_resident(app.store, msg.channel, msg.user_id)
        out.append(dataclasses.replace(msg, inbound_id=row["id"], resident=resident))
    return out


async def resume(app) -> int:
    """Process every pending message in the background (call once at start-up, before serving).
    Replies are keyed by inbound id, so one that was already queued is not queued twice."""
    msgs = pending(app)
    for msg in msgs:
        app.spawn(process(app, msg), name=f"inbound:{msg.inbound_id}")
    return len(msgs)


async def process(app, msg: Inbound) -> None:
    """Dispatch one recorded message and write the outcome onto its row."""
    try:
        await app.dispatcher.dispatch(msg)
    except Exception as e:  # the dispatcher's error middleware has logged it with context
        mark(app, msg.inbound_id, "failed", f"{type(e).__name__}: {e}"[:1000])
    else:
        mark(app, msg.inbound_id, "done")


COMMIT_EVERY = 16


async def consume(app, *, idle_s: float = 0.02, batch: int = 200, burst_pause_s: float = 0.02) -> None:
    """The worker's loop when front processes receive the callbacks: handle recorded messages in
    arrival order (a conversation's "发布" before its "确认"), polling the table when idle."""
    last = 0
    while True:
        msgs = pending(app, limit=batch, after=last)
        for i in range(0, len(msgs), COMMIT_EVERY):
            # one commit per few messages instead of several per message; short, so the fronts'
            # inserts never wait long for the write lock. A crash rolls the group back: those rows
            # are still 'new' and are handled again (reply keys make that idempotent).
            try:
                with app.store.transaction():
                    for msg in msgs[i:i + COMMIT_EVERY]:
                        await process(app, msg)
                        last = msg.inbound_id
            except Exception:  # e.g. the database was locked too long: retry these rows later
                log.exception("handling inbound messages failed; will retry")
                last = 0
                await asyncio.sleep(1.0)
                break
            if len(msgs) >= batch // 2:
                # a burst: give the CPU back to the fronts between groups (they answer the
                # platform within its 5 s); the backlog is worked off when the burst is over
                await asyncio.sleep(burst_pause_s)
        if not msgs:
            last = 0  # a row a front committed late (lower id) is picked up on the next pass
            await asyncio.sleep(idle_s)
