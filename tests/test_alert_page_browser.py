"""The alert page on a phone (issue #13 item 1) and an ended warning (item 7), in headless Chromium
against the real app and the local world (tests/browser_rig.py). No sleeps: Playwright's own
waiting, and layout read from the page."""
from __future__ import annotations

import re

import pytest

try:
    from playwright.async_api import expect
except ImportError:  # the `browser` fixture then fails (CI) or skips (locally) with the reason
    expect = None

import browser_rig
from browser_rig import PASSWORD, login, shot
from sim_rig import run_until, staff

from bot.domain import alerts
from bot.domain.alerts import Draft

pytestmark = pytest.mark.asyncio(loop_scope="module")
browser, linli = browser_rig.browser, browser_rig.linli  # fixtures, found by name

PHONES = [(375, 812), (360, 740), (414, 896)]


@pytest.fixture(scope="module")
def storm(linli):
    return alerts.issue(linli.app, Draft(type="暴雨", colour="orange", issuer_id=staff(linli.store)["id"]))


async def phone_page(browser, width: int, height: int):
    context = await browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN",
                                        timezone_id="Asia/Shanghai", is_mobile=True, has_touch=True,
                                        device_scale_factor=2)
    context.set_default_timeout(15_000)
    return context, await context.new_page()


async def overflow(page) -> dict:
    """How far the page reaches past the screen's right edge, and the widest offender."""
    return await page.evaluate("""() => {
        const w = document.documentElement.clientWidth;
        let worst = null;
        for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.width && r.right > w + 0.5 && !el.closest('.scroll')) {
                if (!worst || r.right > worst.right) worst = {tag: el.tagName, cls: el.className.baseVal ?? el.className, right: r.right};
            }
        }
        return {scroll: document.documentElement.scrollWidth, width: w, worst};
    }""")


async def test_the_alert_page_fits_a_phone_with_the_main_figures_on_top(browser, linli, storm):
    await linli.app.settle()
    await run_until(linli.app, linli.world, linli.clock.now() + 240)  # some acks, hops done
    for width, height in PHONES:
        context, page = await phone_page(browser, width, height)
        await login(page, linli.base, "admin", PASSWORD)
        await page.goto(f"{linli.base}/alerts/{storm}")
        await expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
        found = await overflow(page)
        assert found["scroll"] <= found["width"] and found["worst"] is None, found
        # one evaluation reads both boxes: a live update may replace the section between two calls
        # (a detached element has no box), as it did once under a loaded full run
        pct, tree = await page.evaluate("""() => ['#total-pct', '#coverage-tree'].map(s => {
            const r = document.querySelector(s).getBoundingClientRect();
            return {y: r.top + window.scrollY, height: r.height};
        })""")
        assert pct["y"] + pct["height"] <= height  # the coverage figure is on the first screen
        assert pct["y"] < tree["y"]
        if width == 375:
            await shot(page, "alert-phone-375")
        await context.close()


async def test_an_ended_warning_shows_ended_and_opens_no_stream(browser, linli):
    alert_id = alerts.issue(linli.app, Draft(type="大风", colour="blue", issuer_id=staff(linli.store)["id"]))
    await linli.app.settle()
    alerts.follow_on(linli.app, alert_id, "lift", text="", issuer_id=staff(linli.store)["id"])
    await linli.app.settle()
    context, page = await phone_page(browser, 375, 812)
    streams = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    await login(page, linli.base, "admin", PASSWORD)
    await page.goto(f"{linli.base}/alerts/{alert_id}")
    await expect(page.locator("#ended-banner")).to_be_visible()
    await expect(page.locator("#ended-banner")).to_contain_text("已结束")
    await expect(page.locator("#ended-state")).to_have_text("已结束")
    await expect(page.locator("#live")).to_have_count(0)
    await expect(page.locator("#lift")).to_have_count(0)  # nothing left to lift
    found = await overflow(page)
    assert found["scroll"] <= found["width"], found
    assert streams == []
    await context.close()
