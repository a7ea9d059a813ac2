"""Talking to Linli through the real callback protocol in scenario tests (with sim_rig)."""
from __future__ import annotations

import json


async def say(sim, who: dict, text: str) -> str:
    """Send `text` as `who` (signed, encrypted, through the world); return the bot's reply text."""
    channel, uid = ("wecom", who["wecom_userid"]) if who.get("wecom_userid") else ("oa", who["oa_openid"])
    before = sim.store.scalar("SELECT COALESCE(MAX(id), 0) FROM sends WHERE purpose='reply'")
    await sim.world.people.callbacks.send_text(channel, uid, text)
    await sim.app.settle()
    rows = sim.store.q("SELECT payload FROM sends WHERE purpose='reply' AND id>? AND target=?", (before, uid))
    return "\n".join(json.loads(r["payload"])["text"] for r in rows)


def member(store, n: int = 0) -> dict:
    """The n-th active resident on the Official Account with a household (how residents reach Linli)."""
    return store.q("SELECT * FROM residents WHERE oa_openid IS NOT NULL AND household_id IS NOT NULL "
                   "AND active=1 ORDER BY id LIMIT 1 OFFSET ?", (n,))[0]
