"""Named one-shot timers on APScheduler's AsyncIOScheduler.

The database is the truth: every timer is derived from rows (a hop's deadline, an alert's
reminder time, a request's due time), so after a restart `rearm` rebuilds them and nothing is
lost. Jobs are named and replaced by name (PTB JobQueue style). Times are epoch seconds on the
app's clock; `to_wall` maps them to wall-clock run dates, which lets the demo run a simulated
clock faster than real time.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

log = logging.getLogger("linli.scheduler")


class Scheduler:
    def __init__(self, clock, tz: str = "Asia/Shanghai"):
        self.clock = clock
        self.tz = tz
        self._sched = AsyncIOScheduler(timezone=tz)
        self.armed: dict[str, float] = {}  # name -> clock time, what is armed (tests read it)

    def start(self) -> None:
        if not self._sched.running:
            self._sched.start()

    def shutdown(self) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=False)

    def to_wall(self, at: float) -> datetime:
        """Clock time -> wall-clock datetime for APScheduler."""
        wall = getattr(self.clock, "to_wall", None)
        ts = wall(at) if wall else at
        return datetime.fromtimestamp(ts, timezone.utc)

    def arm(self, name: str, at: float | None, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` once at clock time `at`, replacing any job of the same name; None disarms."""
        if at is None:
            self.disarm(name)
            self.armed.pop(name, None)
            return
        self.armed[name] = at
        if getattr(self.clock, "manual", False):
            return  # an injected clock: the test drives due work itself
        self._sched.add_job(job, DateTrigger(run_date=self.to_wall(at)), id=name, name=name,
                            replace_existing=True, misfire_grace_time=None, coalesce=True)
        log.debug("armed %s at %s", name, at)

    def disarm(self, name: str) -> None:
        if self._sched.get_job(name) is not None:
            self._sched.remove_job(name)

    def next_run(self, name: str) -> datetime | None:
        job = self._sched.get_job(name)
        return job.next_run_time if job else None

    def jobs(self) -> list[str]:
        return [j.id for j in self._sched.get_jobs()]
