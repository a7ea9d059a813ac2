"""Exports say what an answer means (issue #9) and are safe and readable (issue #13 item 3):
已确认 for a plain ack, 平安 only for a household's own 'safe', 需要帮助 for help, and who answered
(本人 / 代确认 / 上门) — a lead's 代确认 is never 平安; CSV keeps its BOM and escapes formula-looking
cells; XLSX has a frozen header, fitted widths and no formulas; buildings sort naturally.
The home list: lifted and expired warnings are not shown as live; drills are marked 演练."""
from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest
from sim_rig import close_sim, make_sim, staff
from web_rig import client, csrf_of, sign_in  # noqa: F401  (client is a fixture)

from bot.core.tables import display_width, safe_cell
from bot.data import followups as followups_db
from bot.domain import acks, alerts, followups
from bot.domain import requests as R
from bot.domain.alerts import Draft
from bot.web.exports import answer_code, csv_bytes, table_bytes, who_answered
from bot.web.render import natural_key

PASSWORD = "exports-pw"


@pytest.fixture
async def rig(tmp_path):
    rig = await make_sim(tmp_path, households=120, seed=3, dashboard={"password": PASSWORD})
    yield rig
    await close_sim(rig)


async def login(client, username="admin", password=PASSWORD):
    return await sign_in(client, username, password)


async def report(client, alert_id: int) -> list[list[str]]:
    body = await (await client.get(f"/alerts/{alert_id}/report.csv")).read()
    assert body.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def by_label(rows: list[list[str]]) -> dict[str, dict[str, str]]:
    header = rows[0]
    return {r[2]: dict(zip(header, r, strict=True)) for r in rows[1:]}


async def test_each_answer_is_named_for_what_it_is_and_who_gave_it(rig, client):
    store = rig.store
    alert_id = alerts.issue(rig.app, Draft(type="暴雨", colour="red", issuer_id=staff(store)["id"]))  # a poll
    homes = store.q("SELECT h.id, h.label, h.building_id FROM households h WHERE h.active=1 AND NOT EXISTS "
                    "(SELECT 1 FROM followups f WHERE f.household_id=h.id) ORDER BY h.id LIMIT 5")
    member = {h["id"]: store.q1("SELECT * FROM residents WHERE household_id=? ORDER BY id", (h["id"],)) for h in homes}
    lead = store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id WHERE l.node_id=? "
                    "ORDER BY l.rank", (homes[3]["building_id"],))
    plain, safe, help_, proxy, proxy_safe = homes
    acks.acknowledge(rig.app, household_id=plain["id"], door="oa", kind="ok", resident=member[plain["id"]], raw="收到")
    acks.acknowledge(rig.app, household_id=safe["id"], door="oa", kind="safe", resident=member[safe["id"]], raw="1")
    acks.acknowledge(rig.app, household_id=help_["id"], door="wecom", kind="help", resident=member[help_["id"]], raw="2")
    acks.acknowledge(rig.app, household_id=proxy["id"], door="proxy", kind="ok", proxy=lead, raw="代确认")
    # a proxy row that says 'safe' (an old row, a bug elsewhere): the report still does not call it 平安
    acks.record_ack(rig.app, alert=alerts.find(store, alert_id), household_id=proxy_safe["id"], resident_id=None,
                    channel="proxy", answer="safe", proxy_id=lead["id"])
    task = followups_db.open_for_alert(store, alert_id)[0]
    followups.record_visit(rig.app, task, staff(store), "safe", "在家，平安")
    await login(client)
    rows = await report(client, alert_id)
    assert rows[0] == ["小区", "楼栋", "住户", "送达方式", "送达时间", "确认人", "确认方式", "回复", "首次确认时间",
                       "困难类别", "一对一跟进", "跟进社工", "谁确认的", "上门结果"]
    got = by_label(rows)
    assert (got[plain["label"]]["回复"], got[plain["label"]]["谁确认的"]) == ("已确认", "本人")
    assert (got[safe["label"]]["回复"], got[safe["label"]]["谁确认的"]) == ("平安", "本人")
    assert (got[help_["label"]]["回复"], got[help_["label"]]["谁确认的"]) == ("需要帮助", "本人")
    assert got[proxy["label"]]["回复"] == "已确认" and got[proxy["label"]]["谁确认的"] == "代确认"
    assert got[proxy["label"]]["确认人"] == lead["name"]
    assert got[proxy_safe["label"]]["回复"] == "已确认" and got[proxy_safe["label"]]["谁确认的"] == "代确认"
    visited = store.q1("SELECT label FROM households WHERE id=?", (task["household_id"],))["label"]
    assert got[visited]["谁确认的"] == "上门" and got[visited]["上门结果"] == "平安"
    assert got[visited]["一对一跟进"] == "已完成"
    # nobody answered: empty, not 平安
    silent = next(r for label, r in got.items() if label not in
                  {plain["label"], safe["label"], help_["label"], proxy["label"], proxy_safe["label"], visited})
    assert silent["回复"] == "" and silent["谁确认的"] == ""
    # the household page says the same
    html = await (await client.get(f"/register/households/{plain['id']}")).text()
    assert "已确认" in html and "平安" not in html.split('id="acks"')[1].split("</table>")[0]


async def test_buildings_sort_naturally_in_the_report(rig, client):
    alert_id = alerts.issue(rig.app, Draft(type="暴雨", colour="yellow", issuer_id=staff(rig.store)["id"]))
    await login(client)
    rows = (await report(client, alert_id))[1:]
    keys = [(natural_key(r[0]), natural_key(r[1]), natural_key(r[2])) for r in rows]
    assert len(keys) > 10 and keys == sorted(keys)


