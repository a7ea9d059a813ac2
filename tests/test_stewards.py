"""The household level below the building (党员中心户 / 红管家, issue #14 part 3): the register's
owner, area and steward columns; the relay's last hop and the silent households' lists through
stewards when settings.relay.stewards is on; a steward's 代确认 for exactly their households."""
from __future__ import annotations

import pytest
from chat_rig import say
from sim_rig import close_sim, make_sim, run_until, staff
from test_roster import write_csv

from bot.data.store import Store
from bot.domain import alerts, escalation, relay
from bot.domain.alerts import Draft
from bot.domain.register import STEWARD_MAX_HOUSEHOLDS, BadRowsError, import_register
from bot.world.dalong import generate
from bot.world.register_file import RegisterFile

HEAD = ["社区", "网格", "小区", "楼栋", "单元", "房号", "姓名", "电话", "角色", "困难类别", "联系社工",
        "企业微信ID", "公众号OpenID", "产权人", "建筑面积", "党员中心户"]


def row(building, room, name, *, phone="", roles="居民", wecom="", openid="", owner="", area="", steward="",
        unit=""):
    return ["大龙社区", "第一网格", "一区", building, unit, room, name, phone, roles, "", "", wecom, openid,
            owner, area, steward]


STAFF = ["大龙社区", "", "", "", "", "", "陈书记", "13800000001", "社区工作人员", "", "", "staff1", "", "", "", ""]
# 1栋: 101-103 looked after by 101's 张党员 (named by room), 201-202 by 202's 刘红 (by phone), 301 and
# the lead's 401 by nobody. 2栋 has no group: 501 looked after by 赵中心户 (by name), 502 by nobody.
ROWS = [
    STAFF,
    row("1栋", "101", "张党员", roles="居民、党员、党员中心户", openid="oZhang", owner="是", area="89",
        steward="101"),
    row("1栋", "101", "张小", openid="oZhangXiao", area="89", steward="101"),
    row("1栋", "102", "李甲", openid="oLi", owner="1", area="76.5", steward="101"),
    row("1栋", "103", "王乙", owner="Y", area="120㎡", steward="101"),  # no WeChat
    row("1栋", "201", "孙丙", openid="oSun", owner="否", area="60", steward="13900000002"),
    row("1栋", "202", "刘红", phone="13900000002", roles="红管家", openid="oLiu", owner="是", area="95",
        steward="13900000002"),
    row("1栋", "301", "周丁", openid="oZhou", owner="是", area="100"),
    row("1栋", "401", "吴楼长", roles="楼长、党员", wecom="lead1", owner="是", area="110"),
    row("2栋", "501", "赵中心户", roles="居民、党员", openid="oZhao", owner="是", area="70", steward="赵中心户"),
    row("2栋", "502", "钱戊", openid="oQian", owner="是", area="72"),
]
GROUP_HEAD = ["社区", "网格", "小区", "楼栋", "群名", "类型", "群ID", "群主"]
GROUPS = [["大龙社区", "第一网格", "一区", "1栋", "一区1栋居民群", "个人微信群", "", "吴楼长"]]


@pytest.fixture
def files(tmp_path):
    return write_csv(tmp_path / "r.csv", HEAD, ROWS), write_csv(tmp_path / "g.csv", GROUP_HEAD, GROUPS)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "t.db")
    yield s
    s.close()


def households(store) -> dict[str, dict]:
    return {h["room"]: h for h in store.q(
        "SELECT h.*, s.name AS steward FROM households h LEFT JOIN residents s ON s.id = h.steward_id")}


# -- the register's columns ---------------------------------------------------------------------
def test_owner_area_and_steward_columns_are_imported(store, files):
    report = import_register(store, files[0], groups_path=files[1])
    hh = households(store)
    assert {r: h["steward"] for r, h in hh.items()} == {
        "101": "张党员", "102": "张党员", "103": "张党员", "201": "刘红", "202": "刘红", "301": None,
        "401": None, "501": "赵中心户", "502": None}
    assert (hh["102"]["area_m2"], hh["103"]["area_m2"]) == (76.5, 120.0)
    owners = {r["name"] for r in store.q("SELECT name FROM residents WHERE owner=1")}
    assert owners == {"张党员", "李甲", "王乙", "刘红", "周丁", "吴楼长", "赵中心户", "钱戊"}
    assert report.stewarded == 6 and report.stewards_overloaded == []
    assert store.scalar("SELECT roles FROM residents WHERE name='刘红'") == "steward"


