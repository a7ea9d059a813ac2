"""Warnings that did not go out (issue #11 item 4 / #10 item 1): one staff page with the outbox's
dead and failed sends (with the platform's reason, and 重发 through Outbox.retry) and the CAP
messages that were not relayed (held, refused, outside, recorded tests) with the reason, a held one
released to a scope through feed.release."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sim_rig import close_sim, make_sim, staff
from web_rig import client, csrf_of, sign_in  # noqa: F401  (client is a fixture)

from bot.data import sends as sends_data
from bot.domain import alerts, feed
from bot.domain.alerts import Draft
from bot.domain.feed import CapArea, CapMessage
from bot.web import auth
from bot.web.undelivered import scope_words

PASSWORD = "undelivered-pw"


@pytest.fixture
async def rig(tmp_path):
    rig = await make_sim(tmp_path, households=60, dashboard={"password": PASSWORD})
    yield rig
    await close_sim(rig)


async def login(client, username="admin", password=PASSWORD):
    return await sign_in(client, username, password)


def dead_send(rig, *, state="dead", error="errcode 60020: not allow to access from your ip", alert_id=None) -> int:
    """A send the outbox gave up on, as the worker records it."""
    sid = rig.app.outbox.enqueue(f"test-dead:{state}:{error}", "wecom_user", "someone", {"text": "暴雨预警"},
                                 alert_id=alert_id, purpose="direct")
    sends_data.record(rig.store, sid, state=state, attempts=5, error_code=60020, error=error,
                      next_at=None, sent_at=None)
    return sid


def cap(identifier: str, *, status="actual", area="火星基地") -> CapMessage:
    return CapMessage(identifier=identifier, sender="gd-weather", sent="2024-06-01T08:00:00+08:00",
                      sent_at=None, status=status, msg_type="alert", type="暴雨", colour="orange",
                      text="预计未来3小时有强降雨", areas=[CapArea(desc=area)])


async def test_dead_sends_are_listed_with_their_reason_and_can_be_retried(rig, client):
    alert_id = alerts.issue(rig.app, Draft(type="暴雨", colour="yellow", issuer_id=staff(rig.store)["id"]))
    sid = dead_send(rig, alert_id=alert_id)
    refused = dead_send(rig, state="failed", error="user not subscribed")
    csrf = await login(client)
    home = await (await client.get("/")).text()
    assert 'id="undelivered-note"' in home and "有 2 条消息没有发出去" in home
    html = await (await client.get("/undelivered")).text()
    assert f'data-send="{sid}"' in html and f'data-send="{refused}"' in html
    assert "not allow to access from your ip" in html and "user not subscribed" in html
    assert "多次重试后放弃" in html and "平台拒收" in html and f"/alerts/{alert_id}" in html
    resp = await client.post(f"/undelivered/sends/{sid}/retry", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/undelivered?done=retried"
    row = rig.store.q1("SELECT state, attempts FROM sends WHERE id=?", (sid,))
    assert row == {"state": "pending", "attempts": 0}
    assert rig.store.scalar("SELECT COUNT(*) FROM events WHERE kind='send.retried' AND ref_id=?", (sid,)) == 1
    again = await client.post(f"/undelivered/sends/{sid}/retry", data={"csrf": csrf})
    assert again.status == 409 and "无需重发" in await again.text()
    assert (await client.post("/undelivered/sends/999999/retry", data={"csrf": csrf})).status == 404
    assert (await client.post(f"/undelivered/sends/{refused}/retry", data={})).status == 403  # no CSRF
    assert rig.store.scalar("SELECT state FROM sends WHERE id=?", (refused,)) == "failed"


async def test_cap_messages_not_relayed_are_listed_and_a_held_one_is_released(rig, client):
    held = feed.receive(rig.app, cap("held-1"))
    test_msg = feed.receive(rig.app, cap("test-1", status="test"))
    assert (held.outcome, test_msg.outcome) == ("held", "recorded")
    csrf = await login(client)
    html = await (await client.get("/undelivered")).text()
    assert f'data-cap="{held.cap_id}"' in html and f'data-cap="{test_msg.cap_id}"' in html
    assert "火星基地" in html and "待确认范围" in html and "仅记录（测试/草稿）" in html
    assert f'id="release-{held.cap_id}"' in html and f'id="release-{test_msg.cap_id}"' not in html
    grid = rig.store.q1("SELECT * FROM nodes WHERE kind='grid' ORDER BY id LIMIT 1")
    resp = await client.post(f"/undelivered/cap/{held.cap_id}/release",
                             data={"csrf": csrf, "scope": f" {grid['name']} "}, allow_redirects=False)
    assert resp.status == 303
    alert_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    alert = rig.store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))
    assert (alert["type"], alert["colour"]) == ("暴雨", "orange") and alert["scope"] == f"[{grid['id']}]"
    assert rig.store.q1("SELECT outcome FROM cap_messages WHERE id=?", (held.cap_id,))["outcome"] == "relayed"
    again = await client.post(f"/undelivered/cap/{held.cap_id}/release", data={"csrf": csrf, "scope": ""})
    assert again.status == 409 and "不在待确认状态" in await again.text()


async def test_release_to_an_unknown_place_is_refused_plainly(rig, client):
    held = feed.receive(rig.app, cap("held-2"))
    csrf = await login(client)
    resp = await client.post(f"/undelivered/cap/{held.cap_id}/release", data={"csrf": csrf, "scope": "第九十九网格"})
    assert resp.status == 400 and "找不到的地点" in await resp.text()
    assert rig.store.q1("SELECT outcome FROM cap_messages WHERE id=?", (held.cap_id,))["outcome"] == "held"
    assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 0


async def test_the_page_is_for_staff_only(rig, client):
    dead_send(rig)
    lead = rig.store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes n "
                        "ON n.id=l.node_id WHERE n.kind='building' AND l.rank=0 ORDER BY n.id LIMIT 1")
    auth.create_user(rig.store, "lead", "lead-pw", resident_id=lead["id"])
    csrf = await login(client, "lead", "lead-pw")
    assert (await client.get("/undelivered")).status == 403
    sid = rig.store.scalar("SELECT id FROM sends WHERE state='dead'")
    assert (await client.post(f"/undelivered/sends/{sid}/retry", data={"csrf": csrf})).status == 403
    assert rig.store.scalar("SELECT state FROM sends WHERE id=?", (sid,)) == "dead"
    assert "未发出" not in await (await client.get("/")).text()  # no nav entry either


async def test_nothing_undelivered_says_so(rig, client):
    await login(client)
    html = await (await client.get("/undelivered")).text()
    assert 'id="no-dead-sends"' in html and 'id="no-caps"' in html


def test_scope_words_split_on_any_separator():
    assert scope_words("第一网格、大龙一区, 3栋；第二网格  ") == ["第一网格", "大龙一区", "3栋", "第二网格"]
    assert scope_words("   ") == []


TWO_COMMUNITIES = """社区,网格,小区,楼栋,单元,房号,姓名,电话,角色,困难类别,联系社工,企业微信ID,公众号OpenID
大龙社区,,,,,,段俊,13639289911,社区工作人员,,,staffA,
星光社区,,,,,,林书,13639289912,社区工作人员,,,staffB,
大龙社区,第一网格,大龙一区,1栋,1单元,101,王一,13600000001,居民,,,,oaA1
星光社区,东网格,星光花园,1栋,1单元,101,李一,13600000003,居民,,,,oaB1
"""


async def test_staff_of_one_community_see_and_release_within_theirs(tmp_path):
    from bot.data import people as people_db

    reg = tmp_path / "two.csv"
    reg.write_text(TWO_COMMUNITIES, encoding="utf-8")
    rig = await make_sim(tmp_path, register=reg, groups=None, dashboard={"password": PASSWORD})
    client = TestClient(rig.server)
    await client.start_server()
    try:
        staff_b = people_db.by_account(rig.store, "wecom", "staffB")
        auth.create_user(rig.store, "linshu", "pw-b", resident_id=staff_b["id"])
        dalong = alerts.issue(rig.app, Draft(type="暴雨", colour="yellow",
                                             scope=alerts.resolve_scope(rig.store, ["大龙社区"])))
        xingguang = alerts.issue(rig.app, Draft(type="暴雨", colour="yellow",
                                                scope=alerts.resolve_scope(rig.store, ["星光社区"])))
        theirs, mine = dead_send(rig, alert_id=dalong), dead_send(rig, alert_id=xingguang, error="other")
        held = feed.receive(rig.app, cap("held-b"))
        csrf = await login(client, "linshu", "pw-b")
        html = await (await client.get("/undelivered")).text()
        assert f'data-send="{mine}"' in html and f'data-send="{theirs}"' not in html
        assert (await client.post(f"/undelivered/sends/{theirs}/retry", data={"csrf": csrf})).status == 404
        assert rig.store.scalar("SELECT state FROM sends WHERE id=?", (theirs,)) == "dead"
        resp = await client.post(f"/undelivered/cap/{held.cap_id}/release", data={"csrf": csrf, "scope": "大龙一区"})
        assert resp.status == 403  # another community's place
        resp = await client.post(f"/undelivered/cap/{held.cap_id}/release", data={"csrf": csrf, "scope": ""},
                                 allow_redirects=False)
        assert resp.status == 303  # empty: their whole community, not every community
        alert_id = int(resp.headers["Location"].rsplit("/", 1)[1])
        assert sorted(r["building_id"] for r in rig.store.q("SELECT building_id FROM alert_scope WHERE alert_id=?",
                                                            (alert_id,))) == \
            sorted(alerts.scope_buildings(rig.store, alerts.resolve_scope(rig.store, ["星光社区"])))
    finally:
        await client.close()
        await close_sim(rig)
