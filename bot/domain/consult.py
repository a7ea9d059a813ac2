"""议事 / 定事: consultations put to the households of a scope, decided against a threshold."""
from __future__ import annotations

from bot.domain.ports import Deps


def next_due_at(deps: Deps) -> float | None:
    return None


async def run_due(deps: Deps) -> dict:
    return {}
