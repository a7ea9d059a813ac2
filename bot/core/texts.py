"""Jinja2 environment for every resident- and staff-facing sentence (templates/)."""
from __future__ import annotations

from functools import lru_cache

import jinja2

from bot.core.resources import shipped

# the top-level templates/ of the checkout, or its copy inside an installed wheel (bot/core/resources.py)
TEMPLATES = shipped("templates")

COLOUR_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
COLOUR_FROM_ZH = {v: k for k, v in COLOUR_ZH.items()} | {v[0]: k for k, v in COLOUR_ZH.items()}


@lru_cache(maxsize=1)
def env() -> jinja2.Environment:
    e = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not a blank in a message
        auto_reload=False,  # templates ship with the code; no stat() per message
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    e.filters["colour_zh"] = lambda c: COLOUR_ZH.get(c, c)
    return e


def render(template_name: str, /, **context) -> str:
    """Render a template to text, trimmed."""
    return env().get_template(template_name).render(**context).strip()
