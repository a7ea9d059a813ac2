"""Alerts: what a warning is, how it is worded, and issuing / updating / lifting one.

Issuing writes the alert, its scope and the whole relay plan (hops and sends) in one
transaction, so a crash either leaves no alert or one whose outbox the worker will finish.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from bot.core import texts

TYPES = ("暴雨", "雷雨大风", "台风", "高温", "寒潮", "大风", "大雾", "冰雹", "道路结冰", "其他")
COLOURS = ("blue", "yellow", "orange", "red")
SEVERE = ("orange", "red")


class AlertError(ValueError):
    """A staff input problem. `code` picks the Chinese sentence in alert_command_error.j2."""

    def __init__(self, code: str, **params):
        self.code, self.params = code, params
        super().__init__(f"{code}: {params}")


@dataclass
class Draft:
    type: str
    colour: str
    text: str = ""  # staff override of the body; empty = the template's words
    scope: list[int] = field(default_factory=list)  # node ids; empty = the whole community
    poll: bool | None = None  # None = automatic (orange/red)
    expires_h: float | None = None
    issuer_id: int | None = None
    action: str = "issue"
    supersedes_id: int | None = None

    @property
    def is_poll(self) -> bool:
        return self.colour in SEVERE if self.poll is None else self.poll


def parse_colour(word: str) -> str:
    w = word.strip().lower()
    if w in COLOURS:
        return w
    colour = texts.COLOUR_FROM_ZH.get(w.removesuffix("预警"))
    if colour is None:
        raise AlertError("unknown_colour", value=word)
    return colour


def parse_type(word: str) -> str:
    w = word.strip().removesuffix("预警")
    if w not in TYPES:
        raise AlertError("unknown_type", value=word)
    return w


def community_name(store) -> str:
    row = store.q1("SELECT name FROM nodes WHERE parent_id IS NULL ORDER BY id LIMIT 1")
    return row["name"] if row else "社区"


def resolve_scope(store, names_or_ids: list) -> list[int]:
    """Scope words ("第一网格", "大龙一区", "大龙一区/3栋", node ids) -> node ids."""
    ids = []
    for item in names_or_ids:
        if isinstance(item, int) or str(item).isdigit():
            row = store.q1("SELECT id FROM nodes WHERE id=?", (int(item),))
        else:
            item = str(item).strip()
            row = store.q1("SELECT id FROM nodes WHERE path=? OR path LIKE ? ORDER BY length(path) LIMIT 2",
                           (item, f"%/{item}"))
            if row is None and "/" not in item:
                row = store.q1("SELECT id FROM nodes WHERE name=? ORDER BY id LIMIT 1", (item,))
        if row is None:
            raise AlertError("unknown_place", value=item)
        ids.append(row["id"])
    return ids


def scope_buildings(store, node_ids: list[int]) -> list[int]:
    """All building ids under the given nodes (the whole tree when empty)."""
    if not node_ids:
        return [r["id"] for r in store.q("SELECT id FROM nodes WHERE kind='building'")]
    marks = ",".join("?" * len(node_ids))
    return [r["id"] for r in store.q(
        f"""WITH RECURSIVE sub(id, kind) AS (
                SELECT id, kind FROM nodes WHERE id IN ({marks})
                UNION SELECT n.id, n.kind FROM nodes n JOIN sub ON n.parent_id = sub.id)
            SELECT DISTINCT id FROM sub WHERE kind='building' ORDER BY id""", node_ids)]


def render_context(store, alert: dict) -> dict:
    prev = None
    if alert.get("supersedes_id"):
        prev = store.q1("SELECT colour FROM alerts WHERE id=?", (alert["supersedes_id"],))
    change_zh = ""
    if alert["action"] == "update" and prev:
        a, b = COLOURS.index(prev["colour"]), COLOURS.index(alert["colour"])
        change_zh = "升级" if b > a else ("降级" if b < a else "更新")
    return dict(community=community_name(store), type=alert["type"], colour=alert["colour"],
                action=alert["action"], text=alert["text"], poll=bool(alert["poll"]),
                change_zh=change_zh or "更新")


def render(store, alert: dict, template: str = "messages/alert_group.j2", **extra) -> str:
    return texts.render(template, **render_context(store, alert), **extra)


def preview(store, draft: Draft) -> dict:
    """What issuing `draft` would send and to how many: text, buildings, households."""
    alert_like = dict(type=draft.type, colour=draft.colour, action=draft.action, text=draft.text,
                      poll=draft.is_poll and draft.action != "lift", supersedes_id=draft.supersedes_id)
    buildings = scope_buildings(store, draft.scope)
    households = store.scalar(
        f"SELECT COUNT(*) FROM households WHERE active=1 AND building_id IN ({','.join('?' * len(buildings)) or 'NULL'})",
        buildings)
    return {"text": render(store, alert_like), "buildings": len(buildings), "households": households}


def issue(app, draft: Draft) -> int:
    """Create the alert and its relay plan atomically. Returns the alert id."""
    from bot.domain import relay

    if draft.type not in TYPES:
        raise AlertError("unknown_type", value=draft.type)
    if draft.colour not in COLOURS:
        raise AlertError("unknown_colour", value=draft.colour)
    store, now = app.store, app.clock.now()
    expires_h = draft.expires_h or app.settings.escalation.default_expiry_h
    buildings = scope_buildings(store, draft.scope)
    if not buildings:
        raise AlertError("empty_scope")
    with store.transaction() as conn:
        alert_id = conn.execute(
            "INSERT INTO alerts (type, colour, action, text, scope, poll, issuer_id, supersedes_id,"
            " created_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (draft.type, draft.colour, draft.action, draft.text, json.dumps(draft.scope),
             int(draft.is_poll and draft.action != "lift"), draft.issuer_id, draft.supersedes_id,
             now, now + expires_h * 3600)).lastrowid
        conn.executemany("INSERT INTO alert_scope (alert_id, building_id) VALUES (?,?)",
                         [(alert_id, b) for b in buildings])
        # the households each building had when the warning went out: coverage's denominator
        conn.execute("INSERT INTO coverage_counts (alert_id, building_id, households) "
                     "SELECT s.alert_id, s.building_id, COUNT(h.id) FROM alert_scope s LEFT JOIN households h "
                     "ON h.building_id = s.building_id AND h.active = 1 WHERE s.alert_id = ? "
                     "GROUP BY s.building_id", (alert_id,))
        if draft.action == "lift":  # nothing to remind, follow up or sum up after a lift
            conn.execute("UPDATE alerts SET reminded_at=?, followups_at=?, summary_at=? WHERE id=?",
                         (now, now, now, alert_id))
        if draft.supersedes_id:
            # the old warning ends here: no more reminders or summary; a lift reports its figures
            old = store.q1("SELECT * FROM alerts WHERE id=?", (draft.supersedes_id,))
            conn.execute("UPDATE alerts SET state=?, reminded_at=coalesce(reminded_at, ?), "
                         "followups_at=coalesce(followups_at, ?) WHERE id=? AND state='active'",
                         ("lifted" if draft.action == "lift" else "superseded", now, now, draft.supersedes_id))
            if draft.action == "lift" and old and old["summary_at"] is None:
                from bot.domain.escalation import send_summary

                send_summary(app, store.q1("SELECT * FROM alerts WHERE id=?", (old["id"],)), final=True)
            else:
                conn.execute("UPDATE alerts SET summary_at=coalesce(summary_at, ?) WHERE id=?",
                             (now, draft.supersedes_id))
        store.log(now, f"alert.{draft.action}", "alert", alert_id, draft.issuer_id,
                  type=draft.type, colour=draft.colour, buildings=len(buildings))
        relay.plan(app, alert_id)
    app.outbox.kick()
    return alert_id


def follow_on(app, alert_id: int, action: str, *, colour: str | None = None, text: str = "",
              issuer_id: int | None = None) -> int:
    """Update (升级/降级) or lift (解除) an alert: a new alert superseding the old one."""
    old = app.store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))
    if old is None:
        raise AlertError("no_alert", value=alert_id)
    if old["state"] != "active":
        raise AlertError("not_active", value=alert_id)
    return issue(app, Draft(type=old["type"], colour=colour or old["colour"], text=text,
                            scope=json.loads(old["scope"]), issuer_id=issuer_id or old["issuer_id"],
                            action=action, supersedes_id=alert_id,
                            poll=None if colour else bool(old["poll"])))


def active_alert_for_household(store, household_id: int) -> dict | None:
    """The newest active (issued or updated) alert whose scope covers this household."""
    return store.q1(
        """SELECT a.* FROM alerts a JOIN alert_scope s ON s.alert_id = a.id
           JOIN households h ON h.building_id = s.building_id
           WHERE h.id = ? AND a.state = 'active' AND a.action != 'lift'
           ORDER BY a.created_at DESC, a.id DESC LIMIT 1""", (household_id,))
