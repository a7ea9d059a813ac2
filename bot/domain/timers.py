"""The one named timer for everything due later, derived from the rows.

Each source of due work (escalation of silence; scheduled CAP warnings) offers
`next_due_at(deps) -> float | None` and `async run_due(deps) -> dict`. The timer arms one
APScheduler job at the earliest time any source names, runs every source when it fires and
re-arms; a restart just calls `rearm()`. Sources don't import each other: the composition root
lists them.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from bot.core.scheduler import Scheduler

log = logging.getLogger("linli.timers")
JOB = "escalation:next"


class DueWork(Protocol):
    def next_due_at(self, deps: Any) -> float | None: ...

    async def run_due(self, deps: Any) -> dict: ...


class Timers:
    """Implements bot.domain.ports.Timers."""

    def __init__(self, deps: Any, scheduler: Scheduler | None, sources: list[DueWork]):
        self.deps, self.scheduler, self.sources = deps, scheduler, sources

    def next_due_at(self) -> float | None:
        times = [t for s in self.sources if (t := s.next_due_at(self.deps)) is not None]
        return min(times) if times else None

    async def run_due(self) -> dict:
        done: dict = {}
        for s in self.sources:
            done.update(await s.run_due(self.deps))
        return done

    def rearm(self) -> float | None:
        """Arm the single job at the next due time (or disarm it)."""
        at = self.next_due_at()
        if self.scheduler is not None:
            async def job() -> None:
                try:
                    await self.run_due()
                finally:
                    self.rearm()
            self.scheduler.arm(JOB, at, job)
        return at
