"""Cross-cutting steps around every handler. Their order is set (and explained) in
handlers/__init__.py. Deduplication is not here: it must happen before the platform gets its
answer, so the callback route does it when recording the message (bot/inbound.py)."""
from __future__ import annotations

import logging

from bot.core.dispatcher import Ctx, Next
from bot.core.models import Inbound
from bot.data import people

log = logging.getLogger("linli.dispatcher")


async def log_errors(ctx: Ctx, msg: Inbound, next: Next) -> None:
    """Log a failure with the message it concerns, then re-raise so the inbound row is marked
    'failed' with the error."""
    try:
        await next(ctx, msg)
    except Exception:
        log.exception("handler %s failed on inbound %s (%s %s from %s)", ctx.handler,
                      msg.inbound_id, msg.channel, msg.msg_type, msg.user_id)
        raise


async def attach_resident(ctx: Ctx, msg: Inbound, next: Next) -> None:
    """Make sure ctx.resident is the sender's register row. The callback route already looked it
    up when recording; messages dispatched some other way (tests, replays) are looked up here."""
    if ctx.resident is None:
        ctx.resident = people.by_account(ctx.app.store, msg.channel, msg.user_id)
    await next(ctx, msg)
