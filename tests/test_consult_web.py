"""议事 on the web: the carrier notice's ack link leads to the household's vote page (and an ack token is
never a vote token), the vote page records and changes a vote and refuses after closing (410), the
dashboard opens one, shows the tally per building, records a proxy vote, closes early with a threshold
met exactly, and exports the filing (secret choices stay secret)."""
from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from sim_rig import T0, close_sim, make_sim, staff
from web_rig import client, sign_in  # noqa: F401  (client is a fixture)

from bot.domain import alerts, consult, links, relay
from bot.domain.alerts import Draft
from bot.domain.consult import ConsultDraft
from bot.web import auth

PASSWORD = "consult-pw-1"
DAY = 24 * 3600


@pytest.fixture
async def rig(tmp_path):
    rig = await make_sim(tmp_path, households=60, seed=11, dashboard={"password": PASSWORD})
    yield rig
    await close_sim(rig)


def a_building(store) -> dict:
    return store.q1("SELECT n.* FROM nodes n WHERE kind='building' AND (SELECT COUNT(*) FROM households h "
                    "WHERE h.building_id=n.id AND h.active=1) >= 4 ORDER BY id LIMIT 1")


def households_of(store, building_id: int) -> list[dict]:
    return store.q("SELECT * FROM households WHERE building_id=? AND active=1 ORDER BY id", (building_id,))


def opened(rig, **kw) -> int:
    b = a_building(rig.store)
    base = dict(question="3栋加装电梯", closes_at=T0 + 7 * DAY, scope=[b["id"]], opened_by=staff(rig.store)["id"],
                threshold=(2, 3))
    base.update(kw)
    return consult.open(rig.app, ConsultDraft(**base))


def owners_only(store, building_id: int, n: int) -> list[int]:
    hs = households_of(store, building_id)
    store.conn.execute("UPDATE residents SET owner=0 WHERE household_id IN (SELECT id FROM households "
                       "WHERE building_id=?)", (building_id,))
    for h in hs[:n]:
        rid = store.q1("SELECT id FROM residents WHERE household_id=? AND active=1 ORDER BY id", (h["id"],))["id"]
        store.db["residents"].update(rid, {"owner": 1})
    return [h["id"] for h in hs[:n]]


