"""HTML responses for the dashboard: one place for the security headers every page gets.

The Content-Security-Policy allows only our own scripts and styles (no inline script, no CDN):
the dashboard must work offline on the community office's network, and a resident's text shown
on a page (a request, a name) must never be able to run as script.
"""
from __future__ import annotations

from aiohttp import web

from bot.core import texts
from bot.core.clock import hhmm, local

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
}


def page(template: str, *, status: int = 200, **context) -> web.Response:
    body = texts.render(f"web/{template}", **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=HEADERS)


def formatters(tz: str) -> dict:
    """Time helpers for templates (templates must not do time-zone arithmetic)."""
    def dt(ts):
        return local(ts, tz).strftime("%m-%d %H:%M") if ts else ""
    return {"hhmm": lambda ts: hhmm(ts, tz), "dt": dt}
