"""Every request chat command as every role (issue #10 items 8/9): who may do what, and that no
reply names a person, a home or a request outside the sender's area.

The register (tests/request_world.py): request #1 is 王小明's in 一区3栋 (grid 1), #2 吴奶奶's in
二区8栋 (grid 2), #3 钱师傅's in 一区5栋 (grid 1). Roles are played by: the resident who filed
#1, another resident, 3栋's lead, 5栋's lead (same grid, other building), grid 1's lead, grid 2's
lead, a social worker (no led nodes) and community staff.
"""
from __future__ import annotations

import itertools

import pytest
from request_world import build, person, texts_to

from bot.core import texts
from bot.core.models import Inbound
from bot.domain import requests as R

ROLES = {  # role -> (WeCom user id, register name)
    "resident": ("xm", "王小明"), "other_resident": ("wu", "吴奶奶"),
    "building_lead": ("lead3", "王楼长"), "other_building_lead": ("lead5", "孙楼长"),
    "grid_lead": ("grid1", "李网格"), "other_grid_lead": ("grid2", "赵网格"),
    "social_worker": ("sw1", "林社工"), "staff": ("staff1", "陈书记"),
}
# command -> (text, what must be true of #1 first, action named in a refusal)
COMMANDS = {
    "接单": ("接单 #1", [], "accept"),
    "派单": ("派单 #1 钱师傅", [], "assign"),
    "开始": ("开始 #1", ["accept"], "start"),
    "办结": ("办结 #1 已修好", ["accept"], "resolve"),
    "备注": ("备注 #1 已联系物业", [], "comment"),
    "我的工单": ("我的工单", [], "list"),
    "查询": ("查询 #1", [], "view"),
    "评价": ("评价 #1 5", ["accept", "resolve"], "rate"),
}
MANAGERS = {"building_lead", "grid_lead", "staff"}
ALLOWED = {
    "接单": MANAGERS, "派单": MANAGERS, "开始": MANAGERS, "办结": MANAGERS,
    "备注": MANAGERS | {"resident"},  # the filer may add a note to their own request
    "我的工单": MANAGERS | {"other_building_lead", "other_grid_lead"},  # each sees their own area
    "查询": MANAGERS | {"resident"},
    "评价": {"resident"},  # only the filer rates
}
MSG_IDS = itertools.count(9_000_000)


async def say(app, uid: str, text: str) -> list[str]:
    """Send one chat message; the texts sent back to the sender because of it."""
    before = len(texts_to(app, uid))
    await app.dispatcher.dispatch(Inbound(channel="wecom", user_id=uid, msg_type="text", text=text,
                                          msg_id=str(next(MSG_IDS)), at=app.clock.now()))
    return texts_to(app, uid)[before:]


def world(tmp_path):
    app = build(tmp_path)
    for name, text in (("王小明", "3栋2单元楼道灯坏了"), ("吴奶奶", "8栋电梯坏了"),
                       ("钱师傅", "5栋门口积水")):
        R.file_request(app, resident=person(app, name), text=text)
    return app


def secrets_outside(app, uid: str) -> set[str]:
    """Names, homes and texts of the requests this sender may not see."""
    me = app.store.q1("SELECT * FROM residents WHERE wecom_userid = ?", (uid,))
    seen = {r["id"] for r in R.list_requests(app.store, me)}
    out = set()
    for r in app.store.q("SELECT * FROM requests"):
        if r["id"] in seen:
            continue
        v = R.view(app, r)
        out |= {person_name(app, r["resident_id"]), v["household"], r["text"]}
    return {s for s in out if s}


def person_name(app, resident_id):
    row = app.store.q1("SELECT name FROM residents WHERE id = ?", (resident_id,))
    return row["name"] if row else ""


def refusal(action: str) -> str:
    rid = None if action == "list" else 1
    return texts.render("messages/requests/refused.j2", code="forbidden", request_id=rid,
                        action=action, what="", state="")


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("role", list(ROLES))
async def test_every_command_as_every_role(tmp_path, role, command):
    app = world(tmp_path)
    text, steps, action = COMMANDS[command]
    lead = person(app, "王楼长")
    for step in steps:  # bring #1 to a state where the command is valid, so only the role decides
        if step == "accept":
            R.accept(app, lead, 1)
        else:
            R.resolve(app, lead, 1, "已更换灯泡")
    before = R.get(app.store, 1)
    events_before = len(R.history(app.store, 1))
    uid, name = ROLES[role]
    replies = await say(app, uid, text)
    allowed = role in ALLOWED[command]
    after = R.get(app.store, 1)
    if allowed:
        assert refusal(action) not in replies
        if command in ("接单", "派单", "开始", "办结", "评价"):
            assert after["state"] != before["state"]
        elif command == "备注":
            assert len(R.history(app.store, 1)) == events_before + 1
        elif command == "查询":
            assert replies and replies[-1].startswith("报事 #1：")
        elif command == "我的工单":
            assert replies and ("待办报事" in replies[-1] or "没有待办" in replies[-1])
    else:
        me = person(app, name)
        # who may not even see #1 hears just that (not whether they could have done it)
        sees = any(r["id"] == 1 for r in R.list_requests(app.store, me))
        loads_first = command in ("备注", "查询", "评价")
        assert replies == [refusal(action if sees or not loads_first else "view")]
        assert after == before and len(R.history(app.store, 1)) == events_before
    # whatever the answer, nothing outside the sender's area is named in it (a name the sender
    # typed, like the helper in 派单, is theirs to read back)
    leaked = [(s, r) for s in secrets_outside(app, uid) for r in replies
              if s in r and s not in text]
    assert leaked == []


async def test_the_leads_lists_hold_only_their_area(tmp_path):
    app = world(tmp_path)
    lists = {uid: (await say(app, uid, "我的工单"))[-1]
             for uid in ("lead3", "lead5", "grid1", "grid2", "staff1")}
    assert "#1" in lists["lead3"] and "#2" not in lists["lead3"] and "#3" not in lists["lead3"]
    assert "#3" in lists["lead5"] and "#1" not in lists["lead5"]
    assert "#1" in lists["grid1"] and "#3" in lists["grid1"] and "#2" not in lists["grid1"]
    assert "#2" in lists["grid2"] and "#1" not in lists["grid2"]
    assert all(f"#{i}" in lists["staff1"] for i in (1, 2, 3))
