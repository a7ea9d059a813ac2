"""The `inbound` table: record each callback exactly once, then process it in the background.

Recording happens before the platform gets its answer, so a crash after "success" still leaves
the message in SQLite; the UNIQUE dedupe_key makes the platform's retries (and retries across a
restart) no-ops.
"""
from __future__ import annotations

import dataclasses
import logging

from bot.models import Inbound

log = logging.getLogger("linli.inbound")

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
    resident = find_resident(app.store, msg.channel, msg.user_id)
    cur = app.store.conn.execute(
        "INSERT OR IGNORE INTO inbound (dedupe_key, channel, user_id, resident_id, chat_id, "
        "msg_type, content, event, at, received_at, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (msg.dedupe_key, msg.channel, msg.user_id, resident["id"] if resident else None,
         msg.chat_id, msg.msg_type, msg.text, msg.event, msg.at, app.clock.now(), msg.raw))
    if cur.rowcount == 0:
        return None
    return dataclasses.replace(msg, inbound_id=cur.lastrowid, resident=resident)


def mark(app, inbound_id: int, state: str, error: str | None = None) -> None:
    app.store.conn.execute("UPDATE inbound SET state = ?, error = ? WHERE id = ?",
                           (state, error, inbound_id))


def pending(app) -> list[Inbound]:
    """Messages recorded (and answered "success") whose processing never finished, e.g. because
    the process stopped in between. The platform won't resend them, so we must."""
    from bot.transports import oa, wecom  # re-parsing the stored XML is the transports' job
    parsers = {"wecom": wecom.parse_raw, "oa": oa.parse_raw}
    out = []
    for row in app.store.q("SELECT * FROM inbound WHERE state = 'new' ORDER BY id"):
        try:
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
