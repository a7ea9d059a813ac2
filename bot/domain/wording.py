"""How a warning is worded: the context its templates get (community, colour, where to reply).

Kept apart from bot.domain.alerts so the relay, escalation and acks can word a warning without
depending on the acts that issue one.
"""
from __future__ import annotations

from bot.core import texts
from bot.core.config import Settings
from bot.data import alerts as alerts_db
from bot.data import org
from bot.data.store import Store

COLOURS = ("blue", "yellow", "orange", "red")
ANSWER_ZH = {"ok": "已确认", "safe": "平安", "help": "需要帮助"}


def reply_channels(settings: Settings) -> list[str]:
    """Where this deployment actually listens: 'oa' (the Official Account), 'wecom' (the WeCom
    app). A group message tells residents to reply there; with neither, to tell their lead."""
    out = []
    if settings.oa.app_id:
        out.append("oa")
    if settings.wecom.corp_id:
        out.append("wecom")
    return out


def alert_community(store: Store, alert: dict) -> str:
    """The community a warning belongs to (a register may hold several): that of its first building."""
    buildings = alerts_db.scope_buildings(store, alert["id"]) if alert.get("id") else alert.get("buildings", [])
    return org.community_name(store, buildings[0] if buildings else None)


def render_context(store: Store, alert: dict, settings: Settings | None = None) -> dict:
    prev = alerts_db.get(store, alert["supersedes_id"]) if alert.get("supersedes_id") else None
    change_zh = ""
    if alert["action"] == "update" and prev:
        a, b = COLOURS.index(prev["colour"]), COLOURS.index(alert["colour"])
        change_zh = "升级" if b > a else ("降级" if b < a else "更新")
    return dict(community=alert_community(store, alert), type=alert["type"], colour=alert["colour"],
                kind=alert.get("kind") or "warning", drill=alert.get("status") == "exercise",
                action=alert["action"], text=alert["text"], poll=bool(alert["poll"]),
                change_zh=change_zh or "更新",
                # a consultation's notice (议事) says how to vote itself: no "reply 1 if received"
                consultation=alert.get("carries") == "consultation",
                reply_via=reply_channels(settings) if settings is not None else ["oa"])


def render(store: Store, alert: dict, template: str = "messages/alert_group.j2", *,
           settings: Settings | None = None, **extra) -> str:
    return texts.render(template, **render_context(store, alert, settings), **extra)
