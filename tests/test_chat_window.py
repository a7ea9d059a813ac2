"""The local world's chat window (bot/world/chat.py): its JSON endpoints through aiohttp's test
client, and one resident's whole exchange in headless Chromium — the warning arrives in their
private chat, they type "1", Linli records the ack through the real callback protocol and its
thank-you shows up on the page."""
from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from browser_rig import browser, publish, shot  # noqa: F401 (fixture)
from sim_rig import close_sim, make_sim, staff

from bot.domain import alerts
from bot.domain.alerts import Draft

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the browser fixture lives on that loop
PHONE = {"width": 390, "height": 780}


@pytest_asyncio.fixture(loop_scope="module")
async def rig(tmp_path):
    # nobody in the world acts on their own: everything said here is typed by the test
    r = await make_sim(tmp_path, households=12, seed=11,
                       world=dict(resident_reply_probability=0.0, lead_forward_probability=0.0))
    yield r
    await close_sim(r)


@pytest_asyncio.fixture(loop_scope="module")
async def client(rig):
    async with TestClient(TestServer(rig.world.platform_app())) as c:
        yield c


def a_resident(rig) -> dict:
    """A resident on the Official Account, whose building group is turned off in the register so
    that Linli messages them directly (a template notice with their household's ack link)."""
    row = next(r for uid, r in rig.world.people.person.items()
               if r["oa_openid"] == uid and r["roles"] == "resident")
    # the world names the household by label; Linli's side of the same household, by its row
    hh = rig.store.q1("SELECT * FROM households WHERE label=?", (row["label"],))
    rig.store.conn.execute("UPDATE chat_groups SET active=0 WHERE node_id=?", (hh["building_id"],))
    return dict(row, household_id=hh["id"])


async def issue_warning(rig) -> int:
    alert_id = alerts.issue(rig.app, Draft(type="雷雨大风", colour="yellow", issuer_id=staff(rig.store)["id"]))
    await rig.app.settle()
    return alert_id


def lead_of_group(rig):
    return next(g for g in rig.world.state.groups.values() if g.kind == "personal" and len(g.members) > 1)


async def test_people_search_and_shortcuts(client, rig):
    resident = next(r for r in rig.world.people.person.values() if r["oa_openid"])
    data = await (await client.get("/chat/api/people", params={"q": resident["label"]})).json()
    assert resident["oa_openid"] in {p["uid"] for p in data["people"]}
    assert all(resident["label"] in p["room"] for p in data["people"])
    assert set(data["shortcuts"]) >= {"resident", "building_lead", "social_worker", "staff"}
    assert data["shortcuts"]["resident"]["channel"] == "oa"
    assert (await client.get("/chat/api/chats", params={"person": "nobody"})).status == 404


async def test_chat_list_follows_group_membership(client, rig):
    g = lead_of_group(rig)
    chats = (await (await client.get("/chat/api/chats", params={"person": g.owner})).json())["chats"]
    ids = {c["id"]: c for c in chats}
    assert ids["bot"]["kind"] == "wecom"  # a building lead talks to the WeCom app
    assert g.chat_id in ids and ids[g.chat_id]["kind"] == "personal"
    assert any(c["kind"] == "robot" for c in chats)  # the compound's building-lead group
    member = next(m for m in sorted(g.members) if m != g.owner)
    mine = {c["id"] for c in (await (await client.get("/chat/api/chats", params={"person": member})).json())["chats"]}
    assert mine == {"bot"} | {c for c, grp in rig.world.state.groups.items() if member in grp.members}


async def test_typed_reply_reaches_linli_and_both_sides_show(client, rig):
    row = a_resident(rig)
    uid = row["oa_openid"]
    alert_id = await issue_warning(rig)
    q = {"person": uid, "chat": "bot"}
    first = (await (await client.get("/chat/api/messages", params=q)).json())["messages"]
    assert len(first) == 1 and "雷雨大风黄色预警" in first[0]["text"] and "/ack/" in first[0]["url"]

    r = await client.post("/chat/api/send", json={**q, "text": "1"})
    assert r.status == 200 and (await r.json())["ok"]
    await rig.app.settle()
    assert rig.store.q1("SELECT * FROM acks WHERE alert_id=? AND household_id=?",
                        (alert_id, row["household_id"]))["channel"] == "oa"
    later = (await (await client.get("/chat/api/messages", params={**q, "after": first[0]["seq"]})).json())
    assert [(m["own"], m["text"][:5]) for m in later["messages"]] == [(True, "1"), (False, "已确认收到")]
    assert rig.world.people.callbacks.posted[-1].status == 200  # signed, encrypted, accepted


async def test_group_post_is_a_human_post(client, rig):
    g = lead_of_group(rig)
    r = await client.post("/chat/api/send", json={"person": g.owner, "chat": g.chat_id, "text": "大家注意关窗"})
    assert r.status == 200
    d = rig.world.state.group_messages(g.chat_id)[-1]
    assert (d.via, d.sender, d.text) == ("human", g.owner, "大家注意关窗")
    member = next(m for m in sorted(g.members) if m != g.owner)
    seen = (await (await client.get("/chat/api/messages", params={"person": member, "chat": g.chat_id})).json())
    last = seen["messages"][-1]
    assert not last["own"] and last["name"] == rig.world.people.person[g.owner]["name"]


async def test_send_refuses_what_it_should(client, rig):
    g = lead_of_group(rig)
    outsider = next(uid for uid in rig.world.people.person if uid not in g.members and uid != g.owner)
    ok = {"person": g.owner, "chat": g.chat_id, "text": "hi"}
    assert (await client.post("/chat/api/send", data="person=x&chat=bot&text=1",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})).status == 415
    assert (await client.post("/chat/api/send", json={**ok, "person": "nobody"})).status == 404
    assert (await client.post("/chat/api/send", json={**ok, "person": outsider})).status == 404
    assert (await client.post("/chat/api/send", json={**ok, "text": "  "})).status == 400
    assert (await client.post("/chat/api/send", json={"person": g.owner})).status == 400


async def test_resident_acks_in_the_browser(rig, browser):  # noqa: F811 (fixture)
    row = a_resident(rig)
    uid, name = row["oa_openid"], row["name"]
    alert_id = await issue_warning(rig)
    notice = rig.world.state.messages_for(uid)[-1]

    context = await browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                                        timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    page = await context.new_page()
    try:
        await page.goto(f"{rig.world.url}/chat")
        await page.fill("#search", name)
        await page.locator(f'.person[data-uid="{uid}"]').click()
        await page.locator('.chat[data-chat="bot"]').click()
        card = page.locator(".card", has_text="雷雨大风黄色预警")
        await card.wait_for()
        assert await card.locator("a.more").get_attribute("href") == notice.url
        await page.locator("#quick button", has_text="收到").wait_for()  # the notice asks for a reply
        await page.fill("#text", "1")
        await page.click("#send")

        for _ in range(200):  # Linli handles the callback in the background
            ack = rig.store.q1("SELECT * FROM acks WHERE alert_id=? AND household_id=?",
                               (alert_id, row["household_id"]))
            if ack:
                break
            await asyncio.sleep(0.05)
        assert ack and ack["channel"] == "oa" and ack["raw"] == "1"
        await page.locator(".msg.own .bubble", has_text="1").wait_for()
        await page.locator(".msg:not(.own) .bubble", has_text="已确认收到").wait_for()
        assert await page.locator("#quick button").count() == 0  # answered: no more quick replies
        publish(await shot(page, "chat"), "chat.png")
    finally:
        await context.close()
