"""The composer (issues #11/#12/#13 item 6): 通知 with no colour, drills (演练), "vulnerable
households only" (all of them or chosen categories from the register), through the same
alerts.issue the chat uses; the preview says what was chosen in words ("第一网格", not every
building under it). Staff of one community in a register of several pick within theirs."""
from __future__ import annotations

import json
import re

import pytest
from aiohttp.test_utils import TestClient
from sim_rig import close_sim, make_sim
from web_rig import client, csrf_of, sign_in  # noqa: F401  (client is a fixture)

from bot.data import alerts as alert_rows
from bot.data import people as people_db
from bot.domain import alerts, areas
from bot.web import auth
from bot.web.composer import categories, default_text, scope_names, scope_tree
from bot.web.render import natural_key

PASSWORD = "composer-pw"


@pytest.fixture
async def rig(tmp_path):
    rig = await make_sim(tmp_path, households=120, seed=3, dashboard={"password": PASSWORD})
    yield rig
    await close_sim(rig)


async def login(client, username="admin", password=PASSWORD):
    return await sign_in(client, username, password)


def subtree_ids(store, node_id: int) -> list[int]:
    """What compose.js sends when a grid is ticked: the grid and everything under it."""
    path = store.q1("SELECT path FROM nodes WHERE id=?", (node_id,))["path"]
    return [r["id"] for r in store.q("SELECT id FROM nodes WHERE id=? OR path LIKE ?", (node_id, path + "/%"))]


def preview_field(html: str, field: str) -> str:
    return re.sub(r"<[^>]+>", "", re.search(rf'id="preview-{field}">(.*?)</dd>', html, re.S).group(1)).strip()


async def test_a_grid_ticked_with_everything_under_it_previews_as_its_name(rig, client):
    grid = rig.store.q1("SELECT * FROM nodes WHERE kind='grid' ORDER BY id LIMIT 1")
    ticked = subtree_ids(rig.store, grid["id"])
    assert len(ticked) >= 3
    csrf = await login(client)
    html = await (await client.post("/alerts/new", data=[("csrf", csrf), ("type", "暴雨"), ("colour", "yellow"),
                                                          ("step", "preview")] + [("scope", str(i)) for i in ticked])).text()
    assert preview_field(html, "scope") == grid["name"]
    buildings = alerts.scope_buildings(rig.store, [grid["id"]])
    assert f'id="preview-buildings">{len(buildings)}<' in html
    assert html.count('name="scope"') == len(ticked)  # the confirm step still sends what was ticked


def test_scope_names_keep_a_buildings_compound_and_sort_naturally(rig):
    store = rig.store
    b1, b2 = store.q("SELECT * FROM nodes WHERE kind='building' ORDER BY id DESC LIMIT 2")
    c1, c2 = (store.q1("SELECT * FROM nodes WHERE id=?", (b["parent_id"],)) for b in (b1, b2))
    names = scope_names(store, [b1["id"], b2["id"]])
    assert set(names) == {f"{c1['name']} {b1['name']}", f"{c2['name']} {b2['name']}"}
    assert names == [f"{c['name']} {b['name']}" for b, c in sorted(((b1, c1), (b2, c2)),
                                                                    key=lambda bc: natural_key(bc[0]["path"]))]
    # a compound with one of its buildings: just the compound
    assert scope_names(store, [b1["id"], c1["id"]]) == [c1["name"]]
    assert scope_names(store, [999_999]) == []


def test_natural_key_orders_buildings_like_people_do():
    assert sorted(["10栋", "2栋", "1栋", "大龙一区/11栋", "大龙一区/9栋"], key=natural_key) == [
        "1栋", "2栋", "10栋", "大龙一区/9栋", "大龙一区/11栋"]
    assert natural_key(None) == ()
    assert sorted(["第三网格", "第十网格", "第二网格", "第一网格", "第十一网格"], key=natural_key) == [
        "第一网格", "第二网格", "第三网格", "第十网格", "第十一网格"]
    assert sorted(["大龙二区", "大龙一区", "大龙十区"], key=natural_key) == ["大龙一区", "大龙二区", "大龙十区"]
    assert natural_key("一百零五号") < natural_key("一百一十号")


