"""The requests domain: classification, filing, the lifecycle, visibility, reminders, report."""
from __future__ import annotations

import csv
import json

import openpyxl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from helpers_callbacks import NOW, make_app, make_settings
from request_world import build, events, person, sends, texts_to

from bot.core import texts
from bot.core.clock import FakeClock
from bot.domain import requests as R
from bot.domain.reports import monthly_report, write_requests_report
from bot.domain.requests.rules import classify, extract_place, is_pleasantry, is_unclear
from bot.web.requests_api import add_request_routes

H, D = 3600, 86400


@pytest.fixture
def app(tmp_path):
    return build(tmp_path)


def file(app, name="王小明", text="3栋2单元楼道灯坏了", **kw):
    return R.file_request(app, resident=person(app, name), text=text, **kw)


# -- reading the words ---------------------------------------------------------------------
@pytest.mark.parametrize("text, category, urgency", [
    ("收到！地下车库进水了", "water", "urgent"),
    ("3栋2单元楼道灯坏了", "electricity", "normal"),
    ("我家老人一个人在家，能不能来看看", "elderly", "normal"),
    ("楼下早餐店油烟太大", "noise", "normal"),
    ("5栋门口有人受伤了", "safety", "urgent"),
    ("小区里乱停车堵住消防通道", "parking", "normal"),
    ("想问问社区活动", "other", "normal"),
])
def test_classify(app, text, category, urgency):
    assert classify(text, app.settings) == (category, urgency)
    assert classify(text, app.settings.requests) == (category, urgency)


@pytest.mark.parametrize("text, place", [
    ("3栋2单元楼道灯坏了", "3栋2单元楼道"),
    ("5栋的电梯停了", "5栋"),
    ("收到，地下车库进水了", "地下车库"),
    ("一区502的奶奶一个人在家", "一区502"),
    ("一区3栋2单元502漏水", "一区3栋2单元502"),
    ("12号楼门口积水", "12号楼门口"),
    ("楼道里堆满杂物", "楼道"),
    ("有人在吗", ""),
])
def test_extract_place(text, place):
    assert extract_place(text) == place


@pytest.mark.parametrize("text, kind", [
    ("在吗", "unclear"), ("?", "unclear"), ("喂喂", "unclear"), ("您好！", "unclear"),
    ("谢谢！", "pleasantry"), ("好的", "pleasantry"), ("楼道灯坏了", "clear"),
])
def test_unclear_and_pleasantries(text, kind):
    # the chat handler asks "is it a pleasantry?" first, so those may also count as unclear
    found = "pleasantry" if is_pleasantry(text) else "unclear" if is_unclear(text) else "clear"
    assert found == kind


# -- filing --------------------------------------------------------------------------------
def test_file_request_records_and_tells_resident_and_building_lead(app):
    req = file(app)
    xm = person(app, "王小明")
    assert (req["state"], req["category"], req["urgency"], req["place"]) == (
        "filed", "electricity", "normal", "3栋2单元楼道")
    assert req["household_id"] == xm["household_id"]
    assert req["building_id"] == app.store.scalar("SELECT id FROM nodes WHERE name='3栋'")
    assert events(app, req["id"]) == ["request.file"]
    [receipt] = sends(app, "xm")
    assert receipt["channel"] == "wecom_user" and receipt["text"].startswith(f"已登记 #{req['id']}")
    [note] = texts_to(app, "lead3")
    assert "【新报事】" in note and f"接单 #{req['id']}" in note
    assert texts_to(app, "grid1") == []  # a normal request stays with the building for now


def test_receipt_goes_to_the_official_account_for_oa_residents(app):
    file(app, "刘阿姨", "楼道灯不亮")
    [receipt] = sends(app, "o-liu")
    # the channel is the outbound side's choice (deps.reach): a service notice, not a 48 h CS message
    assert (receipt["channel"], receipt["target"]) == app.reach.person(person(app, "刘阿姨"))
    assert receipt["channel"] in ("oa_template", "oa_cs")


def test_reply_via_overrides_the_contact(app):
    file(app, reply_via=("oa_cs", "o-other"))
    assert [s["target"] for s in sends(app) if s["text"].startswith("已登记")] == ["o-other"]


def test_filing_is_idempotent_per_key(app):
    a = file(app, key="inbound:7")
    b = file(app, key="inbound:7")
    assert a["id"] == b["id"] and app.store.scalar("SELECT COUNT(*) FROM requests") == 1
    assert len(sends(app, "xm")) == 1


