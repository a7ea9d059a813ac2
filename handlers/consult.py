"""议事 / 定事: staff or a compound branch open a consultation; households vote (reply, link, a lead for them)."""
from __future__ import annotations

from bot.core.dispatcher import Router

router = Router("consult")
