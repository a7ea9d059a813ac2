"""The dashboard in headless Chromium against the real app and the local world (FakeClock).

One browser and one Linli per module; each test opens its own browser context (own cookies).
Waiting is Playwright's (expect / wait_for_url), never sleeps: the page changes when the
server's live stream says the data changed.
"""
from __future__ import annotations

import asyncio
import re

import pytest

try:
    from playwright.async_api import expect
except ImportError:  # the `browser` fixture then fails (CI) or skips (locally) with the reason
    expect = None

import browser_rig
from browser_rig import PASSWORD, login, new_page, publish, shot
from sim_rig import run_until, staff

from bot.domain import alerts
from bot.domain.alerts import Draft
from bot.web import auth

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the module-scoped fixtures' loop
browser, linli = browser_rig.browser, browser_rig.linli  # fixtures, found by name


@pytest.fixture(scope="module")
def storm(linli):
    """A community-wide thunderstorm warning, issued before the browser tests look at it."""
    return alerts.issue(linli.app, Draft(type="雷雨大风", colour="yellow",
                                         issuer_id=staff(linli.store)["id"]))


def oa_resident(store, *, building_id=None, exclude_building=None, acked_for=None):
    """A resident on the Official Account whose household has not acked `acked_for` yet."""
    sql = ("SELECT r.*, h.building_id FROM residents r JOIN households h ON h.id=r.household_id "
           "WHERE r.oa_openid IS NOT NULL AND r.active=1")
    params = []
    if building_id is not None:
        sql += " AND h.building_id=?"
        params.append(building_id)
    if exclude_building is not None:
        sql += " AND h.building_id!=?"
        params.append(exclude_building)
    if acked_for is not None:
        sql += " AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.alert_id=? AND a.household_id=h.id)"
        params.append(acked_for)
    return store.q1(sql + " ORDER BY h.building_id, r.id LIMIT 1", params)


async def say(linli, resident: dict, text: str) -> None:
    """The resident writes to the Official Account: a signed callback into Linli."""
    linli.world.state.user_wrote(resident["oa_openid"])  # opens the 48 h reply window
    await linli.world.people.callbacks.send_text("oa", resident["oa_openid"], text)
    await linli.app.settle()


async def test_log_in_and_issue_an_alert_from_the_composer(browser, linli):
    context, page = await new_page(browser)
    await login(page, linli.base, "admin", PASSWORD)
    await expect(page.locator("#whoami")).to_have_text("社区工作人员")
    await page.click("#new-alert")
    await page.select_option("#type", "暴雨")
    await page.check("input[name=colour][value=orange]")
    await expect(page.locator("#text")).to_have_value(re.compile("暴雨橙色预警信号"))  # refilled
    compound = linli.store.q1("SELECT * FROM nodes WHERE kind='compound' ORDER BY path DESC LIMIT 1")
    await page.check(f"input[name=scope][value='{compound['id']}']")
    await page.click("#preview")
    await expect(page.locator("#preview-message")).to_contain_text("暴雨橙色预警")
    await expect(page.locator("#preview-scope")).to_contain_text(compound["name"])
    await page.click("#confirm")
    await page.wait_for_url(re.compile(r"/alerts/\d+$"))
    alert_id = int(page.url.rsplit("/", 1)[1])
    row = linli.store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))
    assert (row["type"], row["colour"], row["issuer_id"]) == ("暴雨", "orange", None)
    await expect(page.locator("#coverage-tree")).to_contain_text(compound["name"])
    # and lift it again from its page, so it does not shadow the storm in the other tests
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.click("#lift")
    await page.wait_for_url(re.compile(rf"/alerts/(?!{alert_id}$)\d+$"))
    assert linli.store.q1("SELECT state FROM alerts WHERE id=?", (alert_id,))["state"] == "lifted"
    await context.close()


async def test_a_building_fills_in_live_when_a_resident_acks(browser, linli, storm):
    await linli.app.settle()
    # a few minutes of the storm: leads forward, residents answer (seeded, simulated time)
    await run_until(linli.app, linli.world, linli.clock.now() + 240)
    context, page = await new_page(browser)
    await login(page, linli.base, "admin", PASSWORD)
    await page.goto(f"{linli.base}/alerts/{storm}")
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))  # stream connected
    resident = oa_resident(linli.store, acked_for=storm)
    counter = page.locator(f'[data-building="{resident["building_id"]}"]')
    before = int(await counter.inner_text())
    await say(linli, resident, "1")
    await expect(counter).to_have_text(str(before + 1))
    total = linli.store.scalar("SELECT COUNT(DISTINCT household_id) FROM acks WHERE alert_id=?", (storm,))
    await expect(page.locator("#total-acked")).to_have_text(str(total))
    assert 0 < total < linli.store.scalar("SELECT COUNT(*) FROM households")  # mid-storm
    await shot(page, "dashboard-storm-full", full_page=True)
    publish(await shot(page, "dashboard-storm"), "dashboard.png")
    await context.close()


async def test_a_lead_sees_only_their_buildings(browser, linli, storm):
    lead = linli.store.q1(
        "SELECT r.*, l.node_id FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes n "
        "ON n.id=l.node_id WHERE n.kind='building' AND l.rank=0 ORDER BY n.id LIMIT 1")
    auth.create_user(linli.store, "louzhang", "lead-pw", resident_id=lead["id"])
    context, page = await new_page(browser)
    await login(page, linli.base, "louzhang", "lead-pw")
    await expect(page.locator("#whoami")).to_contain_text(lead["name"])
    await page.goto(f"{linli.base}/alerts/{storm}")
    buildings = page.locator("[data-building]")
    await expect(buildings).to_have_count(1)
    assert await buildings.get_attribute("data-building") == str(lead["node_id"])
    await expect(page.locator("#hops")).not_to_contain_text("党支部群")  # no grid-level rows
    await page.goto(f"{linli.base}/requests")
    options = await page.locator("select[name=building] option").all_inner_texts()
    assert len(options) == 2  # "全部" and their own building
    resp = await page.goto(f"{linli.base}/alerts/new")
    assert resp.status == 403
    await shot(page, "lead-requests")
    await context.close()


async def test_a_request_from_chat_is_accepted_and_resolved(browser, linli, storm):
    resident = oa_resident(linli.store, acked_for=storm)
    await say(linli, resident, "楼道的灯坏了，晚上很黑，麻烦来修一下")
    req = linli.store.q1("SELECT * FROM requests WHERE resident_id=? ORDER BY id DESC", (resident["id"],))
    assert req is not None and req["state"] == "filed"
    context, page = await new_page(browser)
    await login(page, linli.base, "admin", PASSWORD)
    await page.goto(f"{linli.base}/requests?state=filed")
    await page.click(f"#requests a[href='/requests/{req['id']}'] >> nth=0")
    await expect(page.locator("#request-text")).to_contain_text("楼道的灯坏了")
    await page.click("#accept")
    await expect(page.locator("#request-state")).to_have_text("已受理")
    await page.fill("textarea[name=note]", "电工已换好灯泡")
    await page.click("#resolve")
    await expect(page.locator("#request-state")).to_have_text("已办结")
    await expect(page.locator("#history")).to_contain_text("电工已换好灯泡")
    await shot(page, "request-resolved")
    await linli.app.settle()
    inbox = [d.text for d in linli.world.state.messages_for(resident["oa_openid"])]
    assert any(f"已登记 #{req['id']}" in t for t in inbox)
    assert any(f"#{req['id']} 已由" in t and "受理" in t for t in inbox)
    assert any(f"#{req['id']} 已办结：电工已换好灯泡" in t for t in inbox)
    await context.close()


async def test_posts_without_csrf_are_refused(browser, linli):
    context, page = await new_page(browser)
    await login(page, linli.base, "admin", PASSWORD)
    await expect(page.locator("#whoami")).to_be_visible()
    # same cookies as the page, but no token: what a cross-site form or script would send
    status = await page.evaluate("""() => fetch('/api/requests/1/accept', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)""")
    assert status == 403
    resp = await context.request.post(f"{linli.base}/alerts/new", form={
        "type": "暴雨", "colour": "red", "scope": "1", "step": "confirm"})
    assert resp.status == 403
    await context.close()


async def test_login_is_rate_limited(browser, linli):
    context, page = await new_page(browser)
    for _ in range(auth.MAX_FAILURES):
        await login(page, linli.base, "wangwu", "guess")
        await expect(page.locator("#login-error")).to_contain_text("不正确")
    await login(page, linli.base, "wangwu", "guess")
    await expect(page.locator("#login-error")).to_contain_text("10 分钟")
    await context.close()


async def test_error_pages_are_chinese_with_a_way_back(browser, linli, storm):
    """A 404 and a 403 are the dashboard's own styled pages, in Chinese, with a link that works."""
    lead = linli.store.q1(
        "SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes n "
        "ON n.id=l.node_id WHERE n.kind='building' AND l.rank=0 ORDER BY n.id DESC LIMIT 1")
    auth.create_user(linli.store, "louzhang2", "lead-pw-2", resident_id=lead["id"])
    context, page = await new_page(browser)
    await login(page, linli.base, "louzhang2", "lead-pw-2")
    await expect(page.locator("#whoami")).to_contain_text(lead["name"])
    resp = await page.goto(f"{linli.base}/alerts/999999")
    assert resp.status == 404
    await expect(page.locator("#error-page h1")).to_have_text("没有找到")
    await expect(page.locator("#error")).to_have_text("没有这条预警")
    await expect(page.locator("header.top .brand")).to_be_visible()  # styled: the dashboard's frame
    assert await page.locator("#error").evaluate("e => getComputedStyle(e).color") == "rgb(180, 35, 24)"
    await shot(page, "error-404")
    await page.click("#error-back")
    await page.wait_for_url(f"{linli.base}/")
    resp = await page.goto(f"{linli.base}/alerts/new")
    assert resp.status == 403
    await expect(page.locator("#error-page h1")).to_have_text("没有权限")
    await expect(page.locator("#error")).to_contain_text("只有社区工作人员")
    await shot(page, "error-403")
    await page.click("#error-back")
    await page.wait_for_url(f"{linli.base}/")
    await expect(page.locator("#alerts")).to_be_visible()
    await context.close()
