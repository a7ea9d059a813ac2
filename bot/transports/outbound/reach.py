"""How a person is reached privately: which channel, which platform id, how calls are batched.

This is platform knowledge (issue #9), so it lives with the senders, and the domain asks for it
through `deps.reach` (bot.domain.ports.Reach):

- staff, leads and social workers are WeCom members: app messages (`wecom_user`), up to 1,000
  userids per message/send call, joined by '|';
- residents follow the Official Account: service notices (`oa_template`), one call per person,
  because a customer-service message only reaches people who wrote in the last 48 hours;
- a person with neither account cannot be messaged at all and is left out.

`delivered()` reads a sent row back: message/send accepts a call even when some of its userids
are unknown, and lists those in `invaliduser` ("a|b"); they were not reached.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from bot.transports.outbound.senders import MAX_USERS_PER_CALL, SendResult

log = logging.getLogger("linli.reach")

WECOM_USER = "wecom_user"
OA_NOTICE = "oa_template"  # service notices reach followers outside the 48 h window
USER_CHANNELS = ("wecom_user", "oa_template", "oa_cs")  # channels whose target is people


def _account(person: Mapping[str, Any], column: str) -> str | None:
    value = person.get(column)
    if value is None:
        return None
    value = str(value).strip()
    # '|' separates userids in one message/send call: an id containing it would address others
    return value if value and "|" not in value else None


class PlatformReach:
    """bot.domain.ports.Reach for the real platforms (and the local world, which mimics them)."""

    def __init__(self, batch_size: int = MAX_USERS_PER_CALL):
        if not 1 <= batch_size <= MAX_USERS_PER_CALL:
            raise ValueError(f"batch_size must be 1..{MAX_USERS_PER_CALL}")
        self.batch_size = batch_size

    def routes(self, person: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Every private (channel, target) for this person, best first."""
        out = []
        userid = _account(person, "wecom_userid")
        if userid:
            out.append((WECOM_USER, userid))
        openid = _account(person, "oa_openid")
        if openid:
            out.append((OA_NOTICE, openid))
        return out

    def person(self, person: Mapping[str, Any]) -> tuple[str, str] | None:
        """(channel, target) for one person: WeCom if they are a member, else the OA; None
        when they have no usable account."""
        routes = self.routes(person)
        return routes[0] if routes else None

    def fan_out(self, people: list[Mapping[str, Any]]) -> list[tuple[str, str, list[Mapping[str, Any]]]]:
        """The calls that reach all of `people`: (channel, target, the people that call reaches).
        WeCom members are batched up to 1,000 userids a call, in the order given; OA followers
        get one call each; people with no account are left out. An account listed twice is
        addressed once (both people are in that call's members)."""
        wecom: dict[str, list[Mapping[str, Any]]] = {}
        oa: dict[str, list[Mapping[str, Any]]] = {}
        for p in people:
            route = self.person(p)
            if route is None:
                continue
            channel, target = route
            (wecom if channel == WECOM_USER else oa).setdefault(target, []).append(p)
        out: list[tuple[str, str, list[Mapping[str, Any]]]] = []
        ids = list(wecom)
        for i in range(0, len(ids), self.batch_size):
            chunk = ids[i:i + self.batch_size]
            out.append((WECOM_USER, "|".join(chunk), [m for u in chunk for m in wecom[u]]))
        out.extend((OA_NOTICE, openid, members) for openid, members in oa.items())
        return out

    def delivered(self, row: Mapping[str, Any], result: SendResult | None = None) -> list[str]:
        """The targets of a sent user-channel row that the platform accepted: the row's ids minus
        the ones message/send listed as invalid. Empty for rows not sent, or not to people.
        Without a result (a row read back later) the detail the outbox kept in `error` is used."""
        if row.get("state") != "sent" or row.get("channel") not in USER_CHANNELS:
            return []
        detail = dict(result.detail or {}) if result is not None else _kept_detail(row)
        invalid = {u for u in str(detail.get("invaliduser") or "").split("|") if u}
        targets = [t for t in str(row.get("target") or "").split("|") if t]
        return [t for t in dict.fromkeys(targets) if t not in invalid]


def _kept_detail(row: Mapping[str, Any]) -> dict:
    raw = row.get("error")
    if not raw:
        return {}
    try:
        detail = json.loads(raw)
    except ValueError:
        log.warning("send %s: error column is not the detail JSON; assuming no invalid users",
                    row.get("id"))
        return {}
    return detail if isinstance(detail, dict) else {}