def test_reimport_keeps_ids_and_follows_a_changed_steward(store, files, tmp_path):
    import_register(store, files[0], groups_path=files[1])
    before = {r["key"]: r["id"] for r in store.q("SELECT id, key FROM residents")}
    hh_before = {h["room"]: h["id"] for h in store.q("SELECT id, room FROM households")}
    rows = [list(r) for r in ROWS]
    rows[7][15] = "101 张党员"  # 301 now looked after by 张党员, named by room and name
    rows[3][14] = "80"          # 102's area corrected
    report = import_register(store, write_csv(tmp_path / "r2.csv", HEAD, rows), groups_path=files[1])
    assert {r["key"]: r["id"] for r in store.q("SELECT id, key FROM residents")} == before
    hh = households(store)
    assert {r: h["id"] for r, h in hh.items()} == hh_before
    assert hh["301"]["steward"] == "张党员" and hh["102"]["area_m2"] == 80.0
    assert report.added == 0 and report.inactivated == 0


@pytest.mark.parametrize("change, column, words", [
    ((3, 14, "七十平"), "建筑面积", "不是有效的建筑面积"),
    ((2, 14, "90"), "建筑面积", "同一户的建筑面积前后不一致"),
    ((4, 15, "909"), "党员中心户", "找不到中心户“909”"),
    ((4, 15, "李四"), "党员中心户", "找不到中心户"),
    ((3, 13, "也许"), "产权人", "无法识别的产权人标记“也许”"),
    ((0, 15, "101"), "党员中心户", "只能填在有房号的行上"),
])
def test_bad_values_are_chinese_row_errors(store, tmp_path, change, column, words):
    rows = [list(r) for r in ROWS]
    i, j, value = change
    rows[i][j] = value
    with pytest.raises(BadRowsError) as e:
        import_register(store, write_csv(tmp_path / "bad.csv", HEAD, rows))
    (bad,) = e.value.report.bad
    assert bad.column == column and words in str(bad), str(bad)
    assert store.scalar("SELECT COUNT(*) FROM residents") == 0  # nothing written


def test_an_ambiguous_steward_is_an_error(store, tmp_path):
    rows = [list(r) for r in ROWS]
    rows.append(row("1栋", "101", "张党员", unit="2单元", openid="oZhang2"))  # a second 101 in 1栋
    rows[4][15] = "101"
    with pytest.raises(BadRowsError) as e:
        import_register(store, write_csv(tmp_path / "amb.csv", HEAD, rows))
    assert any("能对应到名册中的多个人" in str(b) for b in e.value.report.bad)


def test_a_steward_of_too_many_households_is_a_warning(store, tmp_path):
    rows = [STAFF] + [row("3栋", f"{100 + k}", f"住户{k}", openid=f"o{k}", steward="100")
                      for k in range(STEWARD_MAX_HOUSEHOLDS + 2)]
    report = import_register(store, write_csv(tmp_path / "many.csv", HEAD, rows))
    assert report.committed
    (over,) = report.stewards_overloaded
    assert over["name"] == "住户0" and over["households"] == STEWARD_MAX_HOUSEHOLDS + 2


def test_a_register_without_the_new_columns_still_imports(store, tmp_path):
    rows = [r[:13] for r in ROWS]
    report = import_register(store, write_csv(tmp_path / "old.csv", HEAD[:13], rows))
    assert report.committed and report.stewarded == 0
    assert store.scalar("SELECT COUNT(*) FROM households WHERE steward_id IS NOT NULL OR area_m2 IS NOT NULL") == 0


