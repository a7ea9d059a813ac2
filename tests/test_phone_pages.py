"""Every dashboard page the office uses, on a phone (375×812, 360×740) and on a desktop (1360×900),
in headless Chromium (issue #13 item 1): the document is never wider than the viewport (nothing
scrolls sideways), the header's words and people's names do not wrap one character per line, and
each page's main action is visible and clickable (Playwright's actionability check, without
clicking). Saves the phone screenshot the README shows (docs/img/phone.png)."""
from __future__ import annotations

import re

import pytest

try:
    from playwright.async_api import expect
except ImportError:  # the `browser` fixture then fails (CI) or skips (locally) with the reason
    expect = None

import browser_rig
from browser_rig import PASSWORD, login, publish, shot
from sim_rig import staff

from bot.data import sends as sends_data
from bot.domain import alerts, feed
from bot.domain import requests as R
from bot.domain.alerts import Draft
from bot.domain.feed import CapArea, CapMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")
browser, linli = browser_rig.browser, browser_rig.linli  # fixtures, found by name

PHONES = {"phone-375": {"width": 375, "height": 812}, "phone-360": {"width": 360, "height": 740}}
DESKTOP = {"desktop": browser_rig.VIEWPORT}


@pytest.fixture(scope="module")
def world(linli):
    """What the pages show: a red storm (follow-up tasks), a request, a dead send, a held CAP message."""
    store = linli.store
    boss = staff(store)
    alert_id = alerts.issue(linli.app, Draft(type="雷雨大风", colour="red", issuer_id=boss["id"]))
    resident = store.q1("SELECT r.*, h.label FROM residents r JOIN households h ON h.id=r.household_id "
                        "WHERE r.active=1 ORDER BY r.id LIMIT 1")
    req = R.file_request(linli.app, resident=resident,
                         text="地下车库入口积水已经没过脚踝，电动车推不出来，麻烦尽快派人来看看")
    sid = linli.app.outbox.enqueue("phone-test-dead", "wecom_user", "nobody", {"text": "x"}, alert_id=alert_id,
                                   purpose="direct")
    sends_data.record(store, sid, state="dead", attempts=5, error_code=60020,
                      error="errcode 60020: not allow to access from your ip, hint: [1717200000_12_abcdef]",
                      next_at=None, sent_at=None)
    feed.receive(linli.app, CapMessage(identifier="phone-held", sender="gd-weather", sent="2024-06-01T08:00:00+08:00",
                                       sent_at=None, status="actual", msg_type="alert", type="暴雨", colour="orange",
                                       areas=[CapArea(desc="大龙街道以外的某个很长很长的区域名称")]))
    return {"alert": alert_id, "request": req["id"], "resident": resident}


# (name, path or None for the composer's preview, the main action's selector)
def pages(w) -> list[tuple[str, str | None, str]]:
    return [
        ("home", "/", "#new-alert"),
        ("followups", "/followups", "form.visit button >> nth=0"),
        ("requests", "/requests", "#filters button"),
        ("request", f"/requests/{w['request']}", "#accept"),
        ("register", f"/register?q={w['resident']['name']}", "#search"),
        ("household", f"/register/households/{w['resident']['household_id']}", "#members"),
        ("compose", "/alerts/new", "#preview"),
        ("preview", None, "#confirm"),
        ("undelivered", "/undelivered", ".retry >> nth=0"),
        # the community's own loops (their own browser tests go deeper)
        ("consultations", "/consultations", "#new-consultation"),
        ("claims", "/claims", "#wish-submit"),
        ("volunteers", "/volunteers", "#volunteers-xlsx"),
        ("scores", "/scores", "#publish"),
    ]


