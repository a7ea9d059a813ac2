"""The 流动小红旗 page in headless Chromium, on a desktop and a 360 px phone: nothing scrolls
sideways, building names do not wrap one character per line, the 发布 button and the 互评 form
work; publishing from the phone freezes the month."""
from __future__ import annotations

import re

import pytest

try:
    from playwright.async_api import expect
except ImportError:  # the `browser` fixture then fails (CI) or skips (locally) with the reason
    expect = None

import browser_rig
from browser_rig import PASSWORD, login, shot
from sim_rig import staff
from test_phone_pages import check_action, check_layout

from bot.domain import scores
from bot.web import auth

pytestmark = pytest.mark.asyncio(loop_scope="module")
browser, linli = browser_rig.browser, browser_rig.linli  # fixtures, found by name

VIEWPORTS = {"desktop": browser_rig.VIEWPORT, "phone-360": {"width": 360, "height": 740}}
MONTH = "2024-06"


@pytest.fixture(scope="module")
def evaluator(linli):
    """A compound lead (the register names none: 大龙一区's first building lead leads it too) and
    a few cross-evaluation scores, so the table has peer averages and imputed medians."""
    store = linli.store
    compound = store.q1("SELECT id FROM nodes WHERE kind='compound' ORDER BY id LIMIT 1")["id"]
    lead = store.q1("SELECT r.* FROM residents r JOIN node_leads l ON l.resident_id=r.id "
                    "JOIN nodes b ON b.id=l.node_id WHERE b.parent_id=? ORDER BY r.id LIMIT 1", (compound,))
    store.db["node_leads"].insert({"node_id": compound, "resident_id": lead["id"], "rank": 0})
    others = store.q("SELECT b.id FROM nodes b JOIN nodes c ON c.id=b.parent_id "
                     "WHERE b.kind='building' AND c.id != ? ORDER BY b.id LIMIT 3", (compound,))
    for n, b in enumerate(others):
        scores.enter_peer_scores(linli.app, lead, b["id"], MONTH, {"safety": 9 - n, "hygiene": 8, "civility": 7 + n})
    auth.create_user(store, "scores-lead", "scores-lead-pw", resident_id=lead["id"])
    return {"lead": lead, "others": [b["id"] for b in others], "staff": staff(store)}


def _dismiss_noting(asked: list[str]):
    """A dialog handler that answers 取消 (window.confirm returns false) and notes the question."""
    async def handler(dialog):
        asked.append(dialog.message)
        await dialog.dismiss()
    return handler


async def _page(browser, name: str):
    viewport = VIEWPORTS[name]
    phone = viewport["width"] < 700
    context = await browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai",
                                        is_mobile=phone, has_touch=phone)
    context.set_default_timeout(15_000)
    return context, await context.new_page()


@pytest.mark.parametrize("name", list(VIEWPORTS))
async def test_the_ranking_fits_and_the_lead_can_enter_scores(browser, linli, evaluator, name):
    context, page = await _page(browser, name)
    try:
        await login(page, linli.base, "scores-lead", "scores-lead-pw")
        await expect(page.locator("#whoami")).to_be_visible()
        resp = await page.goto(f"{linli.base}/scores?month={MONTH}")
        assert resp.status == 200
        await check_layout(page, f"{name} scores (lead)", VIEWPORTS[name]["width"])
        await check_action(page, "#peer-submit", f"{name} scores (lead)")
        # enter a score through the form, as a compound lead on their phone would
        target = evaluator["others"][0]
        await page.select_option("#peer-form select[name=building]", str(target))
        await page.fill("#peer-form input[name=safety]", "6")
        await page.click("#peer-submit")
        await page.wait_for_url(re.compile(r"/scores\?month=2024-06&saved=peer"))
        await expect(page.locator("#peer-saved")).to_be_visible()
        assert linli.store.scalar("SELECT score FROM peer_scores WHERE building_id=? AND by_id=? AND category='safety'",
                                  (target, evaluator["lead"]["id"])) == 6
        await shot(page, f"scores-lead-{name}")
    finally:
        await context.close()


async def test_staff_see_everything_and_publish_from_a_phone(browser, linli, evaluator):
    for name in ("desktop", "phone-360"):
        context, page = await _page(browser, name)
        try:
            await login(page, linli.base, "admin", PASSWORD)
            await page.goto(f"{linli.base}/scores?month={MONTH}")
            rows = page.locator("#score-table tbody tr")
            assert await rows.count() == linli.store.scalar(
                "SELECT COUNT(DISTINCT building_id) FROM households WHERE active=1")
            await expect(page.locator("#score-table tbody tr").first.locator("td.rank")).to_contain_text("1")
            await check_layout(page, f"{name} scores (staff)", VIEWPORTS[name]["width"])
            await check_action(page, "#publish", f"{name} scores (staff)")
            if name == "phone-360":
                # the browser asks first: dismissed, nothing is published
                asked: list[str] = []
                page.once("dialog", _dismiss_noting(asked))
                await page.click("#publish")
                await expect(page.locator("#publish")).to_be_visible()
                assert asked and "确定发布2024年6月的流动小红旗榜" in asked[0]
                assert linli.store.scalar("SELECT COUNT(*) FROM score_months WHERE month=?", (MONTH,)) == 0
                page.once("dialog", lambda dialog: dialog.accept())
                await page.click("#publish")
                await page.wait_for_url(re.compile(r"saved=published"))
                await expect(page.locator("#published-saved")).to_be_visible()
                await expect(page.locator("#publish")).to_have_count(0)
                await check_layout(page, f"{name} scores (published)", VIEWPORTS[name]["width"])
                await shot(page, f"scores-published-{name}")
        finally:
            await context.close()
    assert linli.store.scalar("SELECT alert_id FROM score_months WHERE month=?", (MONTH,)) is not None
