"""The follow-up board on the dashboard (issue #11): open / overdue / done per social worker with
name, room and phone; a visit recorded from the page through followups.record_visit (CSRF like
every form); CSV/XLSX for the street office; a lead sees only their area."""
from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from sim_rig import close_sim, make_sim, staff
from web_rig import client, csrf_of, sign_in  # noqa: F401  (client is a fixture)

from bot.data import followups as followups_db
from bot.domain import alerts, followups
from bot.domain.alerts import Draft
from bot.web import auth
from bot.web.dashboard import OPTIONS
from bot.web.followups_pages import back_to

PASSWORD = "board-pw-1"


@pytest.fixture
async def rig(tmp_path):
    rig = await make_sim(tmp_path, households=120, seed=3, dashboard={"password": PASSWORD})
    rig.server.app[OPTIONS].streams.poll_s = 0.02
    yield rig
    await close_sim(rig)


async def login(client, username="admin", password=PASSWORD):
    return await sign_in(client, username, password)


def red_storm(rig) -> int:
    """A red warning: every vulnerable resident in scope gets a task at once ("vulnerable first")."""
    return alerts.issue(rig.app, Draft(type="暴雨", colour="red", issuer_id=staff(rig.store)["id"]))


async def test_the_board_lists_tasks_by_worker_with_name_room_phone(rig, client):
    alert_id = red_storm(rig)
    tasks = followups_db.open_for_alert(rig.store, alert_id)
    assert len(tasks) >= 3
    await login(client)
    html = await (await client.get("/followups")).text()
    for t in tasks:
        assert f'id="task-{t["id"]}"' in html and t["name"] in html and t["room"] in html
    with_phone = next(t for t in tasks if t["phone"])
    assert f'href="tel:{with_phone["phone"]}"' in html
    worker = next(t["worker"] for t in tasks if t["worker"])
    assert f'data-worker="{worker}"' in html  # one section per social worker
    assert f'<b id="n-open">{len(tasks)}</b>' in html and '<b id="n-done">0</b>' in html
    # past the red deadline the open ones are overdue
    rig.clock.advance(60 * followups.DEFAULT_DEADLINE_MIN["red"] + 1)
    html = await (await client.get("/followups?state=overdue")).text()
    assert f'<b id="n-overdue">{len(tasks)}</b>' in html and "已超时" in html


async def test_recording_a_visit_from_the_page_closes_the_task_and_counts_as_the_answer(rig, client):
    alert_id = red_storm(rig)
    task, other, third = followups_db.open_for_alert(rig.store, alert_id)[:3]
    csrf = await login(client)
    resp = await client.post(f"/followups/{task['id']}/visit",
                             data={"csrf": csrf, "outcome": "safe", "note": "老人在家，一切正常",
                                   "back": f"/followups?alert={alert_id}&evil=1"}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == f"/followups?alert={alert_id}&saved={task['id']}#task-{task['id']}"
    done = followups_db.get(rig.store, task["id"])
    assert (done["state"], done["outcome"], done["note"]) == ("closed", "safe", "老人在家，一切正常")
    ack = rig.store.q1("SELECT * FROM acks WHERE alert_id=? AND household_id=?", (alert_id, task["household_id"]))
    assert ack["channel"] == "visit" and ack["answer"] == "safe"
    html = await (await client.get(resp.headers["Location"])).text()
    assert 'id="followup-saved"' in html and "老人在家，一切正常" in html
    # 需要帮助 opens the urgent request, like the chat's 已上门 … 需要帮助
    await client.post(f"/followups/{other['id']}/visit", data={"csrf": csrf, "outcome": "help", "note": "家里漏水"})
    req = rig.store.q1("SELECT * FROM requests WHERE household_id=? AND urgency='urgent'", (other["household_id"],))
    assert req is not None and "家里漏水" in req["text"]
    # 不在家 keeps it open, to be asked again
    await client.post(f"/followups/{third['id']}/visit", data={"csrf": csrf, "outcome": "not_home"})
    f = followups_db.get(rig.store, third["id"])
    assert f["state"] == "open" and f["outcome"] == "not_home"
    assert "不在家" in await (await client.get("/followups")).text()


async def test_visit_posts_refuse_bad_input(rig, client):
    alert_id = red_storm(rig)
    task = followups_db.open_for_alert(rig.store, alert_id)[0]
    csrf = await login(client)
    url = f"/followups/{task['id']}/visit"
    assert (await client.post(url, data={"outcome": "safe"})).status == 403  # no CSRF token
    assert (await client.post(url, data={"csrf": "x" + csrf, "outcome": "safe"})).status == 403
    resp = await client.post(url, data={"csrf": csrf, "outcome": "fine"})
    assert resp.status == 400 and "请选择上门结果" in await resp.text()
    assert (await client.post(url, data={"csrf": csrf})).status == 400
    assert followups_db.get(rig.store, task["id"])["state"] == "open"  # nothing recorded
    resp = await client.post("/followups/999999/visit", data={"csrf": csrf, "outcome": "safe"})
    assert resp.status == 404
    assert (await client.post(url, data={"csrf": csrf, "outcome": "safe"}, allow_redirects=False)).status == 303
    again = await client.post(url, data={"csrf": csrf, "outcome": "moved"})
    assert again.status == 409 and "已经完成" in await again.text()
    assert followups_db.get(rig.store, task["id"])["outcome"] == "safe"
    assert (await client.get("/followups?alert=abc")).status == 400


async def test_a_lead_sees_and_records_only_their_area(rig, client):
    alert_id = red_storm(rig)
    tasks = followups_db.open_for_alert(rig.store, alert_id)
    mine = tasks[0]
    lead = rig.store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id "
                        "WHERE l.node_id=? AND l.rank=0", (mine["building_id"],))
    others = [t for t in tasks if t["building_id"] != mine["building_id"]]
    assert lead is not None and others
    auth.create_user(rig.store, "lead", "lead-pw", resident_id=lead["id"])
    csrf = await login(client, "lead", "lead-pw")
    html = await (await client.get("/followups")).text()
    assert f'id="task-{mine["id"]}"' in html
    assert not any(f'id="task-{t["id"]}"' in html for t in others)
    resp = await client.post(f"/followups/{others[0]['id']}/visit", data={"csrf": csrf, "outcome": "safe"})
    assert resp.status == 404  # not told it exists
    assert followups_db.get(rig.store, others[0]["id"])["state"] == "open"
    rows = list(csv.reader(io.StringIO((await (await client.get("/followups.csv")).read()).decode("utf-8-sig"))))
    assert {r[3] for r in rows[1:]} == {t["room"] for t in tasks if t["building_id"] == mine["building_id"]}


