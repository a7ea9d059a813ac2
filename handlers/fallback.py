"""Last router: a registered person wrote something no other router understood."""
from __future__ import annotations

from bot.core.dispatcher import Ctx, Router
from bot.core.filters import known_resident, not_event, roles_of
from bot.core.models import Inbound

router = Router("fallback")


@router.message(known_resident, not_event)
async def explain_options(ctx: Ctx, msg: Inbound) -> None:
    """Say we didn't understand and list what this person can do (depends on their roles)."""
    await ctx.reply("messages/fallback_help.j2", resident_name=ctx.resident["name"],
                    roles=sorted(roles_of(ctx.resident)))
