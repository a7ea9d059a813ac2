"""三单制 / 微心愿 through the dashboard and the volunteer's signed link, on the full app with the
world: staff write down a wish on /claims, a volunteer claims it on their link (a second one is
refused), completes it with hours there, the resident rates it in chat, /volunteers counts it
(CSV/XLSX too); a request is opened for claiming from its page (CSRF like every form)."""
from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest
from chat_rig import member, say
from sim_rig import close_sim, make_sim, staff
from web_rig import client, csrf_of, sign_in  # noqa: F401  (client is a fixture)

from bot.data import people
from bot.domain import claims
from bot.domain import requests as R

PASSWORD = "claims-pw-1"


@pytest.fixture
async def rig(tmp_path):
    rig = await make_sim(tmp_path, households=60, seed=3, dashboard={"password": PASSWORD})
    yield rig
    await close_sim(rig)


def only(store, sql, *args) -> dict:
    [row] = store.q(sql, args)
    return row


def two_volunteers(rig, req) -> list[dict]:
    """Two people who may claim this request (building leads who are party members, staff)."""
    found = [p for p in claims.volunteers_for(rig.app, req) if "staff" not in p["roles"]]
    found += [p for p in claims.volunteers_for(rig.app, req) if "staff" in p["roles"]]
    assert len(found) >= 2
    return found[:2]


def token_path(rig, person) -> str:
    return "/claims/" + claims.link_token(rig.app, person)


async def test_a_wish_from_the_dashboard_claimed_and_completed_on_the_link_and_rated_in_chat(rig, client):
    resident = member(rig.store, 0)
    home = people.household(rig.store, resident["household_id"])
    csrf = await sign_in(client, "admin", PASSWORD)
    resp = await client.post("/claims/wish", data={"csrf": csrf, "room": home["label"],
                                                   "text": "帮独居老人换灯泡"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    req = only(rig.store, "SELECT * FROM requests WHERE kind = 'wish'")
    assert resp.headers["Location"].startswith(f"/claims?done={req['id']}")
    assert (req["claim_state"], req["resident_id"]) == ("open", resident["id"])
    html = await (await client.get("/claims")).text()
    assert f'<tr id="claim-{req["id"]}">' in html and "帮独居老人换灯泡" in html

    first, second = two_volunteers(rig, req)
    page = await client.get(token_path(rig, first))
    assert page.status == 200 and f'id="claim-{req["id"]}"' in await page.text()
    resp = await client.post(token_path(rig, first), data={"action": "claim", "id": str(req["id"])},
                             allow_redirects=False)
    assert resp.status == 303
    html = await (await client.get(resp.headers["Location"])).text()
    assert "认领成功" in html and f'id="held-{req["id"]}"' in html and resident["name"] in html
    late = await client.post(token_path(rig, second), data={"action": "claim", "id": str(req["id"])})
    assert late.status == 409 and "已经被其他志愿者认领" in await late.text()
    assert R.get(rig.store, req["id"])["claimed_by"] == first["id"]

    resp = await client.post(token_path(rig, first), data={
        "action": "complete", "id": str(req["id"]), "hours": "2小时", "note": "已换好灯泡"},
        allow_redirects=False)
    assert resp.status == 303
    row = R.get(rig.store, req["id"])
    assert (row["state"], row["hours"], row["resolution"]) == ("resolved", 2, "已换好灯泡")

    await say(rig, resident, f"评价 #{req['id']} 5 很热心")  # the thanks is the domain's send
    row = R.get(rig.store, req["id"])
    assert (row["state"], row["rating"], row["rating_comment"]) == ("closed", 5, "很热心")

    html = await (await client.get("/volunteers?month=2024-06")).text()
    assert f'id="volunteer-{first["id"]}"' in html
    cells = re.search(rf'id="volunteer-{first["id"]}">(.*?)</tr>', html, re.S).group(1)
    assert '"completed">1<' in cells and '"hours">2<' in cells and '"rating">5' in cells
    body = await (await client.get("/volunteers.csv?month=2024-06")).read()
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:2] == ["月份", "姓名"] and [r[1] for r in rows[1:]] == [first["name"]]
    assert rows[1][4:7] == ["1", "2.0", "5.0"]
    xlsx = await (await client.get("/volunteers.xlsx?month=2024-06")).read()
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx)).active
    assert sheet.title == "志愿服务" and sheet.cell(2, 2).value == first["name"]
    empty = await (await client.get("/volunteers?month=2024-07")).text()
    assert "这个月还没有完成的认领" in empty


async def test_a_request_is_opened_for_claiming_from_its_page(rig, client):
    resident = member(rig.store, 1)
    req = R.file_request(rig.app, resident=resident, text="家里老人想请人陪着去社区医院")
    csrf = await sign_in(client, "admin", PASSWORD)
    html = await (await client.get(f"/requests/{req['id']}")).text()
    assert 'id="open-claims"' in html
    refused = await client.post(f"/claims/open/{req['id']}", data={}, allow_redirects=False)
    assert refused.status == 403  # no CSRF token
    resp = await client.post(f"/claims/open/{req['id']}", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/requests/{req['id']}?claims=opened"
    html = await (await client.get(resp.headers["Location"])).text()
    assert 'id="claims-result"' in html and 'id="claim-state"' in html and 'id="open-claims"' not in html
    assert R.get(rig.store, req["id"])["claim_state"] == "open"
    volunteer = two_volunteers(rig, R.get(rig.store, req["id"]))[0]
    assert f'id="claim-{req["id"]}"' in await (await client.get(token_path(rig, volunteer))).text()


async def test_a_bad_link_and_a_wrong_household_are_refused_plainly(rig, client):
    bad = await client.get("/claims/1.0.AAAAAAAAAAAAAAAA")
    assert bad.status == 404 and "链接无效" in await bad.text()
    resident_link = "/claims/" + claims.link_token(rig.app, member(rig.store, 2))
    assert (await client.get(resident_link)).status == 404  # not a volunteer: no page
    csrf = await sign_in(client, "admin", PASSWORD)
    resp = await client.post("/claims/wish", data={"csrf": csrf, "room": "99栋999", "text": "帮忙"})
    assert "没有在您负责的范围里找到这一户" in await resp.text()
    assert rig.store.scalar("SELECT count(*) FROM requests") == 0
    assert staff(rig.store) is not None