async def test_board_export_csv_and_xlsx(rig, client):
    alert_id = red_storm(rig)
    tasks = followups_db.open_for_alert(rig.store, alert_id)
    csrf = await login(client)
    await client.post(f"/followups/{tasks[0]['id']}/visit", data={"csrf": csrf, "outcome": "moved", "note": "到女儿家"})
    resp = await client.get(f"/followups.csv?alert={alert_id}")
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="followups-{alert_id}.csv"' in resp.headers["Content-Disposition"]
    body = await resp.read()
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:6] == ["预警", "社工", "姓名", "房号", "电话", "困难类别"] and len(rows) == len(tasks) + 1
    moved = next(r for r in rows if r[2] == tasks[0]["name"] and r[3] == tasks[0]["room"])
    assert moved[6] == "已完成" and moved[7] == "已转移" and moved[8] == "到女儿家"
    assert {r[6] for r in rows[1:]} >= {"待上门", "已完成"}
    ws = openpyxl.load_workbook(io.BytesIO(await (await client.get("/followups.xlsx")).read())).active
    assert ws.title == "一对一跟进" and ws.max_row == len(tasks) + 1 and ws.freeze_panes == "A2"
    assert ws.column_dimensions["C"].width >= 6


def test_back_to_keeps_only_the_boards_own_filters():
    assert back_to("/followups?alert=3&state=open", 7) == "/followups?alert=3&state=open&saved=7#task-7"
    assert back_to("https://evil.example/?alert=3", 7) == "/followups?alert=3&saved=7#task-7"
    assert back_to("/followups?state=<script>&saved=1", 2) == "/followups?saved=2#task-2"
    assert back_to("", 1) == "/followups?saved=1#task-1"


async def test_the_board_without_tasks_says_so(rig, client):
    await login(client)
    html = await (await client.get("/followups")).text()
    assert 'id="followups-empty"' in html and "还没有一对一跟进任务" in html


async def test_the_board_for_one_social_worker(rig, client):
    alert_id = red_storm(rig)
    tasks = followups_db.open_for_alert(rig.store, alert_id)
    worker_ids = sorted({t["worker_id"] for t in tasks if t["worker_id"] is not None})
    assert len(worker_ids) >= 2
    one = worker_ids[0]
    csrf = await login(client)
    html = await (await client.get(f"/followups?worker={one}")).text()
    theirs = [t for t in tasks if t["worker_id"] == one]
    assert f'<b id="n-open">{len(theirs)}</b>' in html
    assert all(f'id="task-{t["id"]}"' in html for t in theirs)
    assert not any(f'id="task-{t["id"]}"' in html for t in tasks if t["worker_id"] != one)
    assert f'href="?worker={one}&amp;state=overdue"' in html  # the totals keep the filter
    resp = await client.post(f"/followups/{theirs[0]['id']}/visit", allow_redirects=False,
                             data={"csrf": csrf, "outcome": "safe", "back": f"/followups?worker={one}&state=open"})
    assert resp.headers["Location"].startswith(f"/followups?worker={one}&state=open&saved=")
    assert (await client.get("/followups?worker=x1")).status == 400
