"""An async token bucket, clock-injectable so tests never sleep for real.

The platforms' limits are per minute (WeCom and Official Account developer documentation), so the rate is given per minute too. The
bucket starts full (`burst` tokens) and refills continuously. `now` and `sleep` are injected: in
production `time.time`/`asyncio.sleep`, in tests a FakeClock and a sleep that advances it.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable


class TokenBucket:
    def __init__(self, rate_per_min: float, burst: float | None = None, *,
                 now: Callable[[], float], sleep: Callable[[float], Awaitable] = asyncio.sleep):
        if rate_per_min <= 0:
            raise ValueError("rate_per_min must be positive")
        self.rate = rate_per_min / 60.0  # tokens per second
        self.capacity = float(burst if burst is not None else rate_per_min)
        self.tokens = self.capacity
        self._now = now
        self._sleep = sleep
        self._updated = now()
        # FIFO fairness: waiters queue on the lock instead of racing for each refill.
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        t = self._now()
        if t > self._updated:
            self.tokens = min(self.capacity, self.tokens + (t - self._updated) * self.rate)
        self._updated = max(self._updated, t)

    def try_acquire(self, n: float = 1) -> bool:
        """Take n tokens if they are there now; never waits."""
        self._refill()
        # the same tolerance as wait_time(): "ready now" there must mean a token taken here, or a
        # bucket left at 0.99999998 would pass every send without counting any
        if self.tokens >= min(n, self.capacity) - 1e-6 and not self._lock.locked():
            self.tokens -= n
            return True
        return False

    def replay(self, times: Iterable[float]) -> float:
        """Set the level as if one token had been taken at each of `times` (a restart rebuilding
        what the previous process spent): full at the first take, refilled between takes, one
        token per take. Takes the bucket could not have afforded leave it in debt, so it waits
        for them too. Only the last minute matters for a per-minute limit, so callers pass
        that; taking the bucket as full at its start is safe because a full bucket plus a
        minute of refill is the most the limit allows in any minute. Returns the level."""
        ts = sorted(t for t in times if t is not None)
        now = self._now()
        if not ts:
            return self.tokens
        level, prev = self.capacity, ts[0]
        for t in ts:
            level = min(self.capacity, level + (t - prev) * self.rate) - 1
            prev = t
        if now > prev:
            level = min(self.capacity, level + (now - prev) * self.rate)
        self.tokens, self._updated = level, max(now, prev)
        return level

    def wait_time(self, n: float = 1) -> float:
        """Seconds until n tokens would be available (0 if now)."""
        self._refill()
        need = min(n, self.capacity) - self.tokens
        # Epoch floats (~1.7e9) cannot represent sub-microsecond steps: a tiny remaining wait
        # would never move the clock, so count it as ready.
        return need / self.rate if need > 1e-6 else 0.0

    async def acquire(self, n: float = 1) -> float:
        """Wait until n tokens are available and take them. Returns the seconds waited.

        A request larger than the bucket (an app chat bigger than a minute's recipient budget)
        waits for a full bucket and then goes into debt, so it neither deadlocks nor lets the
        next caller exceed the average rate.
        """
        waited = 0.0
        async with self._lock:
            while True:
                delay = self.wait_time(n)
                if delay <= 0:
                    self.tokens -= n
                    return waited
                before = self._now()
                await self._sleep(delay)
                # A clock that did not move (a FakeClock with a real sleep) would spin forever;
                # count the requested delay as elapsed instead.
                if self._now() <= before:
                    self.tokens = min(self.capacity, self.tokens + delay * self.rate)
                waited += delay
