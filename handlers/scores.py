"""流动小红旗: compound branches enter cross-evaluation scores; staff see and publish the month's ranking."""
from __future__ import annotations

from bot.core.dispatcher import Router

router = Router("scores")