def test_the_dalong_register_has_owners_areas_stewards_and_volunteers(tmp_path, store):
    info = generate(tmp_path / "d.csv", households=300, seed=7)
    report = import_register(store, tmp_path / "d.csv", groups_path=info["groups_file"])
    assert report.bad_count == 0 and report.stewards_overloaded == []
    assert store.scalar("SELECT COUNT(*) FROM households WHERE steward_id IS NULL") == 0
    per_building = store.q("SELECT building_id, COUNT(*) n, COUNT(DISTINCT steward_id) s FROM households "
                           "GROUP BY building_id")
    assert per_building and min(r["n"] / r["s"] for r in per_building) >= 5
    assert max(r["n"] / r["s"] for r in per_building) <= STEWARD_MAX_HOUSEHOLDS
    area = store.q1("SELECT MIN(area_m2) lo, MAX(area_m2) hi FROM households")
    assert 55 <= area["lo"] and area["hi"] <= 140
    owned = store.scalar("SELECT COUNT(DISTINCT household_id) FROM residents WHERE owner=1")
    assert 0.7 * 300 <= owned < 300
    assert store.scalar("SELECT COUNT(*) FROM residents WHERE roles LIKE '%volunteer%'") > 0
    # the world reads the same column: each steward account knows their households
    rf = RegisterFile.load(tmp_path / "d.csv", info["groups_file"])
    world = rf.stewards()
    assert sum(map(len, world.values())) == 300
    linli = {r["oa_openid"] or r["wecom_userid"]: r["n"] for r in store.q(
        "SELECT s.oa_openid, s.wecom_userid, COUNT(*) n FROM households h JOIN residents s ON s.id=h.steward_id "
        "GROUP BY s.id")}
    assert {k: len(v) for k, v in world.items()} == linli


# -- the relay through stewards ----------------------------------------------------------------
async def rig(tmp_path, files, stewards: bool, **sections):
    return await make_sim(tmp_path, register=files[0], groups=files[1], relay={"stewards": stewards}, **sections)


def person(store, name):
    return store.q1("SELECT * FROM residents WHERE name=?", (name,))


def room_ids(store, *rooms):
    return {store.scalar("SELECT id FROM households WHERE room=?", (r,)) for r in rooms}


def delivered(store, alert_id):
    return {r["household_id"] for r in store.q("SELECT household_id FROM deliveries WHERE alert_id=?", (alert_id,))}


def texts_to(sim, uid):
    return [d.text for d in sim.world.state.messages_for(uid)]


async def test_stewards_off_changes_nothing(tmp_path, files):
    sim = await rig(tmp_path, files, stewards=False)
    try:
        store = sim.store
        alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="blue", issuer_id=staff(store)["id"]))
        await sim.app.settle()
        hops = store.q("SELECT * FROM hops WHERE alert_id=? ORDER BY id", (alert_id,))
        assert [(h["method"], h["group_id"] is None) for h in hops] == [("ask_lead", False), ("direct", True)]
        assert not any(relay.is_steward_hop(h) for h in hops)
        assert not any("转告您联系的" in t for t in texts_to(sim, "oZhang"))
        # 2栋 has no group: every household there gets the direct message
        assert room_ids(store, "501", "502") <= delivered(store, alert_id)
    finally:
        await close_sim(sim)


async def test_steward_is_asked_and_their_forward_delivers_exactly_their_households(tmp_path, files):
    sim = await rig(tmp_path, files, stewards=True)
    try:
        store = sim.store
        alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="blue", issuer_id=staff(store)["id"]))
        await sim.app.settle()
        hops = store.q("SELECT * FROM hops WHERE alert_id=? ORDER BY id", (alert_id,))
        stewards = {h["lead_id"] for h in hops if relay.is_steward_hop(h)}
        assert stewards == {person(store, n)["id"] for n in ("张党员", "刘红", "赵中心户")}
        ask = [t for t in texts_to(sim, "oZhang") if "转告您联系的" in t]
        assert len(ask) == 1 and "3 户邻居" in ask[0] and "102（李甲）" in ask[0] and "103（王乙）" in ask[0]
        assert "暴雨蓝色预警" in ask[0]
        # 2栋 (no group): the direct hop reaches only 502, the household no steward looks after; an
        # ask carries the warning, so the asked people's own households (101, 202, 401, 501) have it
        asked = room_ids(store, "101", "202", "401", "501")
        assert delivered(store, alert_id) == room_ids(store, "502") | asked
        reply = await say(sim, person(store, "张党员"), "已转发")
        assert "您联系的 3 户邻居已转告" in reply
        assert delivered(store, alert_id) == room_ids(store, "101", "102", "103", "502") | asked
        hop = store.q1("SELECT * FROM hops WHERE alert_id=? AND lead_id=? AND group_id IS NULL",
                       (alert_id, person(store, "张党员")["id"]))
        assert hop["state"] == "forwarded" and hop["done_by"] == person(store, "张党员")["id"]
    finally:
        await close_sim(sim)


