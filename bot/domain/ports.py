"""What the domain needs from the rest of the program, as types (the dependency rule).

Domain acts take one `deps: Deps`. The composition root (bot/app.py) builds the object that
satisfies it; tests build their own. The domain never imports a transport or a web module: it
writes intended sends through `deps.outbox` (rows in the outbox table) and the outbound
transport decides how they travel; it asks `deps.reach` how a person can be reached privately.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol

from bot.core.clock import Clock
from bot.core.config import Settings
from bot.data.store import Store


class SendQueue(Protocol):
    """The outbox as the domain sees it: intended sends become rows; the worker sends them."""

    def enqueue(self, key: str, channel: str, target: str, payload: dict, *,
                alert_id: int | None = None, purpose: str = "") -> int | None: ...

    def enqueue_many(self, rows: Iterable[dict]) -> int: ...

    def kick(self) -> None: ...

    def mark_confirmed(self, send_id: int, ok: bool = True, error: str | None = None) -> None: ...

    def retry(self, send_ids: Iterable[int] | None = None, *, alert_id: int | None = None) -> int:
        """Dead or failed sends back to pending (staff's 重发)."""
        ...


class Reach(Protocol):
    """How to reach people privately; the outbound transport knows the channels and batches."""

    def person(self, person: Mapping[str, Any]) -> tuple[str, str] | None:
        """(channel, target) for one person, or None when they have no reachable account."""
        ...

    def fan_out(self, people: list[Mapping[str, Any]]) -> list[tuple[str, str, list[Mapping[str, Any]]]]:
        """(channel, target, members) covering everyone reachable, batched as the platform allows."""
        ...

    def delivered(self, row: Mapping[str, Any], result: Any = None) -> list[str]:
        """The targets of a sent row that the platform accepted."""
        ...


class Timers(Protocol):
    """The one escalation timer, derived from the rows; re-armed after every act that moves it."""

    def rearm(self) -> float | None: ...


class Deps(Protocol):
    settings: Settings
    store: Store
    clock: Clock
    outbox: SendQueue
    reach: Reach
    timers: Timers