@pytest.mark.parametrize("text, force", [("收到，地下车库进水了", False), ("2", True)])
def test_urgent_notifies_building_and_grid_leads_at_once(app, text, force):
    req = file(app, text=text, force_urgent=force, alert_id=None)
    assert req["urgency"] == "urgent"
    assert "【紧急报事】" in texts_to(app, "lead3")[0]
    assert "【紧急报事】" in texts_to(app, "grid1")[0]
    assert texts_to(app, "grid2") == [] and texts_to(app, "staff1") == []
    assert "已同时通知楼长和网格长" in texts_to(app, "xm")[0]


def test_request_without_a_building_goes_to_staff(app):
    req = file(app, "李网格", "社区广场路灯坏了")
    assert req["building_id"] is None
    assert len(texts_to(app, "staff1")) == 1


# -- lifecycle -----------------------------------------------------------------------------
def test_full_loop_file_accept_assign_start_resolve_rate_close(app):
    rid = file(app)["id"]
    lead, vol, xm = person(app, "王楼长"), person(app, "钱师傅"), person(app, "王小明")
    assert R.accept(app, lead, rid)["state"] == "accepted"
    req = R.assign(app, lead, rid, "钱师傅")
    assert (req["state"], req["assignee_id"], req["assignee_name"]) == ("assigned", vol["id"],
                                                                       "钱师傅")
    assert f"开始 #{rid}" in texts_to(app, "vol1")[0]
    assert R.start(app, vol, rid)["state"] == "in_progress"  # the assignee may work on it
    assert R.resolve(app, vol, rid, "已更换灯泡")["resolution"] == "已更换灯泡"
    req = R.rate(app, xm, rid, 5, "很及时")
    assert (req["state"], req["rating"], req["rating_comment"]) == ("closed", 5, "很及时")
    assert events(app, rid) == ["request.file", "request.accept", "request.assign",
                                "request.start", "request.resolve", "request.rate",
                                "request.close"]
    told = texts_to(app, "xm")
    assert len(told) == 6  # receipt, accepted, assigned, started, resolved, thanks
    assert "王楼长受理" in told[1] and "钱师傅" in told[2] and "已更换灯泡" in told[4]
    assert "5 分" in told[5]


def test_assign_free_text_and_directly_from_filed(app):
    rid = file(app)["id"]
    req = R.assign(app, person(app, "王楼长"), rid, "物业王师傅")
    assert (req["state"], req["assignee_id"], req["assignee_name"]) == ("assigned", None,
                                                                       "物业王师傅")
    assert req["accepted_by"] == person(app, "王楼长")["id"] and req["accepted_at"] == NOW


@pytest.mark.parametrize("steps, action, state", [
    ([], "start", "filed"),
    ([], "resolve", "filed"),
    ([], "rate", "filed"),
    (["accept"], "accept", "accepted"),
])
def test_invalid_transitions_are_refused(app, steps, action, state):
    rid = file(app)["id"]
    lead, xm = person(app, "王楼长"), person(app, "王小明")
    for s in steps:
        getattr(R, s)(app, lead, rid)
    call = {"start": lambda: R.start(app, lead, rid),
            "resolve": lambda: R.resolve(app, lead, rid, "好了"),
            "rate": lambda: R.rate(app, xm, rid, 5),
            "accept": lambda: R.accept(app, lead, rid)}[action]
    with pytest.raises(R.InvalidTransition) as e:
        call()
    assert e.value.info == {"state": state, "action": action}
    assert R.get(app.store, rid)["state"] == state


def test_bad_input_is_refused(app):
    rid = file(app)["id"]
    lead, xm = person(app, "王楼长"), person(app, "王小明")
    R.accept(app, lead, rid)
    with pytest.raises(R.BadInput, match="note"):
        R.resolve(app, lead, rid, "  ")
    with pytest.raises(R.BadInput, match="assignee"):
        R.assign(app, lead, rid, "")
    R.resolve(app, lead, rid, "修好了")
    with pytest.raises(R.BadInput, match="score"):
        R.rate(app, xm, rid, 7)


def test_low_rating_reopens_to_the_grid_lead(app):
    rid = file(app)["id"]
    lead, xm, grid = person(app, "王楼长"), person(app, "王小明"), person(app, "李网格")
    R.accept(app, lead, rid)
    R.resolve(app, lead, rid, "看过了")
    req = R.rate(app, xm, rid, 2, "灯还是不亮")
    assert (req["state"], req["reopened"], req["accepted_by"], req["escalation_level"]) == (
        "accepted", 1, grid["id"], 1)
    assert req["resolved_at"] is None and req["rating"] == 2
    assert "灯还是不亮" in texts_to(app, "grid1")[-1]
    assert "退回网格长" in texts_to(app, "xm")[-1]
    # the grid lead takes it from there and it can be resolved and rated again
    R.assign(app, grid, rid, "钱师傅")
    R.resolve(app, grid, rid, "换了整套灯具")
    assert R.rate(app, xm, rid, 4)["state"] == "closed"


