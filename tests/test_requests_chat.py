"""Whole request conversations through the callback protocol: signed, encrypted callbacks into
the real aiohttp app; assertions on the sends the bot queued."""
from __future__ import annotations

import itertools
from contextlib import asynccontextmanager

import pytest
from helpers_callbacks import NOW, client_for, make_app, make_settings, oa_aes_request, text_xml, wecom_request
from request_world import build, events, person, sends, texts_to

from bot.core import texts
from bot.core.clock import FakeClock
from bot.domain import requests as R

H = 3600
MSG_IDS = itertools.count(5_000_000)  # unique across chats: a restarted app shares `inbound`


class Chat:
    """Residents and leads writing to the bot. Each message gets a fresh MsgId and the current
    (fake) time, signed and encrypted as the platform would."""

    def __init__(self, app, client):
        self.app, self.client = app, client

    async def post(self, user, xml_of, channel="wecom", msg_id=None):
        now = int(self.app.clock.now())
        xml = xml_of(now, msg_id or str(next(MSG_IDS)))
        query, body = (wecom_request if channel == "wecom" else oa_aes_request)(xml, ts=now)
        resp = await self.client.post(f"/{channel}/callback", params=query, data=body)
        assert resp.status == 200 and await resp.text() == "success"
        await self.app.settle()

    async def say(self, user, text, channel="wecom", msg_id=None):
        await self.post(user, lambda at, mid: text_xml(user=user, content=text, msg_id=mid, at=at),
                        channel, msg_id)

    async def photo(self, user, media_id, channel="wecom"):
        def xml(at, mid):
            return (f"<xml><ToUserName><![CDATA[wwtest]]></ToUserName>"
                    f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{at}</CreateTime>"
                    f"<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://pic/{media_id}]]>"
                    f"</PicUrl><MediaId><![CDATA[{media_id}]]></MediaId><MsgId>{mid}</MsgId>"
                    f"<AgentID>1000002</AgentID></xml>")
        await self.post(user, xml, channel)

    def last(self, target) -> str:
        return texts_to(self.app, target)[-1]


@asynccontextmanager
async def chat(app):
    async with client_for(app) as client:
        yield Chat(app, client)


@pytest.fixture
def app(tmp_path):
    return build(tmp_path)


def refused(code, request_id=None, action="", what="", state=""):
    return texts.render("messages/requests/refused.j2", code=code, request_id=request_id,
                        action=action, what=what, state=state)


async def test_file_clarify_accept_assign_start_resolve_rate(app):
    async with chat(app) as c:
        await c.say("xm", "在吗")
        assert c.last("xm") == texts.render("messages/requests/clarify.j2",
                                            person=person(app, "王小明"))
        assert app.store.scalar("SELECT COUNT(*) FROM requests") == 0
        await c.say("xm", "3栋2单元楼道灯坏了，晚上很黑")
        [req] = app.store.q("SELECT * FROM requests")
        rid = req["id"]
        assert (req["text"], req["category"], req["place"]) == (
            "3栋2单元楼道灯坏了，晚上很黑", "electricity", "3栋2单元楼道")
        assert c.last("xm").startswith(f"已登记 #{rid}")
        assert f"接单 #{rid}" in c.last("lead3")

        await c.say("lead3", f"接单 #{rid}")
        assert c.last("lead3").startswith(f"已接单 #{rid}")
        assert "王楼长受理" in c.last("xm")
        await c.say("lead3", f"派单＃{rid} 钱师傅")
        assert "钱师傅" in c.last("xm") and f"开始 #{rid}" in c.last("vol1")
        await c.say("vol1", f"开始 #{rid}")
        assert "正在处理中" in c.last("xm")
        await c.say("vol1", f"办结 #{rid} 已更换灯泡")
        assert "已办结：已更换灯泡" in c.last("xm") and "已办结" in c.last("vol1")
        await c.say("xm", f"评价 #{rid} 5 很及时")
        assert "5 分" in c.last("xm")
    req = R.get(app.store, rid)
    assert (req["state"], req["rating"], req["rating_comment"]) == ("closed", 5, "很及时")
    assert events(app, rid) == ["request.file", "request.accept", "request.assign",
                                "request.start", "request.resolve", "request.rate",
                                "request.close"]
    assert app.store.scalar("SELECT COUNT(*) FROM conversations") == 0  # question answered


