"""三单制 / 微心愿 in chat, through the signed callback protocol: staff file a wish for a household,
volunteers list, claim (the second one is refused), complete with hours; the resident rates it;
"我的服务" counts it. Also: 开放认领 on a resident's request, a resident's own "心愿：…", refusals."""
from __future__ import annotations

import pytest
from request_world import person, texts_to
from test_claims import build_claims
from test_requests_chat import chat

from bot.domain import claims
from bot.domain import requests as R


@pytest.fixture
def app(tmp_path):
    return build_claims(tmp_path)


def only_request(app) -> dict:
    [row] = app.store.q("SELECT * FROM requests")
    return row


async def test_a_wish_claimed_completed_and_rated_in_chat(app):
    async with chat(app) as c:
        await c.say("staff1", "心愿 3栋101 帮独居老人换灯泡")
        req = only_request(app)
        rid = req["id"]
        assert (req["kind"], req["claim_state"], req["resident_id"]) == (
            "wish", "open", person(app, "刘阿姨")["id"])
        assert f"微心愿 #{rid}" in c.last("staff1") and "3 位" in c.last("staff1")
        assert "微心愿" in texts_to(app, "o-liu")[0]

        await c.say("vol2", "心愿单")
        listing = c.last("vol2")
        assert f"{rid}. " in listing and "帮独居老人换灯泡" in listing and "/claims/" in listing

        await c.say("vol2", f"认领 {rid}")
        assert f"您已认领微心愿 #{rid}" in c.last("vol2") and "刘阿姨" in c.last("vol2")
        assert "赵志愿" in c.last("o-liu") and "13800000001" in c.last("o-liu")
        await c.say("vol1", f"认领 {rid}")
        assert "已经被其他志愿者认领" in c.last("vol1")

        await c.say("vol2", f"完成 {rid} 2小时 已换好灯泡")
        assert "2 小时" in c.last("vol2")
        assert f"评价 #{rid}" in c.last("o-liu")
        await c.say("o-liu", f"评价 #{rid} 5 小赵很热心", channel="oa")
        row = R.get(app.store, rid)
        assert (row["state"], row["rating"], row["hours"], row["resolution"]) == (
            "closed", 5, 2, "已换好灯泡")

        await c.say("vol2", "我的服务")
        assert "完成 1 件，共 2 小时" in c.last("vol2") and "平均评分 5" in c.last("vol2")


async def test_staff_open_a_residents_request_and_a_resident_files_a_wish(app):
    async with chat(app) as c:
        await c.say("xm", "心愿：想请人帮忙把旧衣服送到回收点")
        req = only_request(app)
        assert req["kind"] == "wish" and req["claim_state"] is None
        assert c.last("xm").startswith(f"已登记微心愿 #{req['id']}")
        await c.say("lead3", f"开放认领 {req['id']}")
        assert f"#{req['id']} 已开放认领" in c.last("lead3")
        assert R.get(app.store, req["id"])["claim_state"] == "open"
        await c.say("lead8", f"开放认领 {req['id']}")  # another grid's lead
        assert "不在您负责的楼栋" in c.last("lead8")


async def test_refusals_are_plain_chinese(app):
    async with chat(app) as c:
        await c.say("xm", "认领 1")
        assert "党员和志愿者" in c.last("xm")
        await c.say("staff1", "心愿 3栋999 帮忙")
        assert "没有在您负责的范围里找到" in c.last("staff1")
        req = claims.file_wish(app, person(app, "陈书记"), "陪老人去医院",
                               household_id=person(app, "刘阿姨")["household_id"])
        await c.say("vol1", f"完成 {req['id']} 1小时")
        assert "不是您认领的" in c.last("vol1") or "还没有人认领" in c.last("vol1")
        await c.say("vol1", f"认领 {req['id']}")
        await c.say("vol1", f"完成 {req['id']} 已陪好")
        assert "请写上用了多长时间" in c.last("vol1")
        await c.say("vol1", "认领")
        assert "心愿单" in c.last("vol1")
        await c.say("vol1", f"放弃 {req['id']}")
        assert f"已放弃 #{req['id']}" in c.last("vol1")
        assert R.get(app.store, req["id"])["claim_state"] == "open"


async def test_a_residents_wish_needs_a_colon_or_a_space_after_the_word(app):
    async with chat(app) as c:
        await c.say("xm", "心愿 帮我把快递搬上楼")
        await c.say("xm", "心愿是小区多装几盏路灯")
        rows = app.store.q("SELECT kind, text FROM requests ORDER BY id")
        assert rows[0] == {"kind": "wish", "text": "帮我把快递搬上楼"}
        # not a wish: the requests router reads it as before (files it, or asks first)
        assert [r["kind"] for r in rows if "路灯" in r["text"]] in ([], ["request"])
        assert "路灯" in c.last("xm") or c.last("xm").startswith("已登记 #")