def test_comment_is_internal(app):
    rid = file(app)["id"]
    before = len(sends(app))
    R.comment(app, person(app, "王楼长"), rid, "已联系物业")
    assert len(sends(app)) == before
    [e] = [h for h in R.history(app.store, rid) if h["kind"] == "request.comment"]
    assert json.loads(e["data"]) == {"text": "已联系物业"} and e["actor"] == "王楼长"


# -- visibility and role boundaries ----------------------------------------------------------
def test_who_sees_what(app):
    a = file(app, "王小明", "3栋楼道灯坏了")["id"]  # 3栋, grid 1
    b = file(app, "钱师傅", "5栋门口积水")["id"]  # 5栋, grid 1
    c = file(app, "吴奶奶", "8栋电梯坏了")["id"]  # 8栋, grid 2

    def visible(name):
        return sorted(r["id"] for r in R.list_requests(app.store, person(app, name)))
    assert visible("王小明") == [a]
    assert visible("吴奶奶") == [c]
    assert visible("王楼长") == [a]  # building lead: their building
    assert visible("孙楼长") == [b]
    assert visible("李网格") == [a, b]  # grid lead: the grid
    assert visible("赵网格") == [c]
    assert visible("陈书记") == [a, b, c]  # staff: everything
    with pytest.raises(R.Forbidden):
        R.load(app.store, person(app, "吴奶奶"), a)
    with pytest.raises(R.NotFound):
        R.load(app.store, person(app, "陈书记"), 999)


@pytest.mark.parametrize("who, action", [
    ("周楼长", "accept"),  # a lead outside the building
    ("孙楼长", "assign"),  # same grid, other building
    ("王小明", "accept"),  # a resident, even for their own request
    ("钱师傅", "start"),  # a volunteer not assigned to it
    ("赵网格", "resolve"),  # the other grid's lead
])
def test_acting_outside_ones_area_is_refused(app, who, action):
    rid = file(app)["id"]
    R.accept(app, person(app, "王楼长"), rid) if action in ("start", "resolve") else None
    fn = {"accept": lambda p: R.accept(app, p, rid),
          "assign": lambda p: R.assign(app, p, rid, "钱师傅"),
          "start": lambda p: R.start(app, p, rid),
          "resolve": lambda p: R.resolve(app, p, rid, "好了")}[action]
    with pytest.raises(R.Forbidden):
        fn(person(app, who))


def test_only_the_filer_rates_and_the_assignee_sees_it(app):
    rid = file(app)["id"]
    lead = person(app, "王楼长")
    R.assign(app, lead, rid, "钱师傅")
    assert R.load(app.store, person(app, "钱师傅"), rid)["id"] == rid
    R.resolve(app, lead, rid, "好了")
    with pytest.raises(R.Forbidden):
        R.rate(app, lead, rid, 5)


# -- photos and voice --------------------------------------------------------------------------
def test_media_attaches_to_a_recent_request_or_files_a_new_one(tmp_path):
    clock = FakeClock(NOW)
    app = build(tmp_path, clock)
    xm = person(app, "王小明")
    rid = file(app)["id"]
    req, created = R.add_media(app, resident=xm, kind="image", media_id="m1",
                               meta={"PicUrl": "http://p/1"})
    assert (req["id"], created) == (rid, False)
    assert R.add_media(app, resident=xm, kind="image", media_id="m1")[1] is False  # a retry
    assert app.store.scalar("SELECT COUNT(*) FROM request_media") == 1
    clock.advance(R.MEDIA_WINDOW_S + 1)
    req, created = R.add_media(app, resident=xm, kind="voice", media_id="v1")
    assert created and req["id"] != rid
    assert req["text"] == texts.render("messages/requests/media_text.j2", kind="voice")
    meta = app.store.q1("SELECT kind, meta FROM request_media WHERE media_id='m1'")
    assert meta["kind"] == "image" and json.loads(meta["meta"]) == {"PicUrl": "http://p/1"}


