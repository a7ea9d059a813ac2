"""The demo's second chapter: the community's own loops, played on the same world after the
warning — a lift retrofit consultation in one unit reaching its two-thirds threshold (votes by
reply, a changed vote, a steward's proxy vote, the early close and the published result), a small
wish filed by staff, claimed, done and rated by the resident, and the month's building scores with
compound branches' cross-evaluation, published down the chain.

Every step is a person of the register writing to Linli through the world's platform (the same
signed, encrypted callbacks as everything else); what Linli answered them is printed under it.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core import texts
from bot.data import demo as demo_data
from bot.data import people as people_db
from bot.domain import claims, consult, scores

SHOW_LINES = 2  # lines of each of Linli's answers printed under a step


def _line(step: str, indent: str = "", **ctx) -> None:
    print(indent + texts.render("demo/loops.j2", step=step, **ctx), flush=True)


class Stage:
    """People of the register speaking to Linli through the world, and what Linli answered."""

    def __init__(self, app, world):
        self.app, self.world = app, world

    def account(self, person: dict) -> tuple[str, str] | None:
        if person.get("wecom_userid"):
            return "wecom", person["wecom_userid"]
        if person.get("oa_openid"):
            return "oa", person["oa_openid"]
        return None

    async def say(self, person: dict, text: str, *, role: str = "", show: bool = True) -> list[str]:
        """`person` writes `text`; returns the texts Linli sent them back."""
        channel, uid = self.account(person)
        before = len(self.world.state.messages_for(uid))
        await self.world.people.callbacks.send_text(channel, uid, text)
        await self.app.settle()
        answers = [d.text for d in self.world.state.messages_for(uid)[before:]]
        if show:
            _line("said", "  ", who=person["name"], role=role, text=text.replace("\n", " / "))
            for a in answers[:1]:
                lines = [x for x in a.splitlines() if x.strip()]
                _line("answer", "      ", text=" / ".join(lines[:SHOW_LINES]) + (" ……" if len(lines) > SHOW_LINES else ""))
        return answers


async def play(app, world, secretary: dict) -> None:
    """The chapter; `secretary` is the staff member (a register row) who played the warning."""
    stage = Stage(app, world)
    boss = people_db.by_account(app.store, "wecom", secretary["uid"]) or secretary
    _line("title")
    await lift_story(app, stage, boss)
    await wish_story(app, stage, boss)
    await scores_story(app, stage, boss)


async def lift_story(app, stage: Stage, boss: dict) -> None:
    store = app.store
    unit = demo_data.lift_unit(store)
    if unit is None:
        _line("missing", what="议事")
        return
    homes = demo_data.unit_owner_households(store, unit["building_id"], unit["unit"])
    need = math.ceil(2 * len(homes) / 3)
    place = f"{unit['compound']}{unit['building']}{unit['unit']}"
    _line("lift", place=place, owners=len(homes), need=need)
    scope = f"{unit['compound']}/{unit['building']}/{unit['unit']}" if unit["compound"] else \
        f"{unit['building']}/{unit['unit']}"
    closes = datetime.fromtimestamp(app.clock.now(), ZoneInfo(app.settings.timezone)) + timedelta(days=7)
    await stage.say(boss, f"议事 {scope}\n问题：{unit['unit']}加装电梯，费用按楼层分摊，您是否同意？\n"
                          f"选项：同意/不同意\n投票：业主\n通过：三分之二 按户\n截止：{closes.month}月{closes.day}日18:00",
                    role="社区书记")
    await stage.say(boss, "确认", role="社区书记")
    cid = max((c["id"] for c in consult.listing(app, boss)), default=None)
    if cid is None:
        return
    voters = [h for h in homes if h["owner_id"]]
    # the steward votes for a neighbour whose owner is not on WeChat (else for any neighbour)
    by_proxy = next((h for h in reversed(homes) if h["steward_id"] and not h["owner_id"]), None) or \
        next((h for h in reversed(homes) if h["steward_id"]), None)
    voters = [h for h in voters if by_proxy is None or h["id"] != by_proxy["id"]]
    yes = voters[:need - (1 if by_proxy else 0)]
    no = voters[len(yes):len(yes) + 2]
    for i, h in enumerate(yes):
        owner = people_db.get(store, h["owner_id"])
        if i == 0:  # changes their mind before closing: the newest vote counts
            await stage.say(owner, "不同意", role=f"{h['room']} 业主")
            await stage.say(owner, "同意", role=f"{h['room']} 业主，改票")
        else:
            await stage.say(owner, "同意", role=f"{h['room']} 业主", show=i < 2)
    for h in no:
        await stage.say(people_db.get(store, h["owner_id"]), "不同意", show=False)
    _line("more_votes", "  ", n=max(0, len(yes) - 2), against=len(no))
    if by_proxy is not None:
        steward = people_db.get(store, by_proxy["steward_id"])
        await stage.say(steward, f"代投 {by_proxy['unit']}{by_proxy['room']} 同意",
                        role=f"党员中心户，替{'没有微信的' if not by_proxy['owner_id'] else ''}{by_proxy['room']}业主")
    await stage.say(boss, f"截止议事 {cid}", role="社区书记")
    c = consult.get(app, cid)
    result = c["result"] or {}
    _line("tally", yes=result.get("counts", [0])[0], owners=len(homes), need=need,
          passed=result.get("outcome") == "passed", place=place)


async def wish_story(app, stage: Stage, boss: dict) -> None:
    store = app.store
    home = demo_data.wish_household(store)
    volunteer = demo_data.volunteer_near(store, home["building_id"]) if home else None
    if home is None or volunteer is None:
        _line("missing", what="微心愿")
        return
    resident = people_db.get(store, home["resident_id"])
    what = "换一下厨房的灯泡"
    _line("wish", label=home["label"], text=what)
    room = f"{home['compound']}{home['building']}{home['room']}"
    await stage.say(boss, f"心愿 {room} 帮独居老人{what}", role="社区书记")
    wish = max(claims.board(app, boss)[claims.OPEN], key=lambda r: r["id"], default=None)
    if wish is None:
        return
    await stage.say(volunteer, "心愿单", role="志愿者")
    await stage.say(volunteer, f"认领 {wish['id']}", role="志愿者")
    await stage.say(volunteer, f"完成 {wish['id']} 1小时 已换好灯泡", role="志愿者")
    await stage.say(resident, f"评价 #{wish['id']} 5 小伙子很热心", role="居民")
    month = claims.month_figures(app, boss)
    _line("wish_done", volunteer=volunteer["name"], hours=1, rating=5, completed=month["completed"],
          total_hours=month["hours"])


async def scores_story(app, stage: Stage, boss: dict) -> None:
    month = scores.current_month(app.clock.now(), app.settings.timezone)
    _line("scores", month=scores.month_zh(month))
    marks = [(9, 9, 10), (8, 9, 8), (9, 7, 9), (7, 8, 8)]
    for b, (safety, hygiene, civility) in zip(demo_data.buildings_to_score(app.store, len(marks)), marks, strict=False):
        await stage.say(boss, f"评分 {b['compound']}/{b['building']} 安全{safety} 卫生{hygiene} 文明{civility}",
                        role="社区书记，代小区党支部录入互评", show=safety == 9 and hygiene == 9)
    answers = await stage.say(boss, "红旗榜", role="社区书记", show=False)
    for a in answers[:1]:
        for line in a.splitlines()[:6]:
            print(f"    {line}")
    await stage.say(boss, "发布红旗榜", role="社区书记")
    await stage.say(boss, "确认", role="社区书记")
