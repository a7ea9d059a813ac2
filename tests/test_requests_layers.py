"""The requests workflow stands on its own (issue #9): it imports no alert, relay or escalation
module (escalation imports it, for next_due_at/run_due), sits in no import cycle, and its doors
and domain hold no SQL (all of it is in bot/data/requests.py)."""
from __future__ import annotations

from test_architecture import ROOT, cycles, graph, sql_sites

MINE = ("bot.domain.requests", "handlers.requests", "bot.web.requests_pages",
        "bot.web.requests_api")
FILES = ["bot/domain/requests/__init__.py", "bot/domain/requests/access.py",
         "bot/domain/requests/lifecycle.py", "bot/domain/requests/reminders.py",
         "bot/domain/requests/rules.py", "handlers/requests.py", "bot/web/requests_pages.py",
         "bot/web/requests_api.py"]


def _mine(mod: str) -> bool:
    return any(mod == m or mod.startswith(m + ".") for m in MINE)


def test_requests_import_no_alert_relay_or_escalation_module():
    g = graph()
    banned = ("bot.domain.alerts", "bot.domain.relay", "bot.domain.escalation")
    found = sorted(f"{m} -> {d}" for m, deps in g.items() if m.startswith("bot.domain.requests")
                   for d in deps if d in banned)
    assert found == []


def test_requests_are_in_no_cycle():
    assert [c for c in cycles(graph()) if any(_mine(m) for m in c)] == []


def test_requests_hold_no_sql():
    assert {f: sql_sites(ROOT / f) for f in FILES if sql_sites(ROOT / f)} == {}
