"""Dashboard errors in plain Chinese (issue #13): every 400/403/404/500 of a page is the styled
error page with a way back; the JSON API answers JSON with a Chinese `message`; routes the
dashboard does not own (platform callbacks, ack links) are left alone."""
from __future__ import annotations

import pytest
from sim_rig import staff
from test_dashboard import building_lead, client, issue, login, rig, session_csrf  # noqa: F401

from bot.domain import alerts
from bot.domain.alerts import Draft
from bot.web import auth, dashboard


def styled(html: str) -> bool:
    return 'id="error-page"' in html and "/static/dashboard.css" in html


async def lead_client(rig, client):
    lead = building_lead(rig.store)
    auth.create_user(rig.store, "lead", "lead-pw", resident_id=lead["id"])
    await login(client, "lead", "lead-pw")
    return lead


async def test_an_unknown_alert_is_a_chinese_404_with_a_way_back(rig, client):
    await login(client)
    resp = await client.get("/alerts/99999")
    html = await resp.text()
    assert resp.status == 404 and resp.content_type == "text/html"
    assert styled(html) and "没有这条预警" in html and 'href="/"' in html
    assert "no such alert" not in html
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]  # the page's headers too
    assert 'id="whoami"' in html  # still the logged-in frame: the nav is there to go on


async def test_a_page_that_does_not_exist_is_a_chinese_404(rig, client):
    resp = await client.get("/no/such/page")
    html = await resp.text()
    assert resp.status == 404 and styled(html) and "没有找到这个页面" in html
    assert "404: Not Found" not in html and 'href="/login"' in html  # logged out: back to the login


async def test_a_lead_gets_chinese_403s(rig, client):
    await lead_client(rig, client)
    resp = await client.get("/alerts/new")
    html = await resp.text()
    assert resp.status == 403 and styled(html) and "只有社区工作人员" in html and "staff only" not in html
    lead = building_lead(rig.store)
    other = rig.store.q1("SELECT id FROM nodes WHERE kind='building' AND id!=? ORDER BY id LIMIT 1",
                         (lead["building_id"],))
    elsewhere = alerts.issue(rig.app, Draft(type="暴雨", colour="yellow", scope=[other["id"]],
                                            issuer_id=staff(rig.store)["id"]))
    for path in (f"/alerts/{elsewhere}", f"/alerts/{elsewhere}/report.csv", "/reports/requests.csv?month=2024-06"):
        resp = await client.get(path)
        html = await resp.text()
        assert resp.status == 403 and styled(html), path
        assert "outside your area" not in html and "staff only" not in html
    assert "不在您负责的区域" in await (await client.get(f"/alerts/{elsewhere}")).text()


async def test_a_post_without_its_token_is_a_chinese_403(rig, client):
    await login(client)
    resp = await client.post(f"/alerts/{issue(rig)}/lift", data={"csrf": "wrong"})
    html = await resp.text()
    assert resp.status == 403 and styled(html) and "页面已过期" in html


async def test_a_post_when_logged_out_is_a_chinese_401(rig, client):
    resp = await client.post("/alerts/1/lift", data={})
    html = await resp.text()
    assert resp.status == 401 and styled(html) and "请先登录" in html and 'href="/login"' in html


async def test_an_unhandled_error_is_a_chinese_500(rig, client, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("database on fire")
    monkeypatch.setattr(dashboard, "alert_list", broken)
    await login(client)
    resp = await client.get("/")
    html = await resp.text()
    assert resp.status == 500 and styled(html) and "系统出了点问题" in html
    assert "database on fire" not in html and "Traceback" not in html


async def test_api_errors_are_json_with_a_chinese_message(rig, client, monkeypatch):
    resp = await client.get("/api/alerts")
    assert resp.status == 401 and await resp.json() == {"error": "login_required", "message": "请先登录"}
    await login(client)
    resp = await client.get("/api/alerts/99999")
    assert resp.status == 404 and await resp.json() == {"error": "no_alert", "message": "没有这条预警"}
    resp = await client.get("/api/no-such-thing")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    token = await session_csrf(client)
    resp = await client.post("/api/alerts", data="not json", headers={"X-CSRF-Token": token})
    body = await resp.json()
    assert resp.status == 400 and body["error"] == "bad_json" and body["message"]
    resp = await client.post("/api/alerts", json={"type": "地震", "colour": "red"},
                             headers={"X-CSRF-Token": token})
    body = await resp.json()
    assert (body["error"], body["message"], body["value"]) == ("unknown_type", "预警类型不正确", "地震")

    def broken(*a, **kw):
        raise RuntimeError("database on fire")
    from bot.data import alerts as alert_rows
    monkeypatch.setattr(alert_rows, "recent", broken)
    resp = await client.get("/api/alerts")
    assert resp.status == 500 and (await resp.json())["error"] == "server_error"


async def test_the_composer_template_lookup_answers_json(rig, client):
    await login(client)
    resp = await client.get("/alerts/new/text", params={"type": "地震", "colour": "red"})
    assert resp.status == 400 and (await resp.json())["error"] == "unknown_type"


async def test_routes_the_dashboard_does_not_own_are_left_alone(rig, client):
    resp = await client.get("/wecom/callback")  # no signature: the platform callback's own answer
    assert resp.status >= 400 and 'id="error-page"' not in await resp.text()


@pytest.mark.parametrize("status,code", [(400, "bad_request"), (403, "forbidden"), (404, "not_found"),
                                         (500, "server_error")])
def test_every_status_has_chinese_words(status, code):
    words = dashboard.labels()
    assert dashboard.error_code(status, None) == code
    assert code in words.ERRORS and status in words.ERROR_TITLES
