"""Time source. Everything asks a Clock for 'now' so tests can inject time instead of sleeping."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo


class Clock:
    """Wall clock: epoch seconds (UTC)."""

    def now(self) -> float:
        return time.time()


class FakeClock(Clock):
    """A clock tests move by hand. Timers are not armed on the wall clock (tests call the due
    work themselves); a rate limiter's sleep moves fake time instead of waiting."""

    manual = True

    def __init__(self, start: float = 1_717_200_000.0):  # 2024-06-01 08:00 Asia/Shanghai
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t

    async def sleep(self, seconds: float) -> None:
        import asyncio

        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


def local(ts: float | None, tz: str = "Asia/Shanghai") -> datetime | None:
    """Epoch seconds to an aware datetime in the community's timezone."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).astimezone(ZoneInfo(tz))


def hhmm(ts: float | None, tz: str = "Asia/Shanghai") -> str:
    d = local(ts, tz)
    return d.strftime("%H:%M") if d else "—"


class ScaledClock(Clock):
    """Simulated time running `speed` times faster than the wall clock (the demo's --speed)."""

    def __init__(self, speed: float, start: float | None = None):
        self.speed = speed
        self.real0 = time.time()
        self.sim0 = self.real0 if start is None else start

    def now(self) -> float:
        return self.sim0 + (time.time() - self.real0) * self.speed

    def to_wall(self, at: float) -> float:
        return self.real0 + (at - self.sim0) / self.speed

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed
