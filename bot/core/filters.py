"""Side-effect-free predicates for routes: `(ctx, msg) -> bool | dict`. A dict is a match whose
contents the handler finds in ctx.match (e.g. the groups a regex captured)."""
from __future__ import annotations

import re

from bot.core import vocabulary
from bot.core.dispatcher import Ctx, Filter
from bot.core.models import Inbound

ROLES = ("staff", "grid_lead", "building_lead", "social_worker", "volunteer", "party_member", "steward", "resident")


def text_equals(*words: str) -> Filter:
    """The whole text, trimmed, is one of `words` (ASCII case ignored)."""
    wanted = {w.strip().casefold() for w in words}
    return lambda ctx, msg: msg.text.strip().casefold() in wanted


def text_regex(pattern: str | re.Pattern, flags: int = 0) -> Filter:
    """re.search on the text; a match yields its named groups (an empty dict still matches)."""
    rx = re.compile(pattern, flags) if isinstance(pattern, str) else pattern

    def check(ctx: Ctx, msg: Inbound) -> bool | dict:
        m = rx.search(msg.text)
        if m is None:
            return False
        return m.groupdict() or True
    return check


def command(words: str, pattern: str, flags: int = 0) -> Filter:
    """A command whose verbs are a vocabulary list: `pattern` holds "{words}", which becomes the
    alternation of `words` (e.g. "commands.forwarded"). Recompiled when the config adds words."""
    cache: dict = {}

    def check(ctx: Ctx, msg: Inbound) -> bool | dict:
        version = vocabulary.version()
        if cache.get("v") != version:
            alternation = "|".join(re.escape(w) for w in sorted(vocabulary.words(words), key=len, reverse=True))
            cache.update(v=version, rx=re.compile(pattern.replace("{words}", f"(?:{alternation})"), flags))
        m = cache["rx"].search(msg.text)
        if m is None:
            return False
        return m.groupdict() or True
    return check


def known_resident(ctx: Ctx, msg: Inbound) -> bool:
    return ctx.resident is not None


def unknown_user(ctx: Ctx, msg: Inbound) -> bool:
    return ctx.resident is None


def roles_of(resident: dict | None) -> set[str]:
    if not resident:
        return set()
    return {r.strip() for r in (resident.get("roles") or "").split(",") if r.strip()}


def has_role(*roles: str) -> Filter:
    """The sender holds at least one of `roles`."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; known: {ROLES}")
    wanted = set(roles)
    return lambda ctx, msg: bool(roles_of(ctx.resident) & wanted)


def event_is(*names: str) -> Filter:
    """An event whose (lowercased) name is one of `names`."""
    wanted = {n.lower() for n in names}
    return lambda ctx, msg: msg.msg_type == "event" and msg.event in wanted


def msg_type_is(*types: str) -> Filter:
    wanted = set(types)
    return lambda ctx, msg: msg.msg_type in wanted


def channel_is(*channels: str) -> Filter:
    wanted = set(channels)
    return lambda ctx, msg: msg.channel in wanted


def not_event(ctx: Ctx, msg: Inbound) -> bool:
    """Something the user wrote or sent, not a menu click, subscription or location report."""
    return msg.msg_type != "event"
