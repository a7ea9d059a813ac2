"""The 议事 pages in headless Chromium at desktop width and on a 360 px phone: the list, the form, the
live tally with its proxy form, and the residents' vote page: nothing wider than the screen, the main
action visible and clickable; a vote cast by tapping on the phone is recorded and shown."""
from __future__ import annotations

import pytest

try:
    from playwright.async_api import expect
except ImportError:  # the `browser` fixture then fails (CI) or skips (locally) with the reason
    expect = None

import browser_rig
from browser_rig import PASSWORD, login, shot
from sim_rig import T0, staff
from test_phone_pages import check_action, check_layout

from bot.domain import consult
from bot.domain.consult import ConsultDraft

pytestmark = pytest.mark.asyncio(loop_scope="module")
browser, linli = browser_rig.browser, browser_rig.linli  # fixtures, found by name

SIZES = {"desktop": browser_rig.VIEWPORT, "phone-360": {"width": 360, "height": 740}}


@pytest.fixture(scope="module")
def world(linli):
    store = linli.store
    b = store.q1("SELECT n.* FROM nodes n WHERE kind='building' AND (SELECT COUNT(*) FROM households h "
                 "WHERE h.building_id=n.id AND h.active=1) >= 3 ORDER BY id LIMIT 1")
    cid = consult.open(linli.app, ConsultDraft(
        question="3栋2单元加装电梯：费用按楼层分摊，一楼不出资，施工期间楼道临时封闭约三个月，请各位业主表决",
        closes_at=T0 + 7 * 86400, scope=[b["id"]], opened_by=staff(store)["id"], threshold=(2, 3)))
    hs = store.q("SELECT * FROM households WHERE building_id=? AND active=1 ORDER BY id", (b["id"],))
    consult.vote(linli.app, cid, hs[1]["id"], 1, channel="link")
    return {"id": cid, "households": hs}


def pages(w) -> list[tuple[str, str, str]]:
    return [("list", "/consultations", "#new-consultation"),
            ("new", "/consultations/new", "#open-consultation"),
            ("tally", f"/consultations/{w['id']}", "#proxy-vote")]


async def _context(browser, viewport):
    phone = viewport["width"] < 700
    context = await browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai",
                                        is_mobile=phone, has_touch=phone)
    context.set_default_timeout(15_000)
    return context


@pytest.mark.parametrize("name", list(SIZES))
async def test_the_dashboard_pages_fit_and_their_actions_work(browser, linli, world, name):
    viewport = SIZES[name]
    context = await _context(browser, viewport)
    page = await context.new_page()
    try:
        await login(page, linli.base, "admin", PASSWORD)
        await expect(page.locator("#whoami")).to_be_visible()
        for label, path, action in pages(world):
            resp = await page.goto(f"{linli.base}{path}")
            assert resp.status == 200, f"{name} {label}: {resp.status}"
            await check_layout(page, f"{name} {label}", viewport["width"])
            await check_action(page, action, f"{name} {label}")
            await shot(page, f"consult-{name}-{label}")
        await expect(page.locator(f"#household-{world['households'][1]['id']}")).to_contain_text("不同意")
    finally:
        await context.close()


@pytest.mark.parametrize("name", list(SIZES))
async def test_the_vote_page_fits_and_a_tap_records_the_vote(browser, linli, world, name):
    viewport = SIZES[name]
    hid = world["households"][0 if name == "desktop" else 2]["id"]
    context = await _context(browser, viewport)
    page = await context.new_page()
    try:
        resp = await page.goto(f"{linli.base}/vote/{consult.vote_token(linli.app, world['id'], hid)}")
        assert resp.status == 200
        await check_layout(page, f"{name} vote", viewport["width"])
        await check_action(page, "#choice-0", f"{name} vote")
        await page.click("#choice-0")
        await expect(page.locator("#done")).to_contain_text("同意")
        await expect(page.locator("#choice-0")).to_be_disabled()
        await shot(page, f"consult-{name}-vote")
        assert consult.current_choice(linli.app, world["id"], hid) == 0
    finally:
        await context.close()


async def test_the_tally_updates_live_and_a_half_filled_proxy_form_survives(browser, linli, world, monkeypatch):
    """A vote cast while the page is open appears within the poll interval without a reload; the proxy
    form keeps what the lead picked; closing stops the updates and says so."""
    from bot.web import consult_pages

    monkeypatch.setattr(consult_pages, "POLL_S", 0.2)
    store = linli.store
    hs = world["households"]
    cid = consult.open(linli.app, ConsultDraft(question="楼道堆物清理", closes_at=T0 + 7 * 86400,
                                               scope=[hs[0]["building_id"]], opened_by=staff(store)["id"]))
    context = await _context(browser, browser_rig.VIEWPORT)
    page = await context.new_page()
    try:
        await login(page, linli.base, "admin", PASSWORD)
        await page.goto(f"{linli.base}/consultations/{cid}")
        await expect(page.locator("#live-on")).to_be_visible()  # the script runs
        await expect(page.locator("#turnout")).to_contain_text(f"0/{len(hs)}")
        await page.select_option("#proxy select[name=household]", str(hs[-1]["id"]))
        await page.select_option("#proxy select[name=choice]", "2")
        await page.evaluate("window.__notReloaded = 42")
        consult.vote(linli.app, cid, hs[0]["id"], 1, channel="link")
        await expect(page.locator("#turnout")).to_contain_text(f"1/{len(hs)}", timeout=10_000)
        await expect(page.locator(f"#household-{hs[0]['id']}")).to_contain_text("不同意")
        await expect(page.locator("#tally [data-option='1'] b")).to_have_text("1")
        assert await page.evaluate("window.__notReloaded") == 42
        assert await page.input_value("#proxy select[name=household]") == str(hs[-1]["id"])
        assert await page.input_value("#proxy select[name=choice]") == "2"
        consult.close(linli.app, cid)
        await expect(page.locator("#live-closed")).to_be_visible(timeout=10_000)
        await expect(page.locator("#live-on")).to_be_hidden()
        assert await page.evaluate("window.__notReloaded") == 42
    finally:
        await context.close()


async def test_an_owner_picks_their_name_then_votes_on_the_phone(browser, linli, world):
    store = linli.store
    b = world["households"][0]["building_id"]
    cid = consult.open(linli.app, ConsultDraft(question="更换单元门禁", closes_at=T0 + 7 * 86400, scope=[b],
                                               electorate="owners", basis="owners",
                                               opened_by=staff(store)["id"]))
    hid = store.q1("SELECT household_id FROM consultation_voters WHERE consultation_id=? ORDER BY household_id "
                   "LIMIT 1", (cid,))["household_id"]
    owner = consult.owners(linli.app, hid)[-1]
    viewport = SIZES["phone-360"]
    context = await _context(browser, viewport)
    page = await context.new_page()
    try:
        resp = await page.goto(f"{linli.base}/vote/{consult.vote_token(linli.app, cid, hid)}")
        assert resp.status == 200
        await check_layout(page, "phone-360 owner vote", viewport["width"])
        await page.check(f"#owner-{owner['id']}")
        await page.click("#choice-0")
        await expect(page.locator("#done")).to_contain_text("同意")
        await shot(page, "consult-phone-360-owner-vote")
        ballot = consult.current_ballot(linli.app, cid, hid)
        assert (ballot["choice"], ballot["resident_id"], ballot["channel"]) == (0, owner["id"], "link")
    finally:
        await context.close()
