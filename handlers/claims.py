"""三单制 / 微心愿: volunteers and party members list and claim requests opened for claiming, and report them done."""
from __future__ import annotations

from bot.core.dispatcher import Router

router = Router("claims")