async def test_low_rating_reopens_to_the_grid_lead(app):
    async with chat(app) as c:
        await c.say("xm", "楼下水管漏水")
        await c.say("lead3", "接单 #1")
        await c.say("lead3", "办结 #1 已报物业")
        await c.say("xm", "评价 #1 1 根本没人来")
        assert "退回网格长" in c.last("xm")
        assert "根本没人来" in c.last("grid1") and "派单 #1" in c.last("grid1")
        await c.say("grid1", "派单 #1 钱师傅")
        assert c.last("grid1").startswith("#1 已派给钱师傅")
    req = R.get(app.store, 1)
    assert (req["state"], req["reopened"]) == ("assigned", 1)


async def test_urgent_report_reaches_building_and_grid_lead_at_once(app):
    async with chat(app) as c:
        await c.say("xm", "收到！地下车库进水了")
    assert "【紧急报事】" in texts_to(app, "lead3")[0] and "地下车库" in texts_to(app, "lead3")[0]
    assert "【紧急报事】" in texts_to(app, "grid1")[0]
    assert texts_to(app, "grid2") == [] and texts_to(app, "lead8") == []


@pytest.mark.parametrize("who, text, expected", [
    ("wu", "查询 #1", refused("forbidden", 1, action="view")),  # another resident's request
    ("lead8", "接单 #1", refused("forbidden", 1, action="accept")),  # outside their buildings
    # same grid, other building
    ("lead5", "派单 #1 钱师傅", refused("forbidden", 1, action="assign")),
    ("grid2", "办结 #1 好了", refused("forbidden", 1, action="resolve")),  # the other grid
    ("xm", "接单 #1", refused("forbidden", 1, action="accept")),  # a resident is not a lead
    ("lead3", "评价 #1 5", refused("forbidden", 1, action="rate")),  # only the filer rates
    ("xm", "评价 #1 5", refused("bad_state", 1, action="rate", state="filed")),
    ("vol1", "我的工单", refused("forbidden", None, action="list")),
    ("xm", "查询 #99", refused("not_found", 99)),
    ("lead3", "办结 #1", refused("bad_input", 1, what="note")),
    ("lead3", "开始 #1", refused("bad_state", 1, action="start", state="filed")),
])
async def test_role_boundaries_and_refusals(app, who, text, expected):
    async with chat(app) as c:
        await c.say("xm", "3栋楼道灯坏了")
        before = app.store.q1("SELECT * FROM requests WHERE id = 1")
        await c.say(who, text)
        assert c.last(who) == expected
    assert app.store.q1("SELECT * FROM requests WHERE id = 1") == before  # nothing changed


async def test_only_the_filer_rates(app):
    async with chat(app) as c:
        await c.say("xm", "3栋楼道灯坏了")
        await c.say("lead3", "接单 #1")
        await c.say("lead3", "办结 #1 修好了")
        await c.say("lead3", "评价 #1 5")
        assert c.last("lead3") == refused("forbidden", 1, action="rate")
        await c.say("xm", "评价 #1 十分")
        assert c.last("xm") == refused("bad_input", 1, what="score")


async def test_lists_for_residents_and_leads(app):
    async with chat(app) as c:
        await c.say("xm", "3栋楼道灯坏了")
        await c.say("wu", "8栋电梯坏了")
        await c.say("xm", "我的报事")
        assert "#1 用电照明" in c.last("xm") and "#2" not in c.last("xm")
        await c.say("lead3", "我的工单")
        assert "待办报事 1 件" in c.last("lead3") and "#1" in c.last("lead3")
        await c.say("staff1", "待办")
        assert "待办报事 2 件" in c.last("staff1")
        await c.say("lead3", "派单 #1 钱师傅")
        await c.say("vol1", "我的工单")  # a volunteer sees what was assigned to them
        assert "#1" in c.last("vol1") and "#2" not in c.last("vol1")
        await c.say("xm", "查询 #1")
        assert c.last("xm").startswith("报事 #1：已派单") and "承办：钱师傅" in c.last("xm")


