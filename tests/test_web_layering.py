"""Issue #9 for the dashboard's files: no SQL outside bot/data, bot/web never imports the entry
layer (bot.app), and the dashboard modules are in no import cycle of their own."""
from __future__ import annotations

from test_architecture import ROOT, cycles, graph, sql_sites

MINE = ["bot/web/auth.py", "bot/web/dashboard.py", "bot/web/composer.py", "bot/web/alert_view.py",
        "bot/web/alerts_api.py", "bot/web/exports.py", "bot/web/render.py", "bot/web/sse.py"]
MODULES = {p[:-3].replace("/", ".") for p in MINE}


def test_no_sql_in_the_dashboard_files():
    found = {p: sql_sites(ROOT / p) for p in MINE}
    assert {p: v for p, v in found.items() if v} == {}


def test_the_web_door_does_not_import_the_entry_layer():
    g = graph()
    web = [m for m in g if m == "bot.web" or m.startswith("bot.web.")]
    assert len(web) >= len(MODULES)
    bad = sorted(f"{m} -> {d}" for m in web for d in g[m] if d.split(".")[:2] == ["bot", "app"])
    assert bad == []


def test_the_dashboard_modules_are_in_no_cycle():
    found = [c for c in cycles(graph()) if MODULES & set(c)]
    assert found == []
