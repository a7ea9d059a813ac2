"""Recording each callback exactly once, then processing it in the background.

Recording happens before the platform gets its answer, so a crash after "success" still leaves
the message in SQLite; the UNIQUE dedupe_key makes the platform's retries (and retries across a
restart) no-ops. The rows and their SQL are bot/data/inbox.py's; this module decides when to
write them (group commit, give-up deadline) and runs the worker's loop over them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import sqlite3
import time
import weakref

from bot.core.models import Inbound
from bot.data import inbox as rows
from bot.data import people

log = logging.getLogger("linli.inbound")

# what is kept of an Inbound (besides the raw XML) to rebuild it without parsing
_FIELDS = ("channel", "user_id", "msg_type", "text", "event", "event_key", "chat_id", "msg_id", "at",
           "media_id")

# Defaults for settings the [server] section may carry (read with getattr so an older config
# module still works): see docs in bench/README.md and the report to the lead.
RECORD_GIVE_UP_S = 3.0          # then answer 503: the platform retries, its deadline is 5 s
INBOUND_RETENTION_DAYS = 30     # handled rows older than this are pruned
MIN_RETENTION_S = 86400         # never below a day: the platform retries within seconds, and the
                                # dedupe key of a pruned row no longer protects against a retry
NONCE_KEEP_WITHOUT_WINDOW_S = 86400  # with the freshness check off, how long nonces are kept
PRUNE_EVERY_S = 300.0           # how often (monotonic) a chunk of history is pruned
PRUNE_CHUNK = 2000              # rows per pruning transaction: a short hold of the write lock

class RecordTimeout(Exception):
    """The message could not be written before the give-up deadline (the write lock was held
    too long). The route answers 503 so the platform retries it."""


class Replay(Exception):
    """A (timestamp, nonce) already used with another body: a captured signature re-used."""


def _setting(app, name: str, default):
    return getattr(app.settings.server, name, default)


def entry_for(app, msg: Inbound, *, resident: dict | None,
              query: dict | None = None, body: bytes | None = None) -> rows.Entry:
    """The row for a verified message. With the request's query and body, its (timestamp,
    nonce) is remembered until the freshness window has passed for it."""
    timestamp = nonce = body_hash = None
    expires_at = 0.0
    if query is not None and body is not None and query.get("nonce") is not None:
        timestamp, nonce = str(query.get("timestamp", "")), str(query.get("nonce"))
        body_hash = hashlib.sha256(body).hexdigest()
        window = app.settings.server.timestamp_window_s
        try:
            # the freshness check accepts this timestamp until ts + window; +1 for rounding
            expires_at = float(int(timestamp) + window + 1) if window else 0.0
        except (ValueError, OverflowError):
            expires_at = 0.0
        if not expires_at:
            expires_at = app.clock.now() + NONCE_KEEP_WITHOUT_WINDOW_S
    return rows.Entry(
        dedupe_key=msg.dedupe_key, channel=msg.channel, user_id=msg.user_id,
        resident_id=resident["id"] if resident else None, chat_id=msg.chat_id,
        msg_type=msg.msg_type, content=msg.text, event=msg.event, at=msg.at, raw=msg.raw,
        fields=json.dumps({f: getattr(msg, f) for f in _FIELDS}, ensure_ascii=False),
        timestamp=timestamp, nonce=nonce, body_hash=body_hash, nonce_expires_at=expires_at)


def _is_busy(e: sqlite3.OperationalError) -> bool:
    text = str(e)
    return "locked" in text or "busy" in text


class Recorder:
    """Group commit for one process: every callback that arrives while a commit is running (or
    while the write lock is held by another process) joins the next transaction. One commit for
    many callbacks is what keeps 1,000 concurrent callbacks from queueing for the lock 1,000
    times (each front used to fight the others and the worker for the lock once per message).

    The connection should have busy_timeout=0 (a front's record_conn): SQLite's busy handler
    would put the whole event loop to sleep; here the wait is an asyncio sleep."""

    def __init__(self, app, *, max_batch: int = 500, monotonic=time.monotonic, sleep=asyncio.sleep):
        self.app = app
        self.max_batch = max_batch
        self.monotonic = monotonic
        self.sleep = sleep
        self._queue: list[tuple[rows.Entry, asyncio.Future, float]] = []
        self._writer: asyncio.Task | None = None
        self.commits = 0  # transactions committed (tests and benchmarks read it)

    def _conn(self) -> sqlite3.Connection:
        return getattr(self.app, "record_conn", None) or self.app.store.conn

    async def record(self, entry: rows.Entry, *, give_up_s: float) -> tuple[str, int | None]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        # a caller that went away never reads its outcome: mark the error retrieved, so asyncio
        # logs no "exception was never retrieved" for it
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append((entry, fut, self.monotonic() + give_up_s))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_all(), name="inbound-recorder")
        # shield: a client that goes away must not cancel the write others wait for
        return await asyncio.shield(fut)

    async def _write_all(self) -> None:
        while self._queue:
            # one turn of the loop: callbacks already read and verified join this batch
            await asyncio.sleep(0)
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            await self._write(batch)

    async def _write(self, batch) -> None:
        delay = 0.0005
        while batch:
            try:
                results = rows.record_batch(self._conn(), [e for e, _, _ in batch], self.app.clock.now())
            except sqlite3.OperationalError as e:
                if not _is_busy(e):
                    return self._fail(batch, e)
                now = self.monotonic()
                late = [b for b in batch if b[2] <= now]
                self._fail(late, RecordTimeout(f"write lock not obtained: {e}"))
                batch = [b for b in batch if b[2] > now]
                # callbacks that arrived meanwhile wait with these: one commit when the lock frees
                room = self.max_batch - len(batch)
                if room > 0 and self._queue:
                    batch, self._queue = batch + self._queue[:room], self._queue[room:]
                if batch:
                    await self.sleep(delay)
                    delay = min(delay * 2, 0.004)
                continue
            except Exception as e:  # a bug or a broken file: every caller gets the error
                return self._fail(batch, e)
            self.commits += 1
            for (_, fut, _), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
            return

    @staticmethod
    def _fail(batch, error: Exception) -> None:
        for _, fut, _ in batch:
            if not fut.done():
                fut.set_exception(error)


_recorders: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def recorder(app) -> Recorder:
    """The process's recorder (one per app)."""
    rec = _recorders.get(app)
    if rec is None:
        rec = _recorders[app] = Recorder(app)
    return rec


async def record_callback(app, msg: Inbound, *, query: dict | None = None, body: bytes | None = None,
                          give_up_s: float | None = None) -> Inbound | None:
    """Record a verified message; return it with inbound_id and resident set, or None if it was
    already recorded (a platform retry, before or after a restart). Raises Replay for a
    (timestamp, nonce) seen before with another body, RecordTimeout when the write could not be
    made in time (answer 503), sqlite3 errors for a broken store."""
    # a front process only records; the worker looks the sender up when it handles the row
    resident = None if getattr(app, "role", "all") == "front" else people.by_account(
        app.store, msg.channel, msg.user_id)
    if give_up_s is None:
        give_up_s = _setting(app, "record_give_up_s", RECORD_GIVE_UP_S)
    outcome, inbound_id = await recorder(app).record(
        entry_for(app, msg, resident=resident, query=query, body=body), give_up_s=give_up_s)
    if outcome == rows.REPLAY:
        raise Replay(f"timestamp {query.get('timestamp')!r} and nonce {query.get('nonce')!r} "
                     "were already used with another body")
    if outcome == rows.DUPLICATE:
        return None
    return dataclasses.replace(msg, inbound_id=inbound_id, resident=resident)


async def record_async(app, msg: Inbound, *, give_up_s: float | None = None) -> Inbound | None:
    """Record a message without request data (no nonce to remember): tools and tests."""
    return await record_callback(app, msg, give_up_s=give_up_s)


def mark(app, inbound_id: int, state: str, error: str | None = None) -> None:
    rows.mark(app.store, inbound_id, state, error)


def pending(app, limit: int | None = None, after: int = 0) -> list[Inbound]:
    """Messages recorded (and answered "success") whose processing never finished, e.g. because
    the process stopped in between, or recorded by a front process for the worker to handle.
    The platform won't resend them, so we must."""
    from bot.transports.inbound import oa, wecom  # re-parsing the stored XML is the transports' job
    parsers = {"wecom": wecom.parse_raw, "oa": oa.parse_raw}
    out = []
    for row in rows.pending_rows(app.store, after=after, limit=limit):
        try:
            if row.get("fields"):  # normalised when it was recorded: no second XML parse
                msg = Inbound(**json.loads(row["fields"]), raw=row["raw"])
            else:
                msg = parsers[row["channel"]](row["raw"])
        except Exception as e:
            mark(app, row["id"], "failed", f"cannot re-read stored XML: {e}"[:1000])
            continue
        resident = people.by_account(app.store, msg.channel, msg.user_id)
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
    if getattr(app, "dispatch_inline", False):
        maybe_prune(app)  # one process does everything: nobody else keeps the history short


# -- history ------------------------------------------------------------------------------

_next_prune: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def retention_s(app) -> float:
    days = _setting(app, "inbound_retention_days", INBOUND_RETENTION_DAYS)
    return max(float(days) * 86400, MIN_RETENTION_S)


def prune_history(app, *, limit: int = PRUNE_CHUNK) -> tuple[int, int]:
    """Delete one chunk of handled rows older than the retention, and expired nonces. Pending
    rows are never pruned; the MsgId dedupe holds for the retention (at least a day), far
    longer than the platform's retries (three, seconds apart)."""
    now = app.clock.now()
    return rows.prune(app.store, handled_before=now - retention_s(app), nonces_before=now, limit=limit)


def maybe_prune(app, *, monotonic=time.monotonic) -> None:
    """Prune a chunk if PRUNE_EVERY_S has passed since the last time (or a full chunk was
    deleted last time: more is waiting). Never raises: history can wait."""
    t = monotonic()
    if t < _next_prune.get(app, 0.0):
        return
    try:
        deleted, _ = prune_history(app)
    except Exception:
        log.warning("pruning inbound history failed; will retry", exc_info=True)
        deleted = 0
    _next_prune[app] = t + (1.0 if deleted >= PRUNE_CHUNK else PRUNE_EVERY_S)


# -- the worker -----------------------------------------------------------------------------

COMMIT_EVERY = 16


async def consume(app, *, idle_s: float = 0.02, max_idle_s: float = 0.25, batch: int = 200,
                  burst_pause_s: float = 0.02, rescan_s: float = 1.0, monotonic=time.monotonic,
                  sleep=asyncio.sleep) -> None:
    """The worker's loop when front processes receive the callbacks: handle recorded messages in
    arrival order (a conversation's "发布" before its "确认").

    Idle must stay idle whatever the history (issue #15): the pending query reads the partial
    index of pending rows only; while idle, the loop checks PRAGMA data_version (it changes only
    when another connection commits) and runs that query only then, or every rescan_s in case;
    and the pause between checks grows from idle_s to max_idle_s while nothing comes (each
    wake-up of the event loop costs ~0.2 ms of CPU on a small VM: 50 a second were 1% of a core
    on their own). The first message after a quiet spell waits at most max_idle_s for the
    worker; the platform's answer does not wait for it (the front gave it already)."""
    last = 0
    seen_version = None
    next_scan = 0.0
    pause = idle_s
    while True:
        if last == 0:
            version = rows.data_version(app.store)
            if version == seen_version and monotonic() < next_scan:
                maybe_prune(app, monotonic=monotonic)
                await sleep(pause)
                pause = min(pause * 2, max_idle_s)
                continue
            # read before the query: a commit that lands after it changes the version again
            seen_version, next_scan = version, monotonic() + rescan_s
        msgs = pending(app, limit=batch, after=last)
        if msgs:
            pause = idle_s
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
                last, seen_version = 0, None
                await asyncio.sleep(1.0)
                break
            if len(msgs) >= batch // 2:
                # a burst: give the CPU back to the fronts between groups (they answer the
                # platform within its 5 s); the backlog is worked off when the burst is over
                await asyncio.sleep(burst_pause_s)
        if not msgs:
            if last:
                # a row a front committed late (lower id than the last handled) is picked up by
                # one more pass from the start: skip the version check once so that pass runs
                last, seen_version = 0, None
            await sleep(pause)
