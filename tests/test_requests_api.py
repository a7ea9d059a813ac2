"""The requests JSON API's row cap: ?limit= is clamped to 1..LIST_MAX, nonsense is a 400."""
from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from request_world import build, person

from bot.domain import requests as R
from bot.web.requests_api import add_request_routes


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "LIST_MAX", 3)  # the cap, small enough to fill in a test
    app = build(tmp_path)
    for i in range(5):
        R.file_request(app, resident=person(app, "王小明"), text=f"楼道灯坏了 {i}")
    return app


async def _get(app, params):
    wa = web.Application()
    add_request_routes(wa, app, lambda request: person(app, "陈书记"))
    async with TestClient(TestServer(wa)) as client:
        resp = await client.get("/api/requests", params=params)
        body = await (resp.json() if resp.content_type == "application/json" else resp.text())
        return resp.status, body


@pytest.mark.parametrize("limit, rows", [(None, 3), ("2", 2), ("1", 1), ("3", 3), ("4", 3),
                                         ("1000000", 3)])
async def test_limit_is_clamped_to_the_cap(app, limit, rows):
    status, body = await _get(app, {} if limit is None else {"limit": limit})
    assert status == 200 and len(body["requests"]) == rows
    assert [r["id"] for r in body["requests"]] == [5, 4, 3][:rows]  # newest first


@pytest.mark.parametrize("limit", ["-1", "0", "abc", "1.5", " ", "1e3", "-99999999999999999999"])
async def test_nonsense_limit_is_a_400_that_says_why(app, limit):
    status, body = await _get(app, {"limit": limit})
    assert status == 400 and "limit must be a whole number from 1 to 3" in body


def test_the_domain_never_lifts_the_cap(app):
    staff = person(app, "陈书记")
    assert len(R.list_requests(app.store, staff)) == 3
    assert len(R.list_requests(app.store, staff, limit=10**9)) == 3
    for bad in (0, -1):
        with pytest.raises(R.BadInput, match="limit"):
            R.list_requests(app.store, staff, limit=bad)