async def test_the_carrier_notices_ack_link_opens_the_vote_page(rig, client):
    cid = opened(rig)
    c = consult.get(rig.app, cid)
    h = households_of(rig.store, c["scope"][0])[0]
    ack = relay.ack_link(rig.app, c["alert_id"], h["id"]).split("/ack/")[1]
    resp = await client.get(f"/ack/{ack}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/vote/{consult.vote_token(rig.app, cid, h['id'])}"
    assert rig.store.scalar("SELECT COUNT(*) FROM acks") == 0  # opening the link acknowledges nothing
    # an ack token is not a vote token (its own secret), and an ordinary notice's link still acknowledges
    assert (await client.get(f"/vote/{ack}")).status == 404
    other = alerts.issue(rig.app, Draft(type=alerts.NOTICE, colour="blue", text="周六停水", scope=c["scope"]))
    token = links.make_token(rig.settings.server.link_secret, other, h["id"])
    assert (await client.get(f"/ack/{token}", allow_redirects=False)).status == 200


async def test_the_vote_page_records_changes_and_refuses_after_closing(rig, client):
    cid = opened(rig)
    h = households_of(rig.store, consult.get(rig.app, cid)["scope"][0])[0]
    url = f"/vote/{consult.vote_token(rig.app, cid, h['id'])}"
    page = await (await client.get(url)).text()
    assert "3栋加装电梯" in page and 'id="choice-0"' in page and h["label"] in page
    assert rig.store.scalar("SELECT COUNT(*) FROM ballots") == 0  # opening is not voting
    page = await (await client.post(url, data={"choice": "0"})).text()
    assert "已记录：“同意”" in page
    page = await (await client.post(url, data={"choice": "1"})).text()
    assert "已改为“不同意”" in page
    rows = rig.store.q("SELECT choice, channel FROM ballots WHERE consultation_id=? ORDER BY id", (cid,))
    assert rows == [{"choice": 0, "channel": "link"}, {"choice": 1, "channel": "link"}]
    assert "您家已投“不同意”" in await (await client.get(url)).text()
    rig.clock.advance(7 * DAY)
    resp = await client.post(url, data={"choice": "0"})
    assert resp.status == 410 and "已经截止" in await resp.text()
    assert rig.store.scalar("SELECT COUNT(*) FROM ballots") == 2
    consult.close(rig.app, cid)
    resp = await client.get(url)
    assert resp.status == 410 and "结果：未通过" in await resp.text()
    assert (await client.get("/vote/1.2.AAAAAAAAAAAAAAAA")).status == 404


async def test_the_dashboard_opens_tallies_proxies_closes_and_exports(rig, client):
    store = rig.store
    b = a_building(store)
    owners = owners_only(store, b["id"], 3)
    csrf = await sign_in(client, "admin", PASSWORD)
    form = await (await client.get("/consultations/new")).text()
    assert 'name="question"' in form and f'value="{b["id"]}"' in form
    # a refusal comes back as the form with the reason
    resp = await client.post("/consultations/new", data={
        "csrf": csrf, "question": "", "options": "同意/不同意/弃权", "electorate": "owners", "threshold": "2/3",
        "basis": "owners", "closes": "2024-06-08T18:00", "secrecy": "names", "scope": str(b["id"])})
    assert resp.status == 400 and "请写上要大家决定的问题" in await resp.text()
    resp = await client.post("/consultations/new", data={
        "csrf": csrf, "question": "加装电梯", "options": "同意/不同意/弃权", "electorate": "owners", "threshold": "2/3",
        "basis": "owners", "closes": "2024-06-08T18:00", "secrecy": "names", "scope": str(b["id"])},
        allow_redirects=False)
    assert resp.status == 303
    cid = int(resp.headers["Location"].rsplit("/", 1)[1])
    c = consult.get(rig.app, cid)
    assert (c["electorate"], c["threshold_num"], c["threshold_den"], c["alert_id"] is not None) == ("owners", 2, 3, True)
    # one owner votes by the link, a second by proxy from the dashboard: 2 of 3 owner households
    owner = consult.owners(rig.app, owners[0])[0]
    await client.post(f"/vote/{consult.vote_token(rig.app, cid, owners[0])}",
                      data={"choice": "0", "resident": str(owner["id"])})
    resp = await client.post(f"/consultations/{cid}/proxy", data={"csrf": csrf, "household": str(owners[1]),
                                                                   "choice": "0"}, allow_redirects=False)
    assert resp.status == 303
    proxy = store.q1("SELECT * FROM ballots WHERE household_id=?", (owners[1],))
    assert proxy["channel"] == "dashboard"
    page = await (await client.get(f"/consultations/{cid}")).text()
    assert 'id="turnout"><b>2/3</b>' in page and f'data-building="{b["id"]}"' in page and "工作台代投" in page
    assert 'http-equiv="refresh"' not in page and 'id="need"><b>2</b>' in page  # 2/3 of 3 owner households
    assert f'data-tally-url="/consultations/{cid}/tally"' in page and 'id="refresh"' in page
    resp = await client.post(f"/consultations/{cid}/close", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    c = consult.get(rig.app, cid)
    assert c["state"] == "closed" and c["result"]["outcome"] == "passed"  # exactly two-thirds
    assert "通过" in await (await client.get(f"/consultations/{cid}")).text()
    body = await (await client.get(f"/consultations/{cid}.csv")).read()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["小区", "楼栋", "住户", "投票", "方式", "投票人", "时间"] and len(rows) == 4
    assert sorted(r[3] for r in rows[1:]) == ["同意", "同意", "未投"]
    assert {r[4] for r in rows[1:]} == {"链接", "工作台代投", ""}
    assert next(r for r in rows[1:] if r[4] == "链接")[5] == owner["name"]  # the owner who voted by the link
    xlsx = openpyxl.load_workbook(io.BytesIO(await (await client.get(f"/consultations/{cid}.xlsx")).read()))
    assert xlsx.active.max_row == 4
    listing = await (await client.get("/consultations")).text()
    assert f'data-consultation="{cid}"' in listing and "通过" in listing
    # after closing, the proxy form refuses too
    resp = await client.post(f"/consultations/{cid}/proxy", data={"csrf": csrf, "household": str(owners[2]),
                                                                   "choice": "0"})
    assert resp.status == 409 and "已经截止" in await resp.text()


async def test_a_secret_ballot_exports_only_who_voted_and_escapes_formulas(rig, client):
    cid = opened(rig, secrecy="tally")
    h = households_of(rig.store, consult.get(rig.app, cid)["scope"][0])[0]
    voter = rig.store.q1("SELECT * FROM residents WHERE household_id=? ORDER BY id LIMIT 1", (h["id"],))
    rig.store.db["residents"].update(voter["id"], {"name": "=HYPERLINK(\"http://x\")"})
    consult.vote(rig.app, cid, h["id"], 1, channel="oa", resident=rig.store.q1("SELECT * FROM residents WHERE id=?",
                                                                               (voter["id"],)))
    await sign_in(client, "admin", PASSWORD)
    rows = list(csv.reader(io.StringIO((await (await client.get(f"/consultations/{cid}.csv")).read()).decode("utf-8-sig"))))
    mine = next(r for r in rows if r[2] == h["label"])
    assert mine[3] == "已投" and mine[4] == "本人（公众号）" and mine[5].startswith("'=")
    page = await (await client.get(f"/consultations/{cid}")).text()
    assert "不同意</td>" not in page  # the household's choice is not shown


async def test_posts_need_csrf_and_leads_see_only_their_area(rig, client):
    cid = opened(rig)
    store = rig.store
    c = consult.get(rig.app, cid)
    csrf = await sign_in(client, "admin", PASSWORD)
    h = households_of(store, c["scope"][0])[0]
    resp = await client.post(f"/consultations/{cid}/proxy", data={"household": str(h["id"]), "choice": "0"})
    assert resp.status == 403 and store.scalar("SELECT COUNT(*) FROM ballots") == 0
    # a building lead elsewhere: no such consultation for them, and no form to open one
    lead = store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes n ON n.id=l.node_id "
                    "WHERE n.kind='building' AND n.id!=? AND r.roles NOT LIKE '%grid%' ORDER BY r.id LIMIT 1",
                    (c["scope"][0],))
    auth.create_user(store, "lead1", "lead-pw-1", resident_id=lead["id"])
    await client.post("/logout", data={"csrf": csrf})
    await sign_in(client, "lead1", "lead-pw-1")
    assert (await client.get(f"/consultations/{cid}")).status == 404
    assert f'data-consultation="{cid}"' not in await (await client.get("/consultations")).text()
    assert (await client.get("/consultations/new")).status == 403


async def test_a_lead_of_the_building_proxies_and_sees_who_voted_never_what(rig, client):
    cid = opened(rig)
    store = rig.store
    c = consult.get(rig.app, cid)
    lead = store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id WHERE l.node_id=? "
                    "ORDER BY l.rank LIMIT 1", (c["scope"][0],))
    h1, h2 = households_of(store, c["scope"][0])[:2]
    consult.vote(rig.app, cid, h1["id"], 1, channel="link")
    auth.create_user(store, "lead2", "lead-pw-2", resident_id=lead["id"])
    csrf = await sign_in(client, "lead2", "lead-pw-2")
    page = await (await client.get(f"/consultations/{cid}")).text()
    assert f'id="household-{h1["id"]}"' in page and "已投" in page and "不同意</td>" not in page
    resp = await client.post(f"/consultations/{cid}/proxy", data={"csrf": csrf, "household": str(h2["id"]),
                                                                   "choice": "0"}, allow_redirects=False)
    assert resp.status == 303
    b = store.q1("SELECT * FROM ballots WHERE household_id=?", (h2["id"],))
    assert (b["channel"], b["by_proxy_id"]) == ("dashboard", lead["id"])
    rows = list(csv.reader(io.StringIO((await (await client.get(f"/consultations/{cid}.csv")).read()).decode("utf-8-sig"))))
    assert {r[3] for r in rows[1:]} == {"已投", "未投"}
    assert (await client.post(f"/consultations/{cid}/close", data={"csrf": csrf})).status == 403
