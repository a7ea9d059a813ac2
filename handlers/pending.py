"""What a chat user has pending: a preview waiting for 确认/取消, a question waiting for its answer.

Each concern keeps its own state name (bot.data.conversations), so one router's 确认 answers only
its own preview: alerts', schedules', consultations' and the scores' previews never take each other's.
"""
from __future__ import annotations

from bot.core.dispatcher import Ctx, Filter
from bot.core.models import Inbound
from bot.data import conversations


def user_key(msg: Inbound) -> str:
    """The conversation's key: one per chat user and channel."""
    return f"{msg.channel}:{msg.user_id}"


def pending(state: str) -> Filter:
    """A filter: this user has an unexpired `state` pending; the handler gets it as ctx.match["pending"]."""
    def check(ctx: Ctx, msg: Inbound) -> bool | dict:
        data = conversations.pending(ctx.store, user_key(msg), state, ctx.app.clock.now())
        return {"pending": data} if data is not None else False
    return check
