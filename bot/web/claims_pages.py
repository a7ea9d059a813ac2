"""Dashboard pages (mounted from bot.web.dashboard)."""
from __future__ import annotations

from aiohttp import web


def add_routes(wa: web.Application) -> None:
    return None
