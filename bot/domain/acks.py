"""Acknowledgements and coverage.

A household is covered when any member (or someone on their behalf) acknowledges. Every ack is a
row: alert, household, resident, channel, proxy, answer (ok / help), time, raw text.
"""
from __future__ import annotations

import math
import re

# what residents actually write (DOMAIN.md): "收到", "1", "好的", "已阅", "收到，谢谢", a thumbs-up
ACK_WORDS = ("收到", "好的", "已阅", "知道了", "明白", "ok", "okay", "好", "嗯", "1", "１", "👍", "[强]",
             "平安", "已收到", "收到了")
HELP_PHRASES = ("需要帮助", "救命", "求助", "帮帮我", "快来人", "被困", "受伤")  # "2" is handled apart
_PUNCT = " \t\r\n，,。.！!、~～;；:："
_ACK_RE = re.compile(
    r"^(?P<ack>" + "|".join(re.escape(w) for w in sorted(ACK_WORDS, key=len, reverse=True)) + r")"
    r"(?P<tail>(?:[" + re.escape(_PUNCT) + r"]|谢谢|了|啦)*)(?P<rest>.*)$", re.S | re.I)
THANKS = ("谢谢", "谢谢你", "谢谢社区", "辛苦了", "感谢", "多谢")


def parse_reply(text: str) -> tuple[str, str] | None:
    """('ok'|'help', rest) for an acknowledging reply, None otherwise. `rest` is whatever the
    resident asked for in the same message ("收到，地下车库进水了" -> ('ok', '地下车库进水了'))."""
    t = text.strip()
    if not t:
        return None
    if re.match(r"^[2２](?:$|[" + re.escape(_PUNCT) + "])", t):
        return "help", t[1:].strip(_PUNCT)
    if any(w in t for w in HELP_PHRASES):
        return "help", t
    m = _ACK_RE.match(t)
    if m is None:
        return None
    rest = m.group("rest").strip(_PUNCT)
    if rest.strip(_PUNCT) in THANKS:
        rest = ""
    if m.group("ack") in ("好", "嗯", "1", "１") and rest and not m.group("tail"):
        return None  # "好多水" / "1栋漏水" are not acknowledgements
    return "ok", rest


def record_ack(app, *, alert: dict, household_id: int, resident_id: int | None, channel: str,
               answer: str = "ok", raw: str = "", proxy_id: int | None = None,
               request_id: int | None = None) -> dict:
    """Log one ack. A resident repeating the same answer adds nothing; a changed answer is a new
    row (the newest answer counts, the first ack time keeps counting for coverage)."""
    store, now = app.store, app.clock.now()
    if resident_id is not None:
        last = store.q1("SELECT * FROM acks WHERE alert_id=? AND resident_id=? ORDER BY id DESC LIMIT 1",
                        (alert["id"], resident_id))
        if last and last["answer"] == answer and request_id is None:
            return dict(last, duplicate=True)
    with store.transaction() as conn:
        ack_id = conn.execute(
            "INSERT INTO acks (alert_id, household_id, resident_id, channel, by_proxy_id, answer, at, raw,"
            " request_id) VALUES (?,?,?,?,?,?,?,?,?)",
            (alert["id"], household_id, resident_id, channel, proxy_id, answer, now, raw, request_id)).lastrowid
        store.log(now, "ack", "alert", alert["id"], proxy_id or resident_id, household_id=household_id,
                  channel=channel, answer=answer, proxy=proxy_id is not None)
    return store.q1("SELECT * FROM acks WHERE id=?", (ack_id,))


