"""`linli demo`: the whole story on the embedded default (the local WeChat world)."""
from __future__ import annotations

from bot.clock import Clock
from bot.config import Settings
from bot.roster import format_tree, import_register, tree_counts
from bot.store import Store


def load_demo_register(store: Store, now: float) -> None:
    """Import the checked-in Dalong register (idempotent: re-import updates in place)."""
    from bot.cli import DEMO_GROUPS, DEMO_REGISTER

    report = import_register(store, DEMO_REGISTER, groups_path=DEMO_GROUPS, now=now)
    print(f"register: {report.residents} residents, {report.households} households, "
          f"{report.groups} groups")


async def run_demo(settings: Settings, *, speed: float = 60.0, exit_at_end: bool = False) -> int:
    store = Store(settings.store.path)
    load_demo_register(store, Clock().now())
    print(format_tree(tree_counts(store)))
    return 0