async def test_a_notice_has_no_colour_and_goes_through_alerts_issue(rig, client):
    csrf = await login(client)
    form = await (await client.get("/alerts/new")).text()
    assert 'value="通知"' in form and 'data-notice="通知"' in form
    grid = rig.store.q1("SELECT * FROM nodes WHERE kind='grid' ORDER BY id LIMIT 1")
    data = {"csrf": csrf, "type": "通知", "scope": str(grid["id"]), "text": "周六上午停水检修"}
    html = await (await client.post("/alerts/new", data={**data, "step": "preview"})).text()
    assert preview_field(html, "type") == "通知（不是预警）"
    message = re.search(r'id="preview-message">(.*?)</pre>', html, re.S).group(1)
    assert "周六上午停水检修" in message and "预警" not in message and "黄色" not in message
    resp = await client.post("/alerts/new", data={**data, "step": "confirm"}, allow_redirects=False)
    assert resp.status == 303
    alert = rig.store.q1("SELECT * FROM alerts")
    assert (alert["kind"], alert["type"], alert["poll"]) == ("notice", "通知", 0)
    text = (await (await client.get("/alerts/new/text?type=通知")).json())["text"]
    assert text == default_text(rig.store, "通知", "blue") and "预警" not in text


async def test_a_drill_is_marked_in_the_preview_the_message_and_the_alert_list(rig, client):
    csrf = await login(client)
    grid = rig.store.q1("SELECT * FROM nodes WHERE kind='grid' ORDER BY id LIMIT 1")
    data = {"csrf": csrf, "type": "台风", "colour": "orange", "scope": str(grid["id"]), "drill": "1"}
    html = await (await client.post("/alerts/new", data={**data, "step": "preview"})).text()
    assert "演练" in preview_field(html, "drill") and "【演练】" in html
    assert 'name="drill" value="1"' in html  # carried to the confirm step
    await client.post("/alerts/new", data={**data, "step": "confirm"})
    alert = rig.store.q1("SELECT * FROM alerts")
    assert alert["status"] == "exercise"
    home = await (await client.get("/")).text()
    row = re.search(rf'data-alert="{alert["id"]}">(.*?)</tr>', home, re.S).group(1)
    assert '<span class="tag drill">演练</span>' in row


async def test_vulnerable_households_only_all_or_chosen_categories(rig, client):
    cats = categories(rig.store)
    assert cats and all("、" not in c for c in cats)
    csrf = await login(client)
    form = await (await client.get("/alerts/new")).text()
    for c in cats:
        assert f'name="category" value="{c}"' in form
    community = rig.store.q1("SELECT * FROM nodes WHERE kind='community'")
    everyone = alert_rows.vulnerable_households(rig.store, alerts.scope_buildings(rig.store, [community["id"]]), ["*"])
    data = {"csrf": csrf, "type": "高温", "colour": "orange", "scope": str(community["id"]), "audience": "vulnerable"}
    html = await (await client.post("/alerts/new", data={**data, "step": "preview"})).text()
    assert preview_field(html, "audience") == "只发困难群众家庭（全部类别）"
    assert f'id="preview-households">{len(everyone)}<' in html
    one = cats[0]
    chosen = alert_rows.vulnerable_households(rig.store, alerts.scope_buildings(rig.store, [community["id"]]), [one])
    html = await (await client.post("/alerts/new", data={**data, "category": one, "step": "preview"})).text()
    assert preview_field(html, "audience") == f"只发困难群众家庭：{one}"
    assert f'id="preview-households">{len(chosen)}<' in html
    resp = await client.post("/alerts/new", data={**data, "category": one, "step": "confirm"}, allow_redirects=False)
    assert resp.status == 303
    alert = rig.store.q1("SELECT * FROM alerts")
    assert json.loads(alert["audience"]) == [one]
    assert alert_rows.targets(rig.store, alert["id"]) == set(chosen)


async def test_vulnerable_only_with_nobody_in_scope_is_refused(rig, client):
    csrf = await login(client)
    quiet = next(b for b in rig.store.q("SELECT id FROM nodes WHERE kind='building' ORDER BY id")
                 if not alert_rows.vulnerable_households(rig.store, [b["id"]], ["*"]))
    resp = await client.post("/alerts/new", data={"csrf": csrf, "type": "高温", "colour": "orange", "step": "confirm",
                                                  "scope": str(quiet["id"]), "audience": "vulnerable"})
    assert resp.status == 400 and "没有这些类别的困难群众" in await resp.text()
    assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 0


