"""One-to-one follow-ups of vulnerable residents, closed by a social worker's visit.

A visit is told in chat ("已上门 3栋502 平安", "已上门 #12 家里进水了"): the task closes, the visit is
recorded as an acknowledgement through the same `acknowledge` every door uses, and anything the
worker reports beyond "平安" becomes a request (urgent when it asks for help).
"""
from __future__ import annotations

import re

from bot.data import acks as acks_db
from bot.data import people as people_db
from bot.domain.acks import acknowledge, parse_reply
from bot.domain.ports import Deps

ALL_WELL = ("平安", "安全", "无事", "没事", "一切正常", "正常")


def visit(deps: Deps, worker: dict, rest: str, *, raw: str = "", request_key: str | None = None
          ) -> tuple[list[dict], int | None]:
    """Close the worker's open follow-ups that `rest` names. Returns (closed tasks, request id)."""
    store, now = deps.store, deps.clock.now()
    matches = match(acks_db.open_followups_of_worker(store, worker["id"]), rest)
    note = rest
    for f in matches:  # what is left after the room is the worker's note ("平安", "家里进水了")
        note = note.replace(f["room"], "")
    note = re.sub(r"#\d+|(?:\d+栋)?(?:\d+单元)?\d{3,4}", "", note).strip(" ，,。")
    request_id = None
    for f in matches:
        with store.transaction():
            acks_db.close_followup(store, f["id"], now, rest)
            store.log(now, "followup.closed", "followup", f["id"], worker["id"], note=rest)
        parsed = parse_reply(note) if note else None
        kind = "help" if parsed and parsed[0] == "help" else ("safe" if not note or note in ALL_WELL else "ok")
        ask = f"{f['room']} {f['name']}：{note}" if note and note not in ALL_WELL and request_id is None else ""
        outcome = acknowledge(deps, household_id=f["household_id"], door="visit", kind=kind,
                              alert_id=f["alert_id"], resident=people_db.get(store, f["resident_id"]),
                              proxy=worker, raw=raw, ask=ask, request_key=request_key)
        request_id = request_id or outcome.request_id
    return matches, request_id


def match(opened: list[dict], text: str) -> list[dict]:
    """Open follow-ups named by "#12" or by a room ("502", "3栋502"); one household only."""
    m = re.search(r"#(\d+)", text)
    if m:
        return [f for f in opened if f["id"] == int(m.group(1))]
    exact = [f for f in opened if f["room"] in text]  # the full label, as the task message gave it
    if exact:
        return exact if len({f["household_id"] for f in exact}) == 1 else []
    room = re.search(r"(?:(\d+)栋)?\s*(?:\d+单元)?\s*(\d{3,4})", text)
    if room is None:
        return []
    found = [f for f in opened if f["room_no"] == room.group(2)
             and (room.group(1) is None or f"{room.group(1)}栋" in f["room"])]
    return found if len({f["household_id"] for f in found}) == 1 else []
