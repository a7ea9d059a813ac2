"""HTML responses for the dashboard: one place for the security headers every page gets, the
app key handlers find Linli's App under, and `render` for pages with the logged-in frame.

The Content-Security-Policy allows only our own scripts and styles (no inline script, no CDN):
the dashboard must work offline on the community office's network, and a resident's text shown
on a page (a request, a name) must never be able to run as script.

bot/web never imports bot.app (the entry layer sits above it): the key lives here and the
composition root stores the App under it (add_dashboard_routes does so too when it is missing).
"""
from __future__ import annotations

import re

from aiohttp import web

from bot.core import texts
from bot.core.clock import hhmm, local

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


_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_RUNS = re.compile(r"(\d+|[零〇一二两三四五六七八九十百千]+)")


def _zh_int(run: str) -> int:
    """一 1, 十 10, 十二 12, 二十 20, 一百零五 105 (registers number grids and compounds in words)."""
    total = num = 0
    for c in run:
        if c in _ZH_DIGITS:
            num = _ZH_DIGITS[c]
        else:
            total += (num or 1) * _ZH_UNITS[c]
            num = 0
    return total + num


def natural_key(text) -> tuple:
    """Sort key that reads numbers as numbers: 1栋, 2栋 … 10栋 (not 1栋, 10栋, 2栋), and 第一网格,
    第二网格 … 第十网格 (not by the characters' code points, which put 三 before 二)."""
    out = []
    for part in _RUNS.split("" if text is None else str(text)):
        if not part:
            continue
        if part.isdigit():
            out.append((0, int(part), ""))
        elif part[0] in _ZH_DIGITS or part[0] in _ZH_UNITS:
            out.append((0, _zh_int(part), ""))
        else:
            out.append((1, 0, part))
    return tuple(out)


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
