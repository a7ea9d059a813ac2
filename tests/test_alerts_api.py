"""The warnings JSON API: staff issue (with preview), update and lift; leads read their area only;
no CSRF token, no write."""
from aiohttp.test_utils import TestClient
from test_dashboard import building_lead, client, login, rig, session_csrf  # noqa: F401 (fixtures)

from bot.web import auth


async def test_issue_update_lift_and_read(rig, client):
    await login(client)
    token = await session_csrf(client)
    h = {"X-CSRF-Token": token}
    preview = await client.post("/api/alerts", json={"type": "台风", "colour": "橙色", "preview": True}, headers=h)
    body = await preview.json()
    assert preview.status == 200 and "台风橙色预警" in body["text"] and "2 需要帮助" in body["text"]
    assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 0
    resp = await client.post("/api/alerts", json={"type": "台风", "colour": "orange", "scope": ["第一网格"]}, headers=h)
    assert resp.status == 201
    alert_id = (await resp.json())["id"]
    await rig.app.settle()
    detail = await (await client.get(f"/api/alerts/{alert_id}")).json()
    assert detail["coverage"]["households"] > 0 and detail["hops"]
    assert [g["name"] for g in detail["coverage"]["tree"][0]["children"]] == ["第一网格"]
    bad = await client.post("/api/alerts", json={"type": "地震", "colour": "red"}, headers=h)
    assert bad.status == 400 and (await bad.json())["error"] == "unknown_type"
    up = await client.post(f"/api/alerts/{alert_id}/update", json={"colour": "红色"}, headers=h)
    assert up.status == 201
    newer = (await up.json())["id"]
    lift = await client.post(f"/api/alerts/{newer}/lift", json={}, headers=h)
    assert lift.status == 201
    states = [a["state"] for a in (await (await client.get("/api/alerts")).json())["alerts"]]
    assert states == ["active", "lifted", "superseded"]  # newest first: the lift notice itself is active


async def test_csrf_and_roles(rig, client):
    resp = await client.post("/api/alerts", json={"type": "暴雨", "colour": "黄色"})
    assert resp.status == 401  # not logged in
    await login(client)
    resp = await client.post("/api/alerts", json={"type": "暴雨", "colour": "黄色"})
    assert resp.status == 403  # no CSRF token
    assert rig.store.scalar("SELECT COUNT(*) FROM alerts") == 0
    token = await session_csrf(client)
    resp = await client.post("/api/alerts", json={"type": "暴雨", "colour": "黄色"}, headers={"X-CSRF-Token": token})
    alert_id = (await resp.json())["id"]
    # a building lead reads only their building, and cannot issue
    lead = building_lead(rig.store)
    auth.create_user(rig.store, "lead", "lead-password-1", resident_id=lead["id"])
    lead_client = TestClient(rig.server)
    await lead_client.start_server()
    try:
        await login(lead_client, "lead", "lead-password-1")
        detail = await (await lead_client.get(f"/api/alerts/{alert_id}")).json()
        tree = detail["coverage"]["tree"]
        buildings = [b for g in tree[0]["children"] for c in g["children"] for b in c["children"]]
        assert [b["id"] for b in buildings] == [lead["building_id"]]
        assert detail["coverage"]["households"] == buildings[0]["households"]
        token = await session_csrf(lead_client)
        resp = await lead_client.post("/api/alerts", json={"type": "暴雨", "colour": "红色"},
                                      headers={"X-CSRF-Token": token})
        assert resp.status == 403
    finally:
        await lead_client.close()
