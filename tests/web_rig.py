"""What the dashboard page tests share: an HTTP client on the rig's server and signing in."""
from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient


@pytest.fixture
async def client(rig):
    client = TestClient(rig.server)
    await client.start_server()
    yield client
    await client.close()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf(?:-token)?" (?:value|content)="([^"]+)"', html).group(1)


async def sign_in(client, username: str, password: str) -> str:
    """Log in through the form (CSRF included); returns the session's CSRF token for POSTs."""
    page = await client.get("/login")
    resp = await client.post("/login", data={"csrf": csrf_of(await page.text()), "username": username,
                                             "password": password}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return csrf_of(await (await client.get("/")).text())
