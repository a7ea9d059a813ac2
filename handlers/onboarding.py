"""People the register doesn't know yet, and new Official Account followers."""
from __future__ import annotations

from bot.core.dispatcher import Ctx, Router
from bot.core.filters import channel_is, event_is, not_event, unknown_user
from bot.core.models import Inbound

router = Router("onboarding")


# wechatpy renames a subscribe that came through a QR code with a scene to 'subscribe_scan'
@router.event(channel_is("oa"), event_is("subscribe", "subscribe_scan"))
async def welcome(ctx: Ctx, msg: Inbound) -> None:
    """A new follower: greet them, and tell them how to get registered if they aren't."""
    await ctx.reply("messages/onboarding_welcome.j2", resident=ctx.resident)


# events (menu clicks, location reports, unsubscribes) get no answer: nobody wrote anything
@router.message(unknown_user, not_event)
async def ask_to_register(ctx: Ctx, msg: Inbound) -> None:
    """Someone not in the register wrote to us: only their building lead can add them."""
    await ctx.reply("messages/onboarding_unregistered.j2")