# -- reminders -----------------------------------------------------------------------------
async def test_unaccepted_request_escalates_once_per_level_and_not_after_restart(tmp_path):
    app = build(tmp_path)
    rid = file(app)["id"]
    assert R.next_due_at(app) == NOW + 4 * H
    assert await R.run_due(app, NOW + 4 * H - 1) == 0
    assert await R.run_due(app, NOW + 4 * H) == 1
    assert R.get(app.store, rid)["escalation_level"] == 1
    assert "还没有人接单" in texts_to(app, "grid1")[-1]
    assert await R.run_due(app, NOW + 4 * H + 60) == 0  # once
    # a restart: a new App on the same SQLite file finds nothing left to do at that time
    app2 = make_app(make_settings(tmp_path), clock=FakeClock(NOW + 5 * H))
    assert await R.run_due(app2, NOW + 5 * H) == 0
    assert R.next_due_at(app2) == NOW + 8 * H
    assert await R.run_due(app2, NOW + 8 * H) == 1
    assert "还没有人接单" in texts_to(app2, "staff1")[-1]
    assert await R.run_due(app2, NOW + 30 * D) == 0  # staff is the top
    assert events(app2, rid).count("request.escalate") == 2
    assert len(texts_to(app2, "grid1")) == 1


async def test_urgent_requests_escalate_after_the_urgent_deadline(app):
    file(app, text="地下车库进水了")
    assert R.next_due_at(app) == NOW + 1 * H


async def test_unresolved_request_escalates_after_days(app):
    rid = file(app)["id"]
    R.accept(app, person(app, "王楼长"), rid)  # accepting starts the resolve phase at level 0
    assert R.next_due_at(app) == NOW + 3 * D
    assert await R.run_due(app, NOW + 3 * D) == 1
    assert "还没有办结" in texts_to(app, "grid1")[-1]


async def test_resolve_deadline_per_category_and_urgency(app):
    water = file(app, text="楼下下水道堵了")["id"]  # water: 1 day in the checked-in config
    R.accept(app, person(app, "王楼长"), water)
    assert R.next_due_at(app) == NOW + 1 * D
    urgent = file(app, text="电梯里有人被困")["id"]
    R.accept(app, person(app, "王楼长"), urgent)
    req = app.store.q1("SELECT * FROM requests WHERE id=?", (urgent,))
    assert req["urgency"] == "urgent"
    from bot.domain.requests.reminders import resolve_period_s
    assert resolve_period_s(req, app.settings.requests) == 12 * H


async def test_rating_is_asked_once_then_the_request_closes_unrated(app):
    rid = file(app)["id"]
    lead = person(app, "王楼长")
    R.accept(app, lead, rid)
    app.clock.advance(2 * H)
    R.resolve(app, lead, rid, "好了")
    resolved_at = NOW + 2 * H
    assert R.next_due_at(app) == resolved_at + 24 * H
    assert await R.run_due(app, resolved_at + 24 * H) == 1
    assert "问题解决得怎么样" in texts_to(app, "xm")[-1]
    assert await R.run_due(app, resolved_at + 30 * H) == 0
    assert await R.run_due(app, resolved_at + 48 * H) == 1
    req = R.get(app.store, rid)
    assert (req["state"], req["rating"]) == ("closed", None)
    assert R.next_due_at(app) is None


def test_filing_rearms_the_apps_single_timer(app):
    file(app)
    assert app.scheduler.armed["escalation:next"] == NOW + 4 * H


# -- monthly report ------------------------------------------------------------------------
def _month_of_requests(app):
    lead, xm = person(app, "王楼长"), person(app, "王小明")
    a = file(app, text="楼道灯坏了")["id"]
    b = file(app, "吴奶奶", "8栋电梯坏了")["id"]
    c = file(app, "刘阿姨", "地下车库进水了")["id"]
    app.clock.advance(2 * H)
    R.accept(app, lead, a)
    R.accept(app, lead, c)
    app.clock.advance(4 * H)
    R.resolve(app, lead, a, "换了灯泡")
    R.resolve(app, lead, c, "已抽水")
    R.rate(app, xm, a, 5)
    R.rate(app, person(app, "刘阿姨"), c, 2)
    return a, b, c


def test_monthly_report_numbers(app):
    _month_of_requests(app)
    rep = monthly_report(app.store, 2024, 6)
    assert rep["total"] == 3 and rep["urgent"] == 1 and rep["reopened"] == 1
    assert rep["by_category"] == {"electricity": 2, "water": 1}
    assert rep["by_building"] == {"一区3栋": 2, "二区8栋": 1}
    assert rep["by_state"] == {"accepted": 1, "closed": 1, "filed": 1}
    assert rep["median_accept_h"] == 2.0
    assert rep["median_resolve_h"] == 6.0  # the reopened one is no longer resolved
    assert (rep["avg_rating"], rep["rated"]) == (3.5, 2)
    assert monthly_report(app.store, 2024, 7)["total"] == 0
    assert monthly_report(app.store, 2024, 5)["median_accept_h"] is None