# -- coverage ---------------------------------------------------------------------------------
def coverage(store, alert_id: int) -> dict:
    """Coverage of one alert, per building rolled up to compound, grid and community, with the
    time to 50/90/100% of households acknowledged. Reads the trigger-maintained counters
    (coverage_counts, ack_firsts), so it stays fast at 100k households."""
    alert = store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))
    per_building = store.conn.execute(
        "SELECT building_id, households, reached, acked FROM coverage_counts WHERE alert_id=?", (alert_id,)).fetchall()
    help_by_building: dict[int, int] = {}
    for (b,) in store.conn.execute(
            "SELECT h.building_id FROM (SELECT DISTINCT household_id FROM acks WHERE alert_id=? AND answer='help') x "
            "JOIN households h ON h.id = x.household_id", (alert_id,)):
        help_by_building[b] = help_by_building.get(b, 0) + 1
    nodes = {n[0]: {"id": n[0], "kind": n[1], "name": n[2], "parent_id": n[3], "households": 0, "reached": 0,
                    "acked": 0, "help": 0, "children": []}
             for n in store.conn.execute("SELECT id, kind, name, parent_id FROM nodes")}
    touched = set()
    for b, households, reached, acked in per_building:
        node = nodes[b]
        counts = {"households": households, "reached": reached, "acked": acked, "help": help_by_building.get(b, 0)}
        while node is not None:
            for k, v in counts.items():
                node[k] += v
            touched.add(node["id"])
            node = nodes.get(node["parent_id"])
    for nid in sorted(touched):
        n = nodes[nid]
        n["pct"] = round(100.0 * n["acked"] / n["households"], 1) if n["households"] else 0.0
        if n["parent_id"] in nodes:
            nodes[n["parent_id"]]["children"].append(n)
    roots = [nodes[n] for n in sorted(touched) if nodes[n]["parent_id"] not in touched]
    total = sum(r["households"] for r in roots)
    acked = sum(r["acked"] for r in roots)
    return {"alert_id": alert_id, "households": total, "acked": acked,
            "reached": sum(r["reached"] for r in roots),
            "pct": round(100.0 * acked / total, 1) if total else 0.0,
            "time_to": {p: _time_to(store, alert_id, acked, total, p / 100, alert["created_at"]) for p in (50, 90, 100)},
            "tree": roots}


def _time_to(store, alert_id: int, acked: int, total: int, frac: float, start: float) -> float | None:
    """Seconds from issue until `frac` of households had acknowledged (the k-th first ack)."""
    need = math.ceil(frac * total)
    if total == 0 or need > acked or need == 0:
        return None
    at = store.scalar("SELECT at FROM ack_firsts WHERE alert_id=? ORDER BY at LIMIT 1 OFFSET ?",
                      (alert_id, need - 1))
    return at - start


def unacked_households(store, alert_id: int, building_id: int | None = None) -> list[dict]:
    sql = ("SELECT h.* FROM alert_scope s JOIN households h ON h.building_id = s.building_id "
           "AND h.active=1 WHERE s.alert_id=? AND NOT EXISTS (SELECT 1 FROM acks a WHERE "
           "a.alert_id=s.alert_id AND a.household_id=h.id)")
    params: tuple = (alert_id,)
    if building_id is not None:
        sql += " AND h.building_id=?"
        params += (building_id,)
    return store.q(sql + " ORDER BY h.id", params)


_ROOM_RE = re.compile(r"(?:(?P<building>\d+)\s*栋)?\s*(?:(?P<unit>\d+)\s*单元)?\s*(?P<room>\d{3,4})")


def find_household(store, text: str, building_ids: list[int]) -> list[dict]:
    """Households matching "3栋502", "2单元502" or "502" within the given buildings."""
    m = _ROOM_RE.search(text)
    if not m or not building_ids:
        return []
    sql = (f"SELECT h.*, n.name AS building FROM households h JOIN nodes n ON n.id=h.building_id "
           f"WHERE h.active=1 AND h.room=? AND h.building_id IN ({','.join('?' * len(building_ids))})")
    params = [m.group("room"), *building_ids]
    if m.group("building"):
        sql += " AND n.name=?"
        params.append(f"{m.group('building')}栋")
    if m.group("unit"):
        sql += " AND h.unit=?"
        params.append(f"{m.group('unit')}单元")
    compounds = [c["id"] for c in store.q("SELECT id, name FROM nodes WHERE kind='compound'") if c["name"] in text]
    if compounds:  # "金湖花园3栋502": the compound narrows it down
        sql += f" AND n.parent_id IN ({','.join('?' * len(compounds))})"
        params.extend(compounds)
    return store.q(sql, params)