def test_who_answered_and_answer_code():
    assert who_answered(None, None) == "" and who_answered("oa", None) == "self"
    assert who_answered("link", None) == "self" and who_answered("proxy", 7) == "proxy"
    assert who_answered("visit", 7) == "visit" and who_answered("wecom", 7) == "proxy"
    assert answer_code("safe", "proxy") == "ok" and answer_code("safe", "self") == "safe"
    assert answer_code("help", "proxy") == "help" and answer_code(None, "") == ""


def test_csv_keeps_its_bom_and_escapes_formulas():
    rows = [["姓名", "备注"], ["=HYPERLINK(\"http://x\")", "+1"], ["-2", "@SUM(A1)"], ["\tx", "平常文字"], [3, None]]
    body = csv_bytes(rows)
    assert body.startswith("\ufeff".encode())
    got = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert got[1] == ["'=HYPERLINK(\"http://x\")", "'+1"] and got[2] == ["'-2", "'@SUM(A1)"]
    assert got[3] == ["'\tx", "平常文字"] and got[4] == ["3", ""]
    assert safe_cell(5) == 5 and safe_cell("a=b") == "a=b"


def test_xlsx_has_a_frozen_header_fitted_widths_and_no_formulas():
    rows = [["小区", "楼栋", "备注"], ["大龙一区", "1栋", "=1+1"], ["大龙一区", "10栋", "x" * 200]]
    ws = openpyxl.load_workbook(io.BytesIO(table_bytes(rows, "xlsx", "送达明细"))).active
    assert ws.freeze_panes == "A2" and ws.title == "送达明细"
    assert ws["C2"].value == "'=1+1" and ws["C2"].data_type == "s"
    assert ws.column_dimensions["A"].width == display_width("大龙一区") + 2 == 10
    assert ws.column_dimensions["B"].width == 6  # at least MIN_WIDTH
    assert ws.column_dimensions["C"].width == 60  # at most MAX_WIDTH
    assert display_width("3栋502") == 6 and display_width(None) == 0


async def test_the_monthly_requests_report_is_hardened_too(rig, client):
    resident = rig.store.q1("SELECT * FROM residents WHERE household_id IS NOT NULL LIMIT 1")
    R.file_request(rig.app, resident=resident, text="=HYPERLINK(\"http://evil\",\"点我\") 楼道灯坏了")
    await login(client)
    text = (await (await client.get("/reports/requests.csv?month=2024-06")).read()).decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text
    wb = openpyxl.load_workbook(io.BytesIO(await (await client.get("/reports/requests.xlsx?month=2024-06")).read()))
    cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    assert any(c.value.startswith("'=HYPERLINK") for c in cells)
    assert not any(c.data_type == "f" for c in cells)
    assert all(ws.freeze_panes == "A2" for ws in wb.worksheets) and len(wb.worksheets) == 2


async def test_home_shows_lifted_and_expired_warnings_as_ended_and_marks_drills(rig, client):
    boss = staff(rig.store)["id"]
    lifted = alerts.issue(rig.app, Draft(type="暴雨", colour="yellow", issuer_id=boss))
    lift = alerts.follow_on(rig.app, lifted, "lift", issuer_id=boss)
    short = alerts.issue(rig.app, Draft(type="大风", colour="blue", issuer_id=boss, expires_h=1))
    drill = alerts.issue(rig.app, Draft(type="台风", colour="orange", issuer_id=boss, status="exercise", expires_h=5))
    rig.clock.advance(2 * 3600)  # `short` is past its expiry but nobody has run the summary yet
    assert rig.store.q1("SELECT state FROM alerts WHERE id=?", (short,))["state"] == "active"
    await login(client)
    html = await (await client.get("/")).text()
    live, _, ended = html.partition("<h2>已结束</h2>")
    assert f'data-alert="{drill}"' in live
    for a in (lifted, lift, short):
        assert f'data-alert="{a}"' in ended and f'data-alert="{a}"' not in live
    row = lambda a: re.search(rf'data-alert="{a}">(.*?)</tr>', html, re.S).group(1)  # noqa: E731
    assert "已结束" in row(short) and "生效中" not in row(short)
    assert "已解除" in row(lifted) and "解除通知" in row(lift)
    assert '<span class="tag drill">演练</span>' in row(drill) and "生效中" in row(drill)
    assert "演练" not in row(short)


async def test_a_vulnerable_only_warning_reports_the_households_it_was_for(rig, client):
    alert_id = alerts.issue(rig.app, Draft(type="高温", colour="orange", issuer_id=staff(rig.store)["id"],
                                           audience=["*"]))
    want = {r["label"] for r in rig.store.q("SELECT h.label FROM alert_targets t JOIN households h "
                                            "ON h.id=t.household_id WHERE t.alert_id=?", (alert_id,))}
    await login(client)
    rows = await report(client, alert_id)
    assert want and {r[2] for r in rows[1:]} == want and len(rows) == len(want) + 1
    home = await (await client.get("/")).text()
    assert f"0/{len(want)} 户" in re.search(rf'data-alert="{alert_id}">(.*?)</tr>', home, re.S).group(1)


async def test_register_search_lists_homes_in_natural_order(rig, client):
    compound = rig.store.q1("SELECT name FROM nodes WHERE kind='compound' ORDER BY id LIMIT 1")["name"]
    await login(client)
    html = await (await client.get("/register", params={"q": compound})).text()
    homes = re.search(r'<ul class="plain" id="homes">(.*?)</ul>', html, re.S).group(1)
    labels = re.findall(r'<a href="/register/households/\d+">([^<]+)</a>', homes)
    assert len(labels) > 10 and labels == sorted(labels, key=natural_key)