LAYOUT = """(width) => {
  const doc = document.documentElement;
  const squeezed = [];  // names and header words narrower than two characters: one per line
  for (const el of document.querySelectorAll(
      "header.top a, header.top .brand, #whoami, td.name, td[data-label='姓名'], td[data-label='住户'], dl.facts dd")) {
    const text = el.textContent.trim();
    if (text.length < 2 || el.offsetParent === null) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (el.getBoundingClientRect().width < 1.9 * size) squeezed.push(text.slice(0, 20));
  }
  const wrapped = [];  // header words broken across lines
  for (const el of document.querySelectorAll("header.top .brand, header.top nav a, #whoami")) {
    if (el.getClientRects().length > 1) wrapped.push(el.textContent.trim());
  }
  const wide = [];  // what sticks out on the right, to name in a failure
  for (const el of document.querySelectorAll("body *")) {
    if (el.getBoundingClientRect().right > width + 0.5 && wide.length < 5)
      wide.push(el.tagName.toLowerCase() + "." + el.className + " " + el.textContent.trim().slice(0, 20));
  }
  return {scrollWidth: doc.scrollWidth, innerWidth: window.innerWidth, squeezed, wrapped, wide};
}"""


async def check_layout(page, label: str, width: int) -> dict:
    """`width`: the device's; on a phone the browser widens its layout viewport (innerWidth) to
    whatever overflows, so only the device width tells."""
    got = await page.evaluate(LAYOUT, width)
    assert got["scrollWidth"] <= min(width, got["innerWidth"]), \
        f"{label}: {got['scrollWidth']}px wide on a {width}px screen: {got['wide']}"
    assert got["squeezed"] == [], f"{label}: squeezed {got['squeezed']}"
    assert got["wrapped"] == [], f"{label}: wrapped {got['wrapped']}"
    return got


async def check_action(page, selector: str, label: str) -> None:
    action = page.locator(selector)
    await action.scroll_into_view_if_needed()
    await expect(action).to_be_visible()
    await action.click(trial=True)  # visible, stable, enabled and not covered by anything


async def walk(browser, linli, w, name: str, viewport: dict) -> dict:
    phone = viewport["width"] < 700
    context = await browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai",
                                        is_mobile=phone, has_touch=phone)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    widths = {}
    try:
        await page.goto(f"{linli.base}/login")
        widths["login"] = (await check_layout(page, f"{name} login", viewport["width"]))["scrollWidth"]
        await check_action(page, "#login-submit", f"{name} login")
        await login(page, linli.base, "admin", PASSWORD)
        await expect(page.locator("#whoami")).to_be_visible()
        for label, path, action in pages(w):
            if path is None:  # the preview: reached by the composer's own button
                await page.goto(f"{linli.base}/alerts/new")
                grid = linli.store.q1("SELECT id FROM nodes WHERE kind='grid' ORDER BY id LIMIT 1")["id"]
                await page.check(f"input[name=scope][value='{grid}']")
                await page.click("#preview")
                await expect(page.locator("#preview-message")).to_be_visible()
            else:
                resp = await page.goto(f"{linli.base}{path}")
                assert resp.status == 200, f"{name} {label}: {resp.status}"
            widths[label] = (await check_layout(page, f"{name} {label}", viewport["width"]))["scrollWidth"]
            await check_action(page, action, f"{name} {label}")
            if phone:
                await shot(page, f"{name}-{label}")
    finally:
        await context.close()
    return widths


@pytest.mark.parametrize("name", list(PHONES))
async def test_every_page_fits_a_phone_and_its_main_action_works(browser, linli, world, name):
    widths = await walk(browser, linli, world, name, PHONES[name])
    assert set(widths) == {"login"} | {label for label, _, _ in pages(world)}
    assert max(widths.values()) <= PHONES[name]["width"]


async def test_every_page_still_works_on_a_desktop(browser, linli, world):
    widths = await walk(browser, linli, world, "desktop", DESKTOP["desktop"])
    assert max(widths.values()) <= DESKTOP["desktop"]["width"]


async def test_the_phone_screenshot_for_the_readme(browser, linli, world):
    context = await browser.new_context(viewport=PHONES["phone-375"], locale="zh-CN", timezone_id="Asia/Shanghai",
                                        is_mobile=True, has_touch=True, device_scale_factor=2)
    page = await context.new_page()
    await login(page, linli.base, "admin", PASSWORD)
    await page.goto(f"{linli.base}/followups")
    await expect(page.locator("form.visit").first).to_be_visible()
    # record one visit from the phone, as a social worker at the door would
    row = page.locator("tr.task").first
    await row.locator("select[name=outcome]").select_option("safe")
    await row.locator("form.visit button").click()
    await page.wait_for_url(re.compile(r"/followups\?saved=\d+"))
    await expect(page.locator("#followup-saved")).to_be_visible()
    await page.evaluate("window.scrollTo(0, 0)")  # the header, the totals and the saved note
    dest = publish(await shot(page, "phone-followups"), "phone.png")
    assert dest.stat().st_size > 10_000
    await context.close()


