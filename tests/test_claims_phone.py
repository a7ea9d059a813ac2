"""The volunteer's claims link on a phone (375×812) in headless Chromium: the page fits, 认领 and
完成 (hours, a note) work by tapping; the dashboard's /claims and /volunteers fit a phone too."""
from __future__ import annotations

import pytest

try:
    from playwright.async_api import expect
except ImportError:  # the `browser` fixture then fails (CI) or skips (locally) with the reason
    expect = None

import browser_rig
from browser_rig import PASSWORD, login, shot
from sim_rig import staff
from test_phone_pages import check_layout

from bot.domain import claims
from bot.domain import requests as R

pytestmark = pytest.mark.asyncio(loop_scope="module")
browser, linli = browser_rig.browser, browser_rig.linli  # fixtures, found by name
PHONE = {"width": 375, "height": 812}


async def phone_page(browser):
    context = await browser.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai",
                                        is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    return context, await context.new_page()


async def test_a_volunteer_claims_and_completes_a_wish_on_a_phone(browser, linli):
    resident = linli.store.q1("SELECT * FROM residents WHERE household_id IS NOT NULL AND active=1 "
                              "AND oa_openid IS NOT NULL ORDER BY id LIMIT 1")
    req = claims.file_wish(linli.app, staff(linli.store),
                           "帮独居老人换厨房的灯泡，老人腿脚不便，最好下午三点以后上门",
                           household_id=resident["household_id"])
    volunteer = [p for p in claims.volunteers_for(linli.app, req) if "staff" not in p["roles"]][0]
    context, page = await phone_page(browser)
    try:
        await page.goto(f"{linli.base}/claims/{claims.link_token(linli.app, volunteer)}")
        await check_layout(page, "volunteer link", PHONE["width"])
        await page.click(f"#claim-{req['id']}")
        await expect(page.locator("#outcome")).to_contain_text("认领成功")
        await expect(page.locator(f"#held-{req['id']}")).to_contain_text(resident["name"])
        await check_layout(page, "volunteer link, claimed", PHONE["width"])
        await shot(page, "claims-volunteer-phone")
        held = page.locator(f"#held-{req['id']}")
        await held.locator("input[name=hours]").fill("1.5")
        await held.locator("input[name=note]").fill("已换好灯泡")
        await page.click(f"#complete-{req['id']}")
        await expect(page.locator("#outcome")).to_contain_text("已完成")
    finally:
        await context.close()
    row = R.get(linli.store, req["id"])
    assert (row["state"], row["hours"], row["claimed_by"]) == ("resolved", 1.5, volunteer["id"])


async def test_the_claims_board_and_the_volunteer_figures_fit_a_phone(browser, linli):
    context, page = await phone_page(browser)
    try:
        await login(page, linli.base, "admin", PASSWORD)
        for path, action in (("/claims", "#wish-submit"), ("/volunteers", "#volunteers-xlsx")):
            resp = await page.goto(f"{linli.base}{path}")
            assert resp.status == 200
            await check_layout(page, path, PHONE["width"])
            await expect(page.locator(action)).to_be_visible()
    finally:
        await context.close()