def test_report_exports_csv_and_xlsx(app, tmp_path):
    a, b, c = _month_of_requests(app)
    write_requests_report(app.store, 2024, 6, tmp_path / "r.csv")
    rows = list(csv.reader(open(tmp_path / "r.csv", encoding="utf-8-sig")))
    assert rows[0] == ["居民报事月报", "2024-06"]
    assert ["报事总数", "3"] in rows and ["平均评分", "3.5"] in rows
    assert ["用电照明", "2"] in rows and ["一区3栋", "2"] in rows
    header = rows.index(next(r for r in rows if r and r[0] == "编号"))
    assert len(rows) - header - 1 == 3
    write_requests_report(app.store, 2024, 6, tmp_path / "r.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "r.xlsx")
    assert wb.sheetnames == ["汇总", "明细"]
    details = list(wb["明细"].values)
    assert details[0][0] == "编号" and [d[0] for d in details[1:]] == [a, b, c]
    with pytest.raises(ValueError, match="csv or .xlsx"):
        write_requests_report(app.store, 2024, 6, tmp_path / "r.pdf")


# -- dashboard API -------------------------------------------------------------------------
async def test_api_lists_shows_and_acts_with_the_domains_permissions(app):
    a = file(app)["id"]
    c = file(app, "吴奶奶", "8栋电梯坏了")["id"]
    users = {"t-lead": person(app, "王楼长"), "t-staff": person(app, "陈书记")}

    def auth(request):
        user = users.get(request.headers.get("X-Token", ""))
        if user is None:
            raise web.HTTPUnauthorized()
        return user

    wa = web.Application()
    add_request_routes(wa, app, auth)
    async with TestClient(TestServer(wa)) as client:
        async def call(method, path, token="t-lead", **kw):
            resp = await client.request(method, path, headers={"X-Token": token}, **kw)
            return resp.status, (await resp.json() if resp.content_type == "application/json"
                                 else None)
        assert (await call("GET", "/api/requests", token="nope"))[0] == 401
        status, body = await call("GET", "/api/requests")
        assert status == 200 and [r["id"] for r in body["requests"]] == [a]
        status, body = await call("GET", "/api/requests", token="t-staff",
                                  params={"category": "electricity", "state": "filed"})
        assert [r["id"] for r in body["requests"]] == [c, a]
        assert (await call("GET", f"/api/requests/{c}"))[0] == 403
        assert (await call("GET", "/api/requests/999"))[0] == 404
        assert (await call("POST", f"/api/requests/{c}/accept"))[0] == 403
        status, body = await call("POST", f"/api/requests/{a}/assign", json={"assignee": "钱师傅"})
        assert status == 200 and body["request"]["state"] == "assigned"
        status, body = await call("POST", f"/api/requests/{a}/accept")
        assert (status, body["error"], body["state"]) == (409, "bad_state", "assigned")
        assert (await call("POST", f"/api/requests/{a}/resolve", json={}))[0] == 400
        assert (await call("POST", f"/api/requests/{a}/comment", json={"text": "已上门"}))[0] == 200
        assert (await call("POST", f"/api/requests/{a}/explode"))[0] == 404
        status, body = await call("GET", f"/api/requests/{a}")
        assert status == 200 and body["request"]["household"] == "一区3栋2单元301"
        assert [h["kind"] for h in body["history"]] == [
            "request.file", "request.assign", "request.comment"]


def test_the_monthly_report_is_formula_safe(app, tmp_path):
    """`linli report requests` writes a resident's text so a spreadsheet never runs it as a formula."""
    file(app, text="=HYPERLINK(\"http://evil.example\",\"点我\") 楼道灯坏了")
    write_requests_report(app.store, 2024, 6, tmp_path / "r.csv")
    body = (tmp_path / "r.csv").read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in body and ",=HYPERLINK" not in body
    write_requests_report(app.store, 2024, 6, tmp_path / "r.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "r.xlsx")["明细"]
    texts = [c for row in ws.values for c in row if isinstance(c, str) and "HYPERLINK" in c]
    assert texts and texts[0].startswith("'=") and ws.freeze_panes == "A2"
