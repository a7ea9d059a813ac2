"""Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by Playwright.

Never `playwright install` (it downloads a browser from a CDN): scripts/setup_browser.sh installs
the distribution's package. A missing browser FAILS the run in CI (CI=true) and skips locally.

Reusable by any browser test module (the dashboard's, the chat window's):

    from browser_rig import browser, linli, new_page, shot   # noqa: F401 (fixtures)
    pytestmark = pytest.mark.asyncio(loop_scope="module")

- `browser`: one Chromium per test module (module-scoped, on the module's event loop);
- `linli`: one Linli + local world per module (tests/sim_rig.py), dashboard password PASSWORD,
  live pages polling fast; `linli.base` is the dashboard URL, `linli.world.url` the world's;
- `new_page(browser)`: a fresh context (own cookies) and page, for one person;
- `login(page, base, username, password)`, `shot(page, name)`: screenshots land in
  tests/artifacts/ (git-ignored); `publish(path, name)` copies one to docs/img/ for the README.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import pytest_asyncio
from sim_rig import close_sim, make_sim

CHROMIUM = os.environ.get("LINLI_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_IMG = ROOT / "docs" / "img"
PASSWORD = "storm-2024"
VIEWPORT = {"width": 1360, "height": 900}


def _unavailable(reason: str):
    """In CI a browser test that cannot run is a failure, not a silent skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_chromium() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM}; run scripts/setup_browser.sh "
                     "or set LINLI_CHROMIUM")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    path = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # launch() gives every run a fresh temporary profile (user-data-dir) and removes it after
        b = await pw.chromium.launch(executable_path=path, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def linli(tmp_path_factory):
    rig = await make_sim(tmp_path_factory.mktemp("browser"), households=400, seed=11,
                         dashboard={"password": PASSWORD})
    from bot.web.dashboard import OPTIONS

    rig.server.app[OPTIONS].streams.poll_s = 0.1  # wall seconds between live-page checks
    rig.server.app[OPTIONS].live.poll_s = 0.1
    rig.base = str(rig.server.make_url("")).rstrip("/")
    try:
        yield rig
    finally:
        await rig.server.app[OPTIONS].streams.shutdown()
        await close_sim(rig)


async def new_page(browser):
    context = await browser.new_context(viewport=VIEWPORT, locale="zh-CN",
                                        timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    return context, await context.new_page()


async def login(page, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("#login-submit")


async def shot(page, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


def publish(path: Path, name: str) -> Path:
    """Copy a screenshot to docs/img/ (the README shows it) when LINLI_PUBLISH_SCREENSHOTS=1 is
    set for the run: a normal test run leaves the checkout as it found it."""
    if os.environ.get("LINLI_PUBLISH_SCREENSHOTS") != "1":
        return path
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    dest = DOCS_IMG / name
    shutil.copyfile(path, dest)
    return dest