async def test_the_favicon_is_served(browser, linli):
    context = await browser.new_context()
    resp = await context.request.get(f"{linli.base}/favicon.ico")
    assert resp.status == 200 and (await resp.body())[:4] == b"\x00\x00\x01\x00"  # an ICO file
    svg = await context.request.get(f"{linli.base}/static/favicon.svg")
    assert svg.status == 200 and b"<svg" in await svg.body()
    await context.close()


async def test_the_composer_follows_the_choice_on_a_phone(browser, linli, world):
    """通知 hides the colours; a colour the signal lacks cannot be picked; categories show only for
    "vulnerable households only"; the notice is issued through the form."""
    context = await browser.new_context(viewport=PHONES["phone-360"], locale="zh-CN", timezone_id="Asia/Shanghai",
                                        is_mobile=True, has_touch=True)
    page = await context.new_page()
    await login(page, linli.base, "admin", PASSWORD)
    await page.goto(f"{linli.base}/alerts/new")
    await expect(page.locator("#categories")).to_be_hidden()
    await page.check("#audience-vulnerable")
    await expect(page.locator("#categories")).to_be_visible()
    await page.check("#audience-all")
    await page.select_option("#type", "高温")
    await expect(page.locator("input[name=colour][value=blue]")).to_be_disabled()
    await expect(page.locator("input[name=colour][value=yellow]")).to_be_checked()
    await expect(page.locator("#text")).to_have_value(re.compile("高温黄色预警信号"))
    await page.select_option("#type", "通知")
    await expect(page.locator("#colours")).to_be_hidden()
    await expect(page.locator("#text")).to_have_value("请留意社区的后续通知。")
    await page.fill("#text", "明天上午九点社区停水检修")
    grid = linli.store.q1("SELECT * FROM nodes WHERE kind='grid' ORDER BY id LIMIT 1")
    await page.check(f"input[name=scope][value='{grid['id']}']")
    await page.click("#preview")
    await expect(page.locator("#preview-type")).to_have_text("通知（不是预警）")
    await expect(page.locator("#preview-scope")).to_have_text(grid["name"])
    await page.click("#confirm")
    await page.wait_for_url(re.compile(r"/alerts/\d+$"))
    alert = linli.store.q1("SELECT * FROM alerts WHERE id=?", (int(page.url.rsplit("/", 1)[1]),))
    assert (alert["kind"], alert["text"]) == ("notice", "明天上午九点社区停水检修")
    await context.close()


async def test_a_leads_pages_fit_a_phone_too(browser, linli, world):
    """A lead's header carries their name and the 仅看负责楼栋 badge: still one line each, no sideways scroll."""
    from bot.web import auth

    lead = linli.store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes n "
                          "ON n.id=l.node_id WHERE n.kind='grid' AND l.rank=0 ORDER BY n.id LIMIT 1")
    auth.create_user(linli.store, "wangge", "grid-pw", resident_id=lead["id"])
    context = await browser.new_context(viewport=PHONES["phone-360"], locale="zh-CN", timezone_id="Asia/Shanghai",
                                        is_mobile=True, has_touch=True)
    page = await context.new_page()
    await login(page, linli.base, "wangge", "grid-pw")
    await expect(page.locator("header .area")).to_have_text("仅看负责楼栋")
    for path, action in (("/", "#alerts a >> nth=0"), ("/followups", "form.visit button >> nth=0"),
                         ("/requests", "#filters button")):
        resp = await page.goto(f"{linli.base}{path}")
        assert resp.status == 200
        await check_layout(page, f"lead {path}", 360)
        await check_action(page, action, f"lead {path}")
    assert await page.locator("a[href='/undelivered']").count() == 0
    await context.close()