async def test_bad_composer_input_is_refused_with_a_reason(rig, client):
    csrf = await login(client)
    grid = rig.store.q1("SELECT id FROM nodes WHERE kind='grid' LIMIT 1")["id"]
    for data, words in (({"type": "高温", "colour": "blue"}, "没有所选的颜色"),
                        ({"type": "沙尘", "colour": "red"}, "预警类型不正确"),
                        ({"type": "暴雨", "colour": "purple"}, "预警颜色不正确")):
        resp = await client.post("/alerts/new", data={"csrf": csrf, "scope": str(grid), "step": "confirm", **data})
        assert resp.status == 400 and words in await resp.text(), data
    resp = await client.post("/alerts/new", data={"csrf": csrf, "type": "暴雨", "colour": "red", "scope": "abc",
                                                  "step": "preview"})
    assert resp.status == 400 and "请至少选择一个" in await resp.text()
    assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 0


TWO_COMMUNITIES = """社区,网格,小区,楼栋,单元,房号,姓名,电话,角色,困难类别,联系社工,企业微信ID,公众号OpenID
大龙社区,,,,,,段俊,13639289911,社区工作人员,,,staffA,
星光社区,,,,,,林书,13639289912,社区工作人员,,,staffB,
大龙社区,第一网格,大龙一区,1栋,1单元,101,王一,13600000001,居民,独居老人,,,oaA1
大龙社区,第一网格,大龙一区,2栋,1单元,102,王二,13600000002,楼长,,,userA2,
星光社区,东网格,星光花园,1栋,1单元,101,李一,13600000003,居民,,,,oaB1
星光社区,东网格,星光花园,1栋,1单元,102,李二,13600000004,楼长,,,userB2,
"""


@pytest.fixture
async def two(tmp_path):
    reg = tmp_path / "two.csv"
    reg.write_text(TWO_COMMUNITIES, encoding="utf-8")
    rig = await make_sim(tmp_path, register=reg, groups=None, dashboard={"password": PASSWORD})
    client = TestClient(rig.server)
    await client.start_server()
    yield rig, client
    await client.close()
    await close_sim(rig)


async def test_staff_of_one_community_compose_and_see_only_theirs(two):
    rig, client = two
    staff_b = people_db.by_account(rig.store, "wecom", "staffB")
    auth.create_user(rig.store, "linshu", "pw-b", resident_id=staff_b["id"])
    mine = set(areas.buildings_of(rig.store, staff_b))
    assert {n["name"] for n in scope_tree(rig.store, frozenset(mine))} == {"星光社区", "东网格", "星光花园", "1栋"}
    dalong = alerts.issue(rig.app, alerts.Draft(type="暴雨", colour="yellow",
                                                scope=alerts.resolve_scope(rig.store, ["大龙社区"])))
    csrf = await login(client, "linshu", "pw-b")
    home = await (await client.get("/")).text()
    assert "仅看本社区" in home and f'data-alert="{dalong}"' not in home
    assert (await client.get(f"/alerts/{dalong}")).status in (403, 404)
    form = await (await client.get("/alerts/new")).text()
    assert "星光花园" in form and "大龙一区" not in form
    other = rig.store.q1("SELECT id FROM nodes WHERE name='大龙一区'")["id"]
    resp = await client.post("/alerts/new", data={"csrf": csrf, "type": "暴雨", "colour": "yellow", "scope": str(other),
                                                  "step": "confirm"})
    assert resp.status == 403
    root = rig.store.q1("SELECT id FROM nodes WHERE name='星光社区'")["id"]
    resp = await client.post("/alerts/new", data={"csrf": csrf, "type": "暴雨", "colour": "yellow", "scope": str(root),
                                                  "step": "confirm"}, allow_redirects=False)
    assert resp.status == 303
    assert f'data-alert="{resp.headers["Location"].rsplit("/", 1)[1]}"' in await (await client.get("/")).text()
