"""The outbox: every intended send is a `sends` row before it is attempted.

Life of a row: pending -> sending -> sent | waiting | failed | dead, or back to pending with a
backoff when the failure is retryable. Nothing is dropped silently: every row ends in a state
the dashboard can show.

Delivery is at-least-once. A row is marked 'sending' before its HTTP call; if the process dies
mid-call, start() puts 'sending' rows back to 'pending' and they go out again. We prefer a rare
duplicate to a lost warning; WeCom message/send carries enable_duplicate_check so the platform
itself drops most such repeats. Idempotency of *intent* is the unique `key`: re-enqueueing after
a restart is a no-op.

Time comes from app.clock, so with a FakeClock tests call drain(), advance the clock past the
backoff, and call drain() again; nothing here sleeps on a backoff.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Awaitable, Callable, Iterable

from bot.transports.outbound.senders import SendResult

log = logging.getLogger("linli.outbox")

Hook = Callable[[dict, SendResult], Awaitable[None]]
# a permanent refusal that another channel does not have: (channel, errcode) -> channel to try.
# OA customer-service messages only reach people who wrote in the last 48 h (45015); a service
# notice (template message) has no such window.
FALLBACK = {("oa_cs", 45015): "oa_template"}
IDLE_POLL_S = 1.0  # the worker re-checks for due rows at least this often (real seconds)


class Outbox:
    def __init__(self, app):
        self.app = app
        self.store = app.store
        self.clock = app.clock
        self.cfg = app.settings.send
        self._hooks: dict[str, list[Hook]] = {}
        self._inflight: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._rng = random.Random()

    @property
    def senders(self) -> dict:
        return self.app.senders

    # -- enqueue (sync: callable from handlers and the CLI alike) ------------------------------
    _INSERT = ("INSERT OR IGNORE INTO sends (key, channel, target, payload, alert_id, purpose,"
               " state, created_at) VALUES (?,?,?,?,?,?,'pending',?)")

    def enqueue(self, key: str, channel: str, target: str, payload: dict, *,
                alert_id: int | None = None, purpose: str = "") -> int | None:
        """Record one intended send. Returns its id, or None if `key` was already enqueued."""
        cur = self.store.conn.execute(self._INSERT, (
            key, channel, target, json.dumps(payload, ensure_ascii=False), alert_id, purpose,
            self.clock.now()))
        self.kick()
        return cur.lastrowid if cur.rowcount == 1 else None

    def enqueue_many(self, rows: Iterable[dict]) -> int:
        """Fan-out: many sends in one transaction. Rows are dicts with key, channel, target,
        payload and optionally alert_id, purpose. Returns how many were new."""
        now = self.clock.now()
        # A fan-out usually shares one payload dict: serialise each distinct object once.
        # The cache keeps the object alive, so its id() cannot be reused by another payload.
        cache: dict[int, tuple[dict, str]] = {}

        def dumped(p: dict) -> str:
            hit = cache.get(id(p))
            if hit is None:
                hit = cache[id(p)] = (p, json.dumps(p, ensure_ascii=False))
            return hit[1]

        params = ((r["key"], r["channel"], r["target"], dumped(r["payload"]),
                   r.get("alert_id"), r.get("purpose", ""), now) for r in rows)
        with self.store.transaction() as conn:
            before = conn.total_changes
            conn.executemany(self._INSERT, params)
            added = conn.total_changes - before
        self.kick()
        return added

    # -- hooks ----------------------------------------------------------------------------------
    def subscribe(self, purpose: str, callback: Hook) -> None:
        """Call `callback(row, result)` after each attempt of a send with this purpose
        ('*' for all). Row is the sends row as stored after the attempt."""
        self._hooks.setdefault(purpose, []).append(callback)

    # -- worker ---------------------------------------------------------------------------------
    def kick(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self._task is not None:
            return
        n = self.store.conn.execute(
            "UPDATE sends SET state = 'pending' WHERE state = 'sending'").rowcount
        if n:
            log.warning("%d sends were in flight at the last stop; they will be sent again", n)
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        self._stopping = True
        self.kick()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._inflight:  # let started sends finish and be recorded
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def drain(self) -> None:
        """Send everything due now, wait for the results, return when nothing is due.
        Rows backing off into the future stay pending: advance the clock and drain again."""
        while True:
            self._fill()
            if not self._inflight:
                return
            await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                self._fill()
            except Exception:
                log.exception("outbox: claiming rows failed")
            if self._inflight:
                self._wake.clear()
                waiters = set(self._inflight) | {asyncio.ensure_future(self._wake.wait())}
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters - set(self._inflight):
                    w.cancel()
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._idle_timeout())
            except asyncio.TimeoutError:
                pass

    def _idle_timeout(self) -> float:
        nxt = self.store.scalar("SELECT min(next_at) FROM sends WHERE state = 'pending'")
        if nxt is None:
            return IDLE_POLL_S
        return min(max(nxt - self.clock.now(), 0.01), IDLE_POLL_S)

    def _fill(self) -> int:
        """Claim due rows up to the free concurrency and start a task for each."""
        free = self.cfg.concurrency - len(self._inflight)
        # claim in chunks (one UPDATE per half-window) rather than one row per finished send
        if free <= 0 or (self._inflight and free < max(1, self.cfg.concurrency // 2)):
            return 0
        rows = self._claim(free)
        for row in rows:
            task = asyncio.get_running_loop().create_task(self._send_one(row))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(rows)

    def _claim(self, limit: int) -> list[dict]:
        """Mark up to `limit` due rows 'sending' and return them: due retries first (so a big
        fan-out does not starve them), then fresh rows in id order. Both queries walk the
        (state, next_at) index and stop at the limit; an ORDER BY id over all pending rows
        would sort the whole backlog on every claim (30 ms at 100k rows)."""
        ids = [r[0] for r in self.store.conn.execute(
            "SELECT id FROM sends WHERE state = 'pending' AND next_at <= ?"
            " ORDER BY next_at LIMIT ?", (self.clock.now(), limit))]
        if len(ids) < limit:
            ids += [r[0] for r in self.store.conn.execute(
                "SELECT id FROM sends WHERE state = 'pending' AND next_at IS NULL LIMIT ?",
                (limit - len(ids),))]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        # `+state`: keep the planner on the rowid lookup, not a scan of every pending row
        rows = self.store.q(f"UPDATE sends SET state = 'sending' WHERE id IN ({marks})"
                            " AND +state = 'pending' RETURNING *", ids)
        return sorted(rows, key=lambda r: ids.index(r["id"]))

    async def _send_one(self, row: dict) -> None:
        sender = self.senders.get(row["channel"])
        if sender is None:
            result = SendResult(False, None, f"unknown channel {row['channel']!r}")
        else:
            try:
                result = await sender.send(row["target"], json.loads(row["payload"]))
            except Exception as e:  # a bug in a sender must not lose the row: retry, then dead
                log.exception("sender %s raised for send %s", row["channel"], row["id"])
                result = SendResult(False, None, f"{type(e).__name__}: {e}", retryable=True)
        try:
            row = self._record(row, result)
        except Exception:
            log.exception("could not record the outcome of send %s", row["id"])
            return
        fallback = FALLBACK.get((row["channel"], row["error_code"])) if row["state"] == "failed" else None
        if fallback:
            self.enqueue(row["key"] + ":notice", fallback, row["target"], json.loads(row["payload"]),
                         alert_id=row["alert_id"], purpose=row["purpose"])
        for cb in self._hooks.get(row["purpose"], []) + self._hooks.get("*", []):
            try:
                await cb(row, result)
            except Exception:
                log.exception("outbox hook failed for send %s", row["id"])

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with jitter (half fixed, half random) after `attempts` tries."""
        d = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (attempts - 1))
        return d / 2 + self._rng.random() * d / 2

    def _record(self, row: dict, r: SendResult) -> dict:
        now = self.clock.now()
        attempts = row["attempts"] + 1
        next_at, sent_at, error = None, None, None
        if not r.ok and r.detail.get("defer_s"):
            # our own limiter said "not yet": reschedule without spending an attempt
            attempts, state, next_at, error = row["attempts"], "pending", now + r.detail["defer_s"], r.errmsg
        elif r.ok:
            state = "waiting" if r.waiting else "sent"
            sent_at = now
            # keep what the relay may need (msgid to confirm, invalid users) visible on the row
            if r.detail.get("waiting") or r.detail.get("invaliduser"):
                error = json.dumps(r.detail, ensure_ascii=False)
        elif r.retryable and attempts < self.cfg.max_attempts:
            state, next_at, error = "pending", now + self.backoff(attempts), r.errmsg
        else:
            state, error = ("dead" if r.retryable else "failed"), r.errmsg
        self.store.conn.execute(
            "UPDATE sends SET state=?, attempts=?, error_code=?, error=?, next_at=?, sent_at=?"
            " WHERE id=?",
            (state, attempts, None if r.ok else r.errcode, error, next_at, sent_at, row["id"]))
        if state in ("failed", "dead", "waiting"):
            self.store.log(now, f"send.{state}", "send", row["id"], channel=row["channel"],
                           target=row["target"][:200], errcode=r.errcode, error=r.errmsg,
                           **({"msgid": r.detail["msgid"]} if r.detail.get("msgid") else {}))
        if state == "pending" and next_at is not None:
            self.kick()  # the idle worker recomputes its wait from the new next_at
        return {**row, "state": state, "attempts": attempts, "error_code": None if r.ok else
                r.errcode, "error": error, "next_at": next_at, "sent_at": sent_at}

    # -- read side ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in
                self.store.q("SELECT state, count(*) AS n FROM sends GROUP BY state")}

    def mark_confirmed(self, send_id: int, ok: bool = True, error: str | None = None) -> None:
        """A 'waiting' send (customer group) was confirmed by its owner, or will never be."""
        self.store.conn.execute(
            "UPDATE sends SET state=?, sent_at=?, error=coalesce(?, error) WHERE id=?"
            " AND state='waiting'", ("sent" if ok else "failed", self.clock.now(), error, send_id))