async def test_malformed_commands_get_the_formats_and_are_not_filed(app):
    async with chat(app) as c:
        await c.say("lead3", "派单")
        assert c.last("lead3") == texts.render("messages/requests/usage.j2", lead=True)
        await c.say("xm", "评价#")
        assert c.last("xm") == texts.render("messages/requests/usage.j2", lead=False)
        assert app.store.scalar("SELECT COUNT(*) FROM requests") == 0
        await c.say("xm", "开始下雨了，楼道进水")  # starts like a command, but is a report
        assert c.last("xm").startswith("已登记 #1")
        await c.say("xm", "谢谢")  # politeness is not a request
    assert app.store.scalar("SELECT COUNT(*) FROM requests") == 1


async def test_photo_joins_the_recent_request_and_alone_files_one(app):
    async with chat(app) as c:
        await c.say("xm", "3栋门口积水很深")
        await c.photo("xm", "media-1")
        assert "照片已补充到 #1" in c.last("xm")
        app.clock.advance(R.MEDIA_WINDOW_S + 60)
        await c.photo("xm", "media-2")
        assert c.last("xm").startswith("已登记 #2")
        await c.say("wu", "你好")  # a question pending, then a photo: it completes the filing
        await c.photo("wu", "media-3")
    media = app.store.q("SELECT request_id, kind, media_id, meta FROM request_media ORDER BY id")
    assert [(m["request_id"], m["media_id"]) for m in media] == [
        (1, "media-1"), (2, "media-2"), (3, "media-3")]
    assert '"PicUrl": "http://pic/media-1"' in media[0]["meta"]
    assert R.get(app.store, 2)["text"] == "（图片）"
    assert R.get(app.store, 3)["building_id"] == app.store.scalar(
        "SELECT id FROM nodes WHERE name = '8栋'")


async def test_official_account_resident_files_and_is_answered_there(app):
    async with chat(app) as c:
        await c.say("o-liu", "我家老人一个人在家，能不能来看看", channel="oa")
    [receipt] = sends(app, "o-liu")
    assert receipt["channel"] == "oa_cs" and receipt["text"].startswith("已登记 #1")
    assert R.get(app.store, 1)["category"] == "elderly"


async def test_a_platform_retry_files_once(app):
    # a platform retry is the same callback again, byte for byte (same signature, same body)
    xml = text_xml(user="xm", content="3栋楼道灯坏了", msg_id="4242", at=int(app.clock.now()))
    query, body = wecom_request(xml, ts=int(app.clock.now()))
    async with chat(app) as c:
        for _ in range(3):
            resp = await c.client.post("/wecom/callback", params=query, data=body)
            assert resp.status == 200 and await resp.text() == "success"
            await app.settle()
    assert app.store.scalar("SELECT COUNT(*) FROM requests") == 1
    assert len(texts_to(app, "xm")) == 1


async def test_reminders_fire_once_at_the_right_time_and_not_after_a_restart(tmp_path):
    app = build(tmp_path, FakeClock(NOW))
    async with chat(app) as c:
        await c.say("xm", "3栋楼道灯坏了")
    assert app.scheduler.armed["escalation:next"] == NOW + 4 * H
    assert await R.run_due(app, NOW + 4 * H - 1) == 0 and texts_to(app, "grid1") == []
    assert await R.run_due(app, NOW + 4 * H) == 1
    assert "还没有人接单" in texts_to(app, "grid1")[0]
    total = len(sends(app))
    restarted = make_app(make_settings(tmp_path), clock=FakeClock(NOW + 4 * H + 5))
    assert await R.run_due(restarted, NOW + 4 * H + 5) == 0
    assert len(sends(restarted)) == total
    async with chat(restarted) as c:  # accepting after the escalation stops the accept clock
        await c.say("grid1", "接单 #1")
    assert R.next_due_at(restarted) == NOW + 3 * 86400
