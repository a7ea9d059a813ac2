"""The dashboard over HTTP (aiohttp test client against the real app + local world): accounts,
sessions, CSRF, the login rate limit, what a lead may see, the composer, live snapshots and the
exports."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import re

import openpyxl
import pytest
from sim_rig import close_sim, make_sim, staff
from web_rig import client, csrf_of  # noqa: F401  (client is a fixture)

from bot.domain import alerts
from bot.domain.alerts import Draft
from bot.web import auth
from bot.web.composer import default_text
from bot.web.dashboard import OPTIONS

PASSWORD = "correct horse battery"


@pytest.fixture
async def rig(tmp_path):
    rig = await make_sim(tmp_path, households=60, dashboard={"password": PASSWORD})
    rig.server.app[OPTIONS].streams.poll_s = 0.02  # live pages look for changes quickly in tests
    rig.server.app[OPTIONS].live.poll_s = 0.02
    yield rig
    await close_sim(rig)


async def login(client, username="admin", password=PASSWORD, status=303):
    page = await client.get("/login")
    resp = await client.post("/login", data={"csrf": csrf_of(await page.text()), "username": username,
                                             "password": password}, allow_redirects=False)
    assert resp.status == status, await resp.text()
    return resp


async def session_csrf(client) -> str:
    return csrf_of(await (await client.get("/")).text())


def building_lead(store) -> dict:
    return store.q1("SELECT r.*, l.node_id AS building_id FROM node_leads l JOIN residents r "
                    "ON r.id=l.resident_id JOIN nodes n ON n.id=l.node_id WHERE n.kind='building' "
                    "AND l.rank=0 ORDER BY n.id LIMIT 1")


def issue(rig, **kw) -> int:
    return alerts.issue(rig.app, Draft(type="暴雨", colour="yellow", issuer_id=staff(rig.store)["id"], **kw))


# -- accounts and sessions -------------------------------------------------------------------------
def test_password_hash_is_salted_scrypt():
    a, b = auth.hash_password("pw"), auth.hash_password("pw")
    assert a.startswith("scrypt$") and a != b
    assert auth.verify_password("pw", a) and not auth.verify_password("pW", a)
    assert not auth.verify_password("pw", "garbage")


async def test_pages_need_login_and_the_session_cookie_is_strict(rig, client):
    resp = await client.get("/requests", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login?next=/requests")
    await login(client, password="wrong", status=401)
    resp = await login(client)
    cookie = resp.headers.getall("Set-Cookie")
    session = next(c for c in cookie if c.startswith(auth.COOKIE + "="))
    assert "HttpOnly" in session and "SameSite=Strict" in session
    token = re.match(rf"{auth.COOKIE}=([^;]+)", session).group(1)
    stored = rig.store.q1("SELECT * FROM web_sessions")
    assert stored["token"] != token  # only the digest is kept
    assert stored["expires_at"] == rig.clock.now() + rig.settings.dashboard.session_hours * 3600
    home = await client.get("/")
    assert home.status == 200 and "发布预警" in await home.text()
    assert "script-src 'self'" in home.headers["Content-Security-Policy"]
    rig.clock.advance(rig.settings.dashboard.session_hours * 3600 + 1)  # expiry follows app.clock
    assert (await client.get("/", allow_redirects=False)).status == 302


async def test_logout_ends_the_session(rig, client):
    await login(client)
    csrf = await session_csrf(client)
    resp = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert rig.store.scalar("SELECT COUNT(*) FROM web_sessions") == 0


async def test_login_rate_limit_per_user_and_ip(rig, client):
    for _ in range(auth.MAX_FAILURES):
        await login(client, password="nope", status=401)
    resp = await login(client, status=429)  # even the right password is refused for now
    assert "10 分钟" in await resp.text()
    await login(client, username="someone-else", password="nope", status=401)  # other names unaffected
    rig.clock.advance(auth.FAILURE_WINDOW_S + 1)
    await login(client)


async def test_create_user_resets_password_and_sessions(rig, client):
    auth.create_user(rig.store, "chen", "pw-1", resident_id=staff(rig.store)["id"])
    await login(client, "chen", "pw-1")
    auth.create_user(rig.store, "chen", "pw-2", resident_id=staff(rig.store)["id"])
    assert (await client.get("/", allow_redirects=False)).status == 302
    await login(client, "chen", "pw-1", status=401)
    await login(client, "chen", "pw-2")
    with pytest.raises(ValueError):
        auth.create_user(rig.store, "ghost", "pw", resident_id=999_999)


# -- CSRF ------------------------------------------------------------------------------------------
async def test_posts_without_csrf_are_refused(rig, client):
    await login(client)
    csrf = await session_csrf(client)
    form = {"type": "暴雨", "colour": "yellow", "scope": "1", "step": "confirm"}
    assert (await client.post("/alerts/new", data=form)).status == 403
    assert (await client.post("/alerts/new", data={**form, "csrf": "x" + csrf})).status == 403
    assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 0
    # the JSON API wants the header
    assert (await client.post("/api/requests/1/accept", json={})).status == 403
    # the login form has its own double-submit token
    client.session.cookie_jar.clear()
    resp = await client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert resp.status == 403


# -- composer, update, lift ------------------------------------------------------------------------
async def test_composer_previews_then_issues(rig, client):
    await login(client)
    page = await client.get("/alerts/new")
    html = await page.text()
    assert default_text(rig.store, alerts.TYPES[0], "yellow") in html and "大龙一区" in html  # the first type
    compound = rig.store.q1("SELECT * FROM nodes WHERE kind='compound' ORDER BY id LIMIT 1")
    form = {"csrf": csrf_of(html), "type": "雷雨大风", "colour": "orange", "scope": str(compound["id"]),
            "text": default_text(rig.store, "雷雨大风", "orange")}
    preview = await client.post("/alerts/new", data={**form, "step": "preview"})
    text = await preview.text()
    assert "雷雨大风橙色预警" in text and "1 平安 / 2 需要帮助" in text and 'value="confirm"' in text
    assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 0
    resp = await client.post("/alerts/new", data={**form, "step": "confirm"}, allow_redirects=False)
    assert resp.status == 303
    alert = rig.store.q1("SELECT * FROM alerts")
    assert resp.headers["Location"] == f"/alerts/{alert['id']}"
    assert alert["text"] == "" and json.loads(alert["scope"]) == [compound["id"]]  # template words kept
    page = await (await client.get(f"/alerts/{alert['id']}")).text()
    assert compound["name"] in page and "确认率曲线" in page and "<svg" in page


async def test_composer_refuses_an_empty_scope(rig, client):
    await login(client)
    csrf = await session_csrf(client)
    resp = await client.post("/alerts/new", data={"csrf": csrf, "type": "暴雨", "colour": "red",
                                                  "step": "confirm"})
    assert resp.status == 400 and "范围" in await resp.text()


async def test_update_and_lift(rig, client):
    alert_id = issue(rig)
    await login(client)
    csrf = await session_csrf(client)
    resp = await client.post(f"/alerts/{alert_id}/update", data={"csrf": csrf, "colour": "red"},
                             allow_redirects=False)
    new_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert rig.store.q1("SELECT state FROM alerts WHERE id=?", (alert_id,))["state"] == "superseded"
    assert rig.store.q1("SELECT colour, action FROM alerts WHERE id=?", (new_id,)) == {
        "colour": "red", "action": "update"}
    resp = await client.post(f"/alerts/{new_id}/lift", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert rig.store.q1("SELECT state FROM alerts WHERE id=?", (new_id,))["state"] == "lifted"
    again = await client.post(f"/alerts/{new_id}/lift", data={"csrf": csrf})
    assert again.status == 409 and "不在生效中" in await again.text()


# -- what a lead sees ------------------------------------------------------------------------------
async def test_a_building_lead_sees_only_their_building(rig, client):
    lead = building_lead(rig.store)
    auth.create_user(rig.store, "lead", "lead-pw", resident_id=lead["id"])
    alert_id = issue(rig)
    mine = rig.store.q1("SELECT n.name, c.name AS compound FROM nodes n JOIN nodes c ON c.id=n.parent_id "
                        "WHERE n.id=?", (lead["building_id"],))
    other = rig.store.q1("SELECT * FROM nodes WHERE kind='compound' AND id != (SELECT parent_id FROM "
                         "nodes WHERE id=?) ORDER BY id LIMIT 1", (lead["building_id"],))
    await login(client, "lead", "lead-pw")
    page = await (await client.get(f"/alerts/{alert_id}")).text()
    assert mine["compound"] in page and other["name"] not in page
    tree_ids = {int(x) for x in re.findall(r'data-building="(\d+)"', page)}
    assert tree_ids == {lead["building_id"]}
    assert (await client.get("/alerts/new", allow_redirects=False)).status == 403
    rows = list(csv.reader(io.StringIO((await (await client.get(
        f"/alerts/{alert_id}/report.csv")).read()).decode("utf-8-sig"))))
    n = rig.store.scalar("SELECT COUNT(*) FROM households WHERE building_id=? AND active=1",
                         (lead["building_id"],))
    assert len(rows) == n + 1 and {r[1] for r in rows[1:]} == {mine["name"]}
    # a household elsewhere is out of reach, in the register and in the requests
    elsewhere = rig.store.q1("SELECT * FROM households WHERE building_id != ? LIMIT 1", (lead["building_id"],))
    assert (await client.get(f"/register/households/{elsewhere['id']}")).status == 403
    resident = rig.store.q1("SELECT * FROM residents WHERE household_id=?", (elsewhere["id"],))
    from bot.domain import requests as R
    req = R.file_request(rig.app, resident=resident, text="楼道灯坏了")
    assert (await client.get(f"/requests/{req['id']}")).status == 403
    assert f"/requests/{req['id']}" not in await (await client.get("/requests")).text()


async def test_a_resident_who_leads_nothing_cannot_log_in(rig, client):
    plain = rig.store.q1("SELECT * FROM residents WHERE roles='resident' LIMIT 1")
    auth.create_user(rig.store, "plain", "pw", resident_id=plain["id"])
    await login(client, "plain", "pw", status=401)


# -- live updates ----------------------------------------------------------------------------------
async def read_snapshot(resp, kind: str = "snapshot") -> dict:
    """The next `kind` event (snapshot, diff) of an SSE stream (the timeout only guards against a hang)."""
    async def next_event():
        event, data = None, None
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event == kind:
                return json.loads(data)
    return await asyncio.wait_for(next_event(), timeout=10)


async def test_event_stream_sends_a_snapshot_when_a_resident_acks(rig, client):
    alert_id = issue(rig)
    await rig.app.settle()
    await login(client)
    resp = await client.get(f"/alerts/{alert_id}/events")
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = await read_snapshot(resp)
    someone = rig.store.q1("SELECT r.oa_openid, h.building_id FROM residents r JOIN households h "
                           "ON h.id=r.household_id WHERE r.oa_openid IS NOT NULL ORDER BY r.id LIMIT 1")
    assert first["acked"] == 0 and "coverage-tree" in first["html"]["tree"]
    rig.world.state.user_wrote(someone["oa_openid"])
    await rig.world.people.callbacks.send_text("oa", someone["oa_openid"], "1")
    await rig.app.settle()
    d = await read_snapshot(resp, "diff")  # after the snapshot, only what changed
    assert d["acked"] == 1 and d["nodes"][str(someone["building_id"])][0] == 1
    resp.close()


# -- exports ---------------------------------------------------------------------------------------
async def test_delivery_report_csv_and_xlsx(rig, client):
    alert_id = issue(rig)
    await rig.app.settle()
    someone = rig.store.q1("SELECT r.* FROM residents r WHERE r.oa_openid IS NOT NULL ORDER BY r.id LIMIT 1")
    rig.world.state.user_wrote(someone["oa_openid"])
    await rig.world.people.callbacks.send_text("oa", someone["oa_openid"], "收到")
    await rig.app.settle()
    await login(client)
    total = rig.store.scalar("SELECT COUNT(*) FROM households WHERE active=1")
    resp = await client.get(f"/alerts/{alert_id}/report.csv")
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in resp.headers["Content-Disposition"]
    body = await resp.read()
    assert body.startswith("\ufeff".encode())  # Excel needs the BOM for Chinese
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:3] == ["小区", "楼栋", "住户"] and len(rows) == total + 1
    label = rig.store.q1("SELECT label FROM households WHERE id=?", (someone["household_id"],))["label"]
    row = next(r for r in rows if r[2] == label)
    assert row[5] == someone["name"] and row[6] == "公众号回复" and row[7] == "已确认" and row[8]
    resp = await client.get(f"/alerts/{alert_id}/report.xlsx")
    assert resp.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    ws = openpyxl.load_workbook(io.BytesIO(await resp.read())).active
    assert ws.max_row == total + 1 and ws.title == "送达明细"


async def test_monthly_requests_report(rig, client):
    resident = rig.store.q1("SELECT * FROM residents WHERE household_id IS NOT NULL LIMIT 1")
    from bot.domain import requests as R
    R.file_request(rig.app, resident=resident, text="地下车库进水了")
    await login(client)
    resp = await client.get("/reports/requests.xlsx?month=2024-06")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/vnd.openxml")
    wb = openpyxl.load_workbook(io.BytesIO(await resp.read()))
    assert wb.sheetnames == ["汇总", "明细"] and wb["明细"].max_row == 2
    resp = await client.get("/reports/requests.csv?month=2024-06")
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "居民报事月报" in (await resp.read()).decode("utf-8-sig")
    assert (await client.get("/reports/requests.csv?month=june")).status == 400


# -- requests queue and the register ---------------------------------------------------------------
async def test_requests_queue_filters_and_detail_history(rig, client):
    from bot.domain import requests as R

    people = rig.store.q("SELECT * FROM residents WHERE household_id IS NOT NULL ORDER BY id LIMIT 2")
    water = R.file_request(rig.app, resident=people[0], text="地下车库进水了")
    light = R.file_request(rig.app, resident=people[1], text="楼道灯坏了")
    await login(client)
    page = await (await client.get("/requests")).text()
    assert f"/requests/{water['id']}" in page and f"/requests/{light['id']}" in page
    page = await (await client.get("/requests?category=electricity")).text()
    assert f"/requests/{light['id']}" in page and f"/requests/{water['id']}" not in page
    page = await (await client.get("/requests?urgency=urgent&state=filed")).text()
    assert f"/requests/{water['id']}" in page and f"/requests/{light['id']}" not in page
    csrf = await session_csrf(client)
    resp = await client.post(f"/api/requests/{light['id']}/accept", json={},
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 200 and (await resp.json())["request"]["state"] == "accepted"
    await client.post(f"/api/requests/{light['id']}/comment", json={"text": "已联系物业电工"},
                      headers={"X-CSRF-Token": csrf})
    detail = await (await client.get(f"/requests/{light['id']}")).text()
    assert "已受理" in detail and "已联系物业电工" in detail and "居民报事" in detail
    assert 'id="accept"' not in detail and 'id="resolve"' in detail  # actions follow the state
    assert (await client.get("/requests/99999")).status == 404


async def test_register_search_shows_acks_and_requests(rig, client):
    from bot.domain import requests as R

    alert_id = issue(rig)
    await rig.app.settle()
    someone = rig.store.q1("SELECT r.*, h.label FROM residents r JOIN households h ON h.id=r.household_id "
                           "WHERE r.oa_openid IS NOT NULL ORDER BY r.id LIMIT 1")
    rig.world.state.user_wrote(someone["oa_openid"])
    await rig.world.people.callbacks.send_text("oa", someone["oa_openid"], "收到")
    await rig.app.settle()
    R.file_request(rig.app, resident=someone, text="楼下的树被风吹歪了")
    await login(client)
    found = await (await client.get("/register", params={"q": someone["name"]})).text()
    assert f"/register/households/{someone['household_id']}" in found
    found = await (await client.get("/register", params={"q": someone["label"]})).text()
    assert someone["label"] in found
    home = await (await client.get(f"/register/households/{someone['household_id']}")).text()
    assert someone["name"] in home and f"/alerts/{alert_id}" in home and "公众号回复" in home
    assert "楼下的树被风吹歪了" in home


async def test_the_after_action_page_draws_a_curve_per_grid_and_downloads(rig, client):
    alert_id = issue(rig)
    await rig.app.settle()
    someone = rig.store.q1("SELECT r.* FROM residents r WHERE r.oa_openid IS NOT NULL ORDER BY r.id LIMIT 1")
    rig.world.state.user_wrote(someone["oa_openid"])
    await rig.world.people.callbacks.send_text("oa", someone["oa_openid"], "收到")
    await rig.app.settle()
    await login(client)
    resp = await client.get(f"/alerts/{alert_id}/after")
    body = await resp.text()
    grids = [r["name"] for r in rig.store.q("SELECT name FROM nodes WHERE kind='grid'")]
    assert resp.status == 200 and body.count('class="grid-curve') == len(grids) and grids
    for fmt in ("csv", "xlsx"):
        got = await client.get(f"/alerts/{alert_id}/after.{fmt}")
        assert got.status == 200 and len(await got.read()) > 100
    office = await client.get(f"/alerts/{alert_id}/office.xlsx")
    assert office.status == 200 and (await office.read())[:2] == b"PK"
