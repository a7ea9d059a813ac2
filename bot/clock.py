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
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_717_200_000.0):  # 2024-06-01 08:00 Asia/Shanghai
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


def local(ts: float | None, tz: str = "Asia/Shanghai") -> datetime | None:
    """Epoch seconds to an aware datetime in the community's timezone."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).astimezone(ZoneInfo(tz))


def hhmm(ts: float | None, tz: str = "Asia/Shanghai") -> str:
    d = local(ts, tz)
    return d.strftime("%H:%M") if d else "—"
