"""HTML responses for the dashboard: one place for the security headers every page gets, the
app key handlers find Linli's App under, and `render` for pages with the logged-in frame.

The Content-Security-Policy allows only our own scripts and styles (no inline script, no CDN):
the dashboard must work offline on the community office's network, and a resident's text shown
on a page (a request, a name) must never be able to run as script.

bot/web never imports bot.app (the entry layer sits above it): the key lives here and the
composition root stores the App under it (add_dashboard_routes does so too when it is missing).
"""
from __future__ import annotations

from aiohttp import web

from bot.core import texts
from bot.core.clock import hhmm, local
from bot.core.tables import natural_key  # noqa: F401  (templates and pages sort with it)

APP_KEY = web.AppKey("linli", object)

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
}


def app_of(request: web.Request):
    """Linli's App for a request (stored under APP_KEY by the composition root)."""
    return request.app[APP_KEY]


def page(template: str, *, status: int = 200, **context) -> web.Response:
    body = texts.render(f"web/{template}", **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=HEADERS)


def formatters(tz: str) -> dict:
    """Time helpers for templates (templates must not do time-zone arithmetic)."""
    def dt(ts):
        return local(ts, tz).strftime("%m-%d %H:%M") if ts else ""
    return {"hhmm": lambda ts: hhmm(ts, tz), "dt": dt}


def natsorted(items, attribute: str | None = None) -> list:
    """For templates: `natsorted(buildings, "name")`."""
    if attribute is None:
        return sorted(items, key=natural_key)
    return sorted(items, key=lambda i: natural_key(i[attribute] if isinstance(i, dict) else getattr(i, attribute)))


def render(request: web.Request, user, template: str, **context) -> web.Response:
    """A dashboard page for `user` (None: logged out), with the header, CSRF token and time helpers."""
    app = app_of(request)
    return page(template, user=user, csrf=user.csrf if user else "", path=request.path,
                natsorted=natsorted, **formatters(app.settings.timezone), **context)


def labels():
    """templates/web/_labels.html as a module: the Chinese words Python needs (errors, headers)."""
    return texts.env().get_template("web/_labels.html").module
