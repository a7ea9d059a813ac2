"""The outbox: every intended send is a `sends` row before it is attempted.

Life of a row: pending -> sending -> sent | waiting | failed | dead, or back to pending with a
backoff when the failure is retryable. Nothing is dropped silently: every row ends in a state
the dashboard can show, and dead or failed rows can be put back (`retry`).

Delivery is at-least-once. A row is marked 'sending' before its HTTP call; if the process dies
mid-call, start() puts 'sending' rows back to 'pending' and they go out again. We prefer a rare
duplicate to a lost warning; WeCom message/send carries enable_duplicate_check so the platform
itself drops most such repeats. Idempotency of *intent* is the unique `key`: re-enqueueing after
a restart is a no-op.

Outages. A warning's retries last as long as the warning does: a row with an alert is retried
until the later of the alert's `expires_at` and `created_at + retry_budget_s`, however many
attempts that takes; other rows get `max_attempts`. A circuit breaker per channel stops the
hammering: after `breaker_failures` consecutive transient failures (5xx, timeouts, "busy") the
channel is paused, one row probes it after a cool-down (doubling up to a cap, with jitter), and
the first answer closes it and makes its backlog due at once. Staff hear when a channel goes
down and when it is back, through a channel that is not the broken one.

Hooks. `subscribe(purpose, hook)`; a hook is `def hook(row: dict, result: SendResult) -> None`
and runs INSIDE the transaction that records the outcome: outcome and effect commit together or
not at all. A hook that raises rolls both back; the row is then retried (bounded by
max_attempts, since a bug in a hook is not an outage). Async hooks (`async def`) are still
accepted for now and are awaited after the commit, as before.

Order. Replies (purpose 'reply': the answer to a person's own command) are claimed before
anything else, and one target's replies one at a time in the order they were queued (the order
the commands came): a deferred or retried reply holds back the replies after it rather than
being overtaken. Bulk traffic (fan-outs, reminders) takes what is left of the window.

Time comes from app.clock, so with a FakeClock tests call drain(), advance the clock past the
backoff, and call drain() again; nothing here sleeps on a backoff.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Union

from bot.core import texts
from bot.core.clock import hhmm
from bot.data import people as people_data
from bot.data import sends as sends_data
from bot.transports.outbound.reach import PlatformReach
from bot.transports.outbound.senders import ERR_LOCAL_DEFER, SendResult

log = logging.getLogger("linli.outbox")

SyncHook = Callable[[dict, SendResult], None]
AsyncHook = Callable[[dict, SendResult], Awaitable[None]]
Hook = Union[SyncHook, AsyncHook]
# a permanent refusal that another channel does not have: (channel, errcode) -> channel to try.
# OA customer-service messages only reach people who wrote in the last 48 h (45015); a service
# notice (template message) has no such window.
FALLBACK = {("oa_cs", 45015): "oa_template"}
IDLE_POLL_S = 1.0  # the worker re-checks for due rows at least this often (real seconds)
EXPIRE_SWEEP_S = 30.0  # how often (clock seconds) retries past their deadline are retired
MEMBER_WINDOW_S = 60.0  # the per-member limit counts one minute
# [send] settings config.py does not have yet: read with these defaults until it does
DEFAULTS = {
    "retry_budget_s": 600.0,        # minimum retry time of a warning's row (summary at expiry)
    "breaker_failures": 5,          # consecutive transient failures that pause a channel
    "breaker_cooldown_s": 10.0,     # first wait before a probe
    "breaker_cooldown_max_s": 30.0,  # the wait doubles per failed probe up to this
    "breaker_notice_gap_s": 600.0,  # a flapping channel does not tell staff more often
}
# retryable, but the endpoint answered: not a sign that it is down
NOT_AN_OUTAGE = {ERR_LOCAL_DEFER, 45009}
HEALTH_PURPOSE = "channel_health"


@dataclass
class Breaker:
    """One channel's circuit: closed (sending), open (paused until probe_at), half_open (one
    probe row in flight)."""
    channel: str
    state: str = "closed"
    failures: int = 0
    opened_at: float | None = None
    probe_at: float | None = None
    cooldown_s: float | None = None
    notified_at: float | None = None
    probe_id: int | None = None

    @property
    def paused(self) -> bool:
        return self.state != "closed"


def is_outage(r: SendResult) -> bool:
    """A failure that says the endpoint is not answering (rather than answering 'no')."""
    return (not r.ok and r.retryable and r.errcode is not None
            and r.errcode not in NOT_AN_OUTAGE and not r.detail.get("defer_s"))


class Outbox:
    def __init__(self, app):
        self.app = app
        self.store = app.store
        self.clock = app.clock
        self.cfg = app.settings.send
        self.reach = getattr(app, "reach", None) or PlatformReach()
        self._sync_hooks: dict[str, list[SyncHook]] = {}
        self._async_hooks: dict[str, list[AsyncHook]] = {}
        self._breakers: dict[str, Breaker] = {}
        self._inflight: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._rng = random.Random()
        self._swept_at = float("-inf")

    @property
    def senders(self) -> dict:
        return self.app.senders

    def setting(self, name: str):
        return getattr(self.cfg, name, DEFAULTS[name])

    # -- enqueue (sync: callable from handlers and the CLI alike) ------------------------------
    def enqueue(self, key: str, channel: str, target: str, payload: dict, *,
                alert_id: int | None = None, purpose: str = "") -> int | None:
        """Record one intended send. Returns its id, or None if `key` was already enqueued."""
        sid = sends_data.insert(self.store, key, channel, target,
                                json.dumps(payload, ensure_ascii=False), alert_id, purpose,
                                self.clock.now())
        self.kick()
        return sid

    def enqueue_many(self, rows: Iterable[dict]) -> int:
        """Fan-out: many sends in one transaction. Rows are dicts with key, channel, target,
        payload and optionally alert_id, purpose. Returns how many were new."""
        # A fan-out usually shares one payload dict: serialise each distinct object once.
        # The cache keeps the object alive, so its id() cannot be reused by another payload.
        cache: dict[int, tuple[dict, str]] = {}

        def dumped(p: dict) -> str:
            hit = cache.get(id(p))
            if hit is None:
                hit = cache[id(p)] = (p, json.dumps(p, ensure_ascii=False))
            return hit[1]

        added = sends_data.insert_many(
            self.store, ((r["key"], r["channel"], r["target"], dumped(r["payload"]),
                          r.get("alert_id"), r.get("purpose", "")) for r in rows),
            self.clock.now())
        self.kick()
        return added

    def retry(self, send_ids: Iterable[int] | None = None, *, alert_id: int | None = None) -> int:
        """Put dead or failed rows back to pending: the given ids, or every one of an alert.
        Each is logged (`send.retried`). Rows in any other state are left alone. Returns how
        many were put back."""
        if send_ids is None and alert_id is None:
            raise ValueError("retry() needs send ids or alert_id")
        now = self.clock.now()
        with self.store.transaction():
            moved = sends_data.retry(self.store, now, send_ids=send_ids, alert_id=alert_id)
            for r in moved:
                self.store.log(now, "send.retried", "send", r["id"], previous=r["state"],
                               attempts=r["attempts"], error=r["error"])
        if moved:
            log.info("%d dead/failed sends put back to pending", len(moved))
            self.kick()
        return len(moved)

    # -- hooks ----------------------------------------------------------------------------------
    def subscribe(self, purpose: str, callback: Hook) -> None:
        """Call `callback(row, result)` after each attempt of a send with this purpose ('*' for
        all). Row is the sends row as stored after the attempt.

        A plain function runs inside the transaction that records the outcome; if it raises,
        neither is committed and the row is tried again. An `async def` is awaited after the
        commit (the old contract, kept until every subscriber is synchronous)."""
        if _is_async(callback):
            self._async_hooks.setdefault(purpose, []).append(callback)
        else:
            self._sync_hooks.setdefault(purpose, []).append(callback)

    def _hooks(self, table: dict, purpose: str) -> list:
        return table.get(purpose, []) + table.get("*", [])

    # -- worker ---------------------------------------------------------------------------------
    def kick(self) -> None:
        self._wake.set()

    def restore(self) -> None:
        """Start-up: re-derive what a restart would otherwise forget, from the rows: each WeCom
        member's per-minute budget and the channels that were paused."""
        now = self.clock.now()
        sender = self.senders.get("wecom_user")
        restore = getattr(sender, "restore_member_usage", None)
        if restore is not None:
            by_user: dict[str, list[float]] = {}
            for target, at in sends_data.recent_to_members(self.store, "wecom_user",
                                                           now - MEMBER_WINDOW_S):
                for user in target.split("|"):
                    if user:
                        by_user.setdefault(user, []).append(at)
            n = restore(by_user)
            if n:
                log.info("per-member limits restored for %d WeCom members", n)
        for b in sends_data.breakers(self.store):
            if b["state"] == "open":
                self._breakers[b["channel"]] = Breaker(
                    b["channel"], "open", opened_at=b["opened_at"], probe_at=b["probe_at"],
                    cooldown_s=b["cooldown_s"], notified_at=b["notified_at"])
                log.warning("channel %s was paused at the last stop; probing it from %s",
                            b["channel"], b["probe_at"])

    async def start(self) -> None:
        if self._task is not None:
            return
        self.restore()  # before the requeue: rows left 'sending' count as possibly delivered
        n = sends_data.requeue_inflight(self.store)
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

    def _paused(self) -> set[str]:
        return {c for c, b in self._breakers.items() if b.paused}

    def _idle_timeout(self) -> float:
        now = self.clock.now()
        times = [t for t in [sends_data.next_due(self.store, self._paused())] if t is not None]
        times += [b.probe_at for b in self._breakers.values()
                  if b.state == "open" and b.probe_at is not None]
        if not times:
            return IDLE_POLL_S
        return min(max(min(times) - now, 0.01), IDLE_POLL_S)

    def _fill(self) -> int:
        """Claim due rows up to the free concurrency and start a task for each."""
        free = self.cfg.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        now = self.clock.now()
        # claim in chunks (one UPDATE per half-window) rather than one row per finished send;
        # but a reply to someone's command takes the first free slot: it must not wait for half
        # of a fan-out window to finish (the query reads only the few open replies)
        if self._inflight and free < max(1, self.cfg.concurrency // 2):
            return self._start(sends_data.claim_replies_now(self.store, now, free, self._paused()))
        if now - self._swept_at >= EXPIRE_SWEEP_S:
            self._swept_at = now
            self._expire_retries(now)
        rows = []
        for b in self._breakers.values():  # paused channels: one probe each, when it is time
            if b.state == "open" and (b.probe_at is None or b.probe_at <= now) and len(rows) < free:
                probe = sends_data.claim_probe(self.store, b.channel, now)
                if probe is None:
                    b.probe_at = None  # nothing to probe with: the next row for it will be
                    continue
                b.state, b.probe_id = "half_open", probe["id"]
                log.info("channel %s: probing with send %s", b.channel, probe["id"])
                rows.append(probe)
        rows += sends_data.claim(self.store, now, free - len(rows), self._paused())
        return self._start(rows)

    def _start(self, rows: list[dict]) -> int:
        for row in rows:
            task = asyncio.get_running_loop().create_task(self._send_one(row))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(rows)

    def _expire_retries(self, now: float) -> None:
        try:
            with self.store.transaction():
                gone = sends_data.expire_retries(self.store, now, self.setting("retry_budget_s"),
                                                 "the warning expired before the send got through")
                for r in gone:
                    self.store.log(now, "send.dead", "send", r["id"], channel=r["channel"],
                                   target=r["target"][:200], errcode=r["error_code"],
                                   error="expired", alert_id=r["alert_id"])
        except Exception:
            log.exception("outbox: retiring expired retries failed")
            return
        if gone:
            log.warning("%d retries of expired warnings are dead", len(gone))

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
        if sender is not None:
            try:
                self._observe(row, result)
            except Exception:
                log.exception("outbox: circuit breaker bookkeeping failed for send %s", row["id"])
        try:
            # the outcome and what the hooks make of it commit together, or neither does
            with self.store.transaction():
                recorded = self._record(row, result)
                for cb in self._hooks(self._sync_hooks, row["purpose"]):
                    _call_sync(cb, recorded, result)
        except Exception as e:
            log.exception("send %s: outcome or hook failed; both rolled back, the send will be"
                          " tried again", row["id"])
            try:
                self._record_unrecorded(row, e)
            except Exception:
                log.exception("could not record the failure of send %s; it stays 'sending' until"
                              " the next start", row["id"])
            return
        if recorded["state"] == "pending" and recorded["next_at"] is not None:
            self.kick()  # the idle worker recomputes its wait from the new next_at
        for cb in self._hooks(self._async_hooks, row["purpose"]):
            try:
                await cb(recorded, result)
            except Exception:
                log.exception("outbox hook failed for send %s", row["id"])

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with jitter (half fixed, half random) after `attempts` tries."""
        d = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (attempts - 1))
        return d / 2 + self._rng.random() * d / 2

    def retry_deadline(self, row: dict) -> float | None:
        """Until when a retryable failure of this row is retried: a warning's row until the
        later of the warning's expiry and created_at + retry_budget_s (a summary written at
        expiry still gets its budget); None for other rows, which count attempts instead."""
        if row.get("alert_id") is None:
            return None
        expires = sends_data.alert_expiry(self.store, row["alert_id"])
        budget_end = row["created_at"] + self.setting("retry_budget_s")
        return budget_end if expires is None else max(expires, budget_end)

    def _record(self, row: dict, r: SendResult) -> dict:
        """Write the outcome of one attempt (the caller holds the transaction)."""
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
        elif r.retryable:
            nxt = now + self.backoff(attempts)
            deadline = self.retry_deadline(row)
            alive = attempts < self.cfg.max_attempts if deadline is None else nxt < deadline
            state, next_at, error = ("pending", nxt, r.errmsg) if alive else ("dead", None, r.errmsg)
        else:
            state, error = "failed", r.errmsg
        error_code = None if r.ok else r.errcode
        sends_data.record(self.store, row["id"], state=state, attempts=attempts,
                          error_code=error_code, error=error, next_at=next_at, sent_at=sent_at)
        if state in ("failed", "dead", "waiting"):
            self.store.log(now, f"send.{state}", "send", row["id"], channel=row["channel"],
                           target=row["target"][:200], errcode=r.errcode, error=r.errmsg,
                           **({"msgid": r.detail["msgid"]} if r.detail.get("msgid") else {}))
        recorded = {**row, "state": state, "attempts": attempts, "error_code": error_code,
                    "error": error, "next_at": next_at, "sent_at": sent_at}
        fallback = FALLBACK.get((row["channel"], error_code)) if state == "failed" else None
        if fallback:
            self.enqueue(row["key"] + ":notice", fallback, row["target"], json.loads(row["payload"]),
                         alert_id=row["alert_id"], purpose=row["purpose"])
        return recorded

    def _record_unrecorded(self, row: dict, exc: BaseException) -> None:
        """The outcome could not be committed with its effects: try the row again later, as a
        failed attempt. A hook that keeps failing is a bug, not an outage: max_attempts."""
        now = self.clock.now()
        attempts = row["attempts"] + 1
        alive = attempts < self.cfg.max_attempts
        error = f"outcome not recorded: {type(exc).__name__}: {exc}"[:500]
        with self.store.transaction():
            sends_data.record(self.store, row["id"], state="pending" if alive else "dead",
                              attempts=attempts, error_code=None, error=error,
                              next_at=now + self.backoff(attempts) if alive else None, sent_at=None)
            self.store.log(now, "send.unrecorded" if alive else "send.dead", "send", row["id"],
                           channel=row["channel"], target=row["target"][:200], error=error)
        self.kick()

    # -- circuit breakers -----------------------------------------------------------------------
    def breaker(self, channel: str) -> Breaker:
        b = self._breakers.get(channel)
        if b is None:
            b = self._breakers[channel] = Breaker(channel)
        return b

    def _observe(self, row: dict, r: SendResult) -> None:
        """Feed one attempt's result to its channel's breaker."""
        b = self.breaker(row["channel"])
        probe = b.probe_id == row["id"]
        if probe:
            b.probe_id = None
        if not r.ok and r.detail.get("defer_s"):  # never reached the endpoint
            if probe:
                b.state = "open"  # probe_at is past: the next fill picks another probe
            return
        now = self.clock.now()
        if not r.ok and r.errcode is None:  # our own failure (a sender raised): says nothing
            if probe:
                b.state = "open"
                b.probe_at = now + self._cooldown(b.cooldown_s or self.setting("breaker_cooldown_s"))
            return
        down = is_outage(r)
        if b.state == "closed":
            if not down:
                b.failures = 0
                return
            b.failures += 1
            if b.failures >= self.setting("breaker_failures"):
                self._open(b, now, r)
        elif probe:
            if down:
                self._reopen(b, now, r)
            else:
                self._close(b, now)
        # results of sends started before the channel was paused say nothing new

    def _cooldown(self, base: float) -> float:
        return base * (1 + 0.25 * self._rng.random())

    def _open(self, b: Breaker, now: float, r: SendResult) -> None:
        b.state, b.opened_at, b.failures = "open", now, 0
        b.cooldown_s = float(self.setting("breaker_cooldown_s"))
        b.probe_at = now + self._cooldown(b.cooldown_s)
        announce = b.notified_at is None or now - b.notified_at >= self.setting("breaker_notice_gap_s")
        log.error("channel %s is down (%s %s): paused, probing from %.0f s", b.channel,
                  r.errcode, r.errmsg, b.probe_at - now)
        with self.store.transaction():
            if announce:
                b.notified_at = now
                self._tell_staff(b, "down", now)
            self._save(b, now)
            self.store.log(now, "channel.down", "channel", None, channel=b.channel,
                           errcode=r.errcode, error=r.errmsg, announced=announce)

    def _reopen(self, b: Breaker, now: float, r: SendResult) -> None:
        b.state = "open"
        b.cooldown_s = min(2 * (b.cooldown_s or self.setting("breaker_cooldown_s")),
                           float(self.setting("breaker_cooldown_max_s")))
        b.probe_at = now + self._cooldown(b.cooldown_s)
        log.warning("channel %s still down (%s %s): next probe in %.0f s", b.channel,
                    r.errcode, r.errmsg, b.probe_at - now)
        with self.store.transaction():
            self._save(b, now)

    def _close(self, b: Breaker, now: float) -> None:
        announced = b.notified_at is not None and b.opened_at is not None and b.notified_at >= b.opened_at
        log.warning("channel %s answers again after %.0f s: resuming", b.channel,
                    now - (b.opened_at or now))
        with self.store.transaction():
            resumed = sends_data.resume_channel(self.store, b.channel, now)
            if announced:
                self._tell_staff(b, "restored", now)
            self.store.log(now, "channel.restored", "channel", None, channel=b.channel,
                           down_s=round(now - (b.opened_at or now), 1), resumed=resumed)
            b.state, b.failures, b.probe_at, b.cooldown_s = "closed", 0, None, None
            self._save(b, now)
        self.kick()

    def _save(self, b: Breaker, now: float) -> None:
        sends_data.save_breaker(self.store, b.channel, state="closed" if b.state == "closed" else "open",
                                opened_at=b.opened_at, probe_at=b.probe_at, cooldown_s=b.cooldown_s,
                                notified_at=b.notified_at, now=now)

    def _tell_staff(self, b: Breaker, what: str, now: float) -> int:
        """A message to every staff member through a channel that is not paused."""
        tz = getattr(self.app.settings, "timezone", "Asia/Shanghai")
        pending, for_alerts = sends_data.pending_on(self.store, b.channel)
        paused = self._paused() | {b.channel}
        rows = []
        for p in people_data.with_role(self.store, "staff"):
            route = next(((c, t) for c, t in self.reach.routes(p)
                          if c not in paused and c in self.senders), None)
            if route is None:
                log.warning("staff member %s cannot be told that %s is %s: no other channel",
                            p["id"], b.channel, what)
                continue
            if what == "down":
                text = texts.render("messages/channel_down.j2", name=p["name"], channel=b.channel,
                                    since=hhmm(b.opened_at, tz), pending=pending,
                                    alert_pending=for_alerts > 0)
            else:
                text = texts.render("messages/channel_restored.j2", name=p["name"], channel=b.channel,
                                    at=hhmm(now, tz), pending=pending,
                                    minutes=max(1, round((now - (b.opened_at or now)) / 60)))
            rows.append(dict(key=f"channel:{b.channel}:{int(b.opened_at or now)}:{what}:{p['id']}",
                             channel=route[0], target=route[1], payload={"text": text},
                             purpose=HEALTH_PURPOSE))
        if not rows:
            log.error("nobody on staff can be told that channel %s is %s", b.channel, what)
            self.store.log(now, "channel.unannounced", "channel", None, channel=b.channel, what=what)
            return 0
        return self.enqueue_many(rows)

    # -- read side ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return sends_data.counts(self.store)

    def mark_confirmed(self, send_id: int, ok: bool = True, error: str | None = None) -> None:
        """A 'waiting' send (customer group) was confirmed by its owner, or will never be."""
        sends_data.mark_confirmed(self.store, send_id, ok, error, self.clock.now())


def _is_async(fn) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__ if callable(fn) else None)


def _call_sync(cb: SyncHook, row: dict, result: SendResult) -> None:
    out = cb(row, result)
    if inspect.isawaitable(out):  # an async callable that did not look like one
        if inspect.iscoroutine(out):
            out.close()
        raise TypeError(f"hook {cb!r} returned an awaitable; subscribe an `async def` or a plain"
                        " function")