async def test_a_steward_past_the_deadline_sends_their_households_direct(tmp_path, files):
    sim = await rig(tmp_path, files, stewards=True)
    try:
        store, clock = sim.store, sim.clock
        alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="blue", issuer_id=staff(store)["id"]))
        await sim.app.settle()
        await say(sim, person(store, "张党员"), "已转发")
        clock.advance(sim.settings.relay.steward_deadline_min * 60 + 1)
        await escalation.run_due(sim.app)
        await sim.app.settle()
        liu = store.q1("SELECT * FROM hops WHERE alert_id=? AND lead_id=? AND group_id IS NULL",
                       (alert_id, person(store, "刘红")["id"]))
        assert (liu["state"], liu["escalation_level"]) == ("escalated", relay.LAST_LEVEL)
        direct = store.q("SELECT target FROM sends WHERE key LIKE ?", (f"hop:{liu['id']}:direct%",))
        assert {d["target"] for d in direct} == {"oSun", "oLiu"}
        assert room_ids(store, "201", "202") <= delivered(store, alert_id)
        # the building's own hop ran out too (no backup, no grid lead): its direct messages are for
        # the households no steward looks after, 301 and 401 only
        building = store.q1("SELECT * FROM hops WHERE alert_id=? AND group_id IS NOT NULL", (alert_id,))
        assert building["state"] == "escalated"
        targets = {d["target"] for d in store.q("SELECT target FROM sends WHERE key LIKE ?",
                                                 (f"hop:{building['id']}:direct%",))}
        assert targets == {"oZhou", "lead1"}
    finally:
        await close_sim(sim)


async def test_reminders_split_between_stewards_and_the_lead(tmp_path, files):
    sim = await rig(tmp_path, files, stewards=True)
    try:
        store = sim.store
        alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="blue", issuer_id=staff(store)["id"]))
        await sim.app.settle()
        await say(sim, person(store, "李甲"), "收到")  # 102 answered
        escalation.remind(sim.app, store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,)))
        await sim.app.settle()
        zhang = [t for t in texts_to(sim, "oZhang") if "没有确认收到" in t]
        assert len(zhang) == 1 and "还有 2 户没有确认收到" in zhang[0]
        assert "一区1栋101" in zhang[0] and "一区1栋103" in zhang[0] and "102" not in zhang[0]
        lead = [t for t in texts_to(sim, "lead1") if "没有确认收到" in t]
        assert len(lead) == 1 and "一区1栋301、一区1栋401" in lead[0] and "101" not in lead[0]
        assert any("没有确认收到" in t for t in texts_to(sim, "oLiu"))
    finally:
        await close_sim(sim)


async def test_a_steward_confirms_for_their_household_only(tmp_path, files):
    sim = await rig(tmp_path, files, stewards=True)
    try:
        store = sim.store
        alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="blue", issuer_id=staff(store)["id"]))
        await sim.app.settle()
        zhang = person(store, "张党员")
        reply = await say(sim, zhang, "代确认 103")
        assert "已为 一区1栋103 代确认收到" in reply
        ack = store.q1("SELECT * FROM acks WHERE alert_id=? AND household_id=?", (alert_id, *room_ids(store, "103")))
        assert ack["by_proxy_id"] == zhang["id"] and ack["channel"] == "proxy"
        refused = await say(sim, zhang, "代确认 301")
        assert "不是您联系的住户" in refused
        assert store.scalar("SELECT COUNT(*) FROM acks WHERE household_id IN (SELECT id FROM households "
                            "WHERE room='301')") == 0
        # a plain resident who looks after nobody has no such power
        other = await say(sim, person(store, "周丁"), "代确认 103")
        assert "已为" not in other
        assert store.scalar("SELECT COUNT(*) FROM acks WHERE by_proxy_id=?", (person(store, "周丁")["id"],)) == 0
    finally:
        await close_sim(sim)


async def test_the_world_steward_forwards_like_a_lead(tmp_path, files):
    sim = await rig(tmp_path, files, stewards=True,
                    world={"lead_forward_probability": 1.0, "lead_delay_s": [30, 60]})
    try:
        store = sim.store
        people = sim.world.people
        alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="blue", issuer_id=staff(store)["id"]))
        await run_until(sim.app, sim.world, sim.clock.now() + 5 * 60)
        forwards = [f for f in people.truth["forwards"] if f[1] == "steward"]
        assert forwards, people.truth["forwards"]
        # the steward's neighbours on WeChat got the warning from them
        assert any("暴雨蓝色预警" in d.text and d.via == "steward" for d in sim.world.state.messages_for("oLi"))
        assert room_ids(store, "101", "102", "103") <= delivered(store, alert_id)
    finally:
        await close_sim(sim)


def test_stewards_of_a_building_for_the_demo(store, files):
    import_register(store, files[0], groups_path=files[1])
    building = store.scalar("SELECT id FROM nodes WHERE name='1栋'")
    deps = type("D", (), {"store": store})()
    out = relay.stewards_of_building(deps, building)
    assert [(s["name"], [h["room"] for h in s["households"]]) for s in out] == [
        ("张党员", ["101", "102", "103"]), ("刘红", ["201", "202"])]
    assert out[0]["households"][0]["names"] == "张党员、张小"



async def test_a_vulnerable_only_warning_stays_direct(tmp_path, files):
    rows = [list(r) for r in ROWS]
    rows[4][9] = "独居老人"  # 王乙 in 103, looked after by 张党员
    rows[0] = STAFF
    rows.append(["大龙社区", "", "", "", "", "", "李社工", "", "社工", "", "", "sw1", "", "", "", ""])
    rows[4][10] = "李社工"
    reg = write_csv(tmp_path / "v.csv", HEAD, rows)
    sim = await make_sim(tmp_path, register=reg, groups=files[1], relay={"stewards": True})
    try:
        store = sim.store
        alert_id = alerts.issue(sim.app, Draft(type="高温", colour="yellow", issuer_id=staff(store)["id"],
                                               audience=["*"]))
        await sim.app.settle()
        hops = store.q("SELECT * FROM hops WHERE alert_id=?", (alert_id,))
        assert [h["method"] for h in hops] == ["direct"]
        assert not any(relay.is_steward_hop(h) for h in hops)
    finally:
        await close_sim(sim)


def test_skip_bad_drops_a_steward_whose_own_row_is_bad(store, tmp_path):
    rows = [list(r) for r in ROWS]
    rows[6][7] = "12345"  # 刘红's phone is bad: her row is skipped, and 201/202 have no steward
    rows[5][15] = "202 刘红"
    rows[6][15] = "202 刘红"
    report = import_register(store, write_csv(tmp_path / "s.csv", HEAD, rows), skip_bad=True)
    assert report.committed and report.bad_count == 2  # her row, and 201's row naming her
    assert "找不到中心户“202 刘红”" in str(report.bad[1])
    hh = households(store)
    assert "201" not in hh and "202" not in hh and hh["101"]["steward"] == "张党员"


async def test_the_dalong_world_with_stewards_on(tmp_path):
    sim = await make_sim(tmp_path, households=60, seed=11, relay={"stewards": True})
    try:
        store = sim.store
        alert_id = alerts.issue(sim.app, Draft(type="暴雨", colour="yellow", issuer_id=staff(store)["id"]))
        await run_until(sim.app, sim.world, sim.clock.now() + 40 * 60)
        steward_hops = [h for h in store.q("SELECT * FROM hops WHERE alert_id=?", (alert_id,))
                        if relay.is_steward_hop(h)]
        assert len(steward_hops) == store.scalar("SELECT COUNT(DISTINCT steward_id) FROM households")
        states = {h["state"] for h in steward_hops}
        assert "forwarded" in states and states <= {"forwarded", "escalated"}
        # every household of the community was reached one way or another
        assert len(delivered(store, alert_id)) == store.scalar("SELECT COUNT(*) FROM households")
        assert store.scalar("SELECT COUNT(*) FROM sends WHERE key LIKE 'stewardlist:%'") > 0
        assert store.scalar("SELECT COUNT(*) FROM sends WHERE state IN ('failed','dead')") == 0
    finally:
        await close_sim(sim)
