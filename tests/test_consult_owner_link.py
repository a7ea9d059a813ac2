"""Owners-only consultations through the household's vote link: the link belongs to a household, so the
page asks which of its registered owners is voting (names masked); the ballot is that owner's (channel
'link', the export's 投票人). A posted id that is not one of the household's active owners is refused in
Chinese with nothing written; a household with no owner left since opening is told so. Households
consultations keep the plain page."""
from __future__ import annotations

import csv
import io

from test_consult_web import PASSWORD, a_building, households_of, opened, rig  # noqa: F401  (rig: fixture)
from web_rig import client, sign_in  # noqa: F401  (client is a fixture)

from bot.domain import consult
from bot.web.consult_pages import masked


def two_owner_household(store, building_id: int) -> tuple[dict, list[dict], dict]:
    """(household, its two owners, a non-owner of it): the building's other households own nothing,
    except one more household with one owner (an electorate of two)."""
    hs = households_of(store, building_id)
    store.conn.execute("UPDATE residents SET owner=0 WHERE household_id IN (SELECT id FROM households "
                       "WHERE building_id=?)", (building_id,))
    names = ["张三丰", "李四", "王小五"]
    home = hs[0]
    other = next(h for h in hs[1:] if store.q1("SELECT id FROM residents WHERE household_id=? AND active=1",
                                               (h["id"],)))
    people = store.q("SELECT * FROM residents WHERE household_id=? AND active=1 ORDER BY id", (home["id"],))
    while len(people) < 3:  # give the household three people: two owners and one tenant
        store.conn.execute("INSERT INTO residents (household_id, name, active) VALUES (?, ?, 1)",
                           (home["id"], f"住户{len(people)}"))
        people = store.q("SELECT * FROM residents WHERE household_id=? AND active=1 ORDER BY id", (home["id"],))
    for p, name in zip(people[:3], names, strict=True):
        store.conn.execute("UPDATE residents SET name=?, owner=? WHERE id=?", (name, int(name != "王小五"), p["id"]))
    first_other = store.q1("SELECT id FROM residents WHERE household_id=? AND active=1 ORDER BY id", (other["id"],))
    store.conn.execute("UPDATE residents SET owner=1 WHERE id=?", (first_other["id"],))
    people = store.q("SELECT * FROM residents WHERE household_id=? AND active=1 ORDER BY id", (home["id"],))
    return home, [p for p in people if p["owner"]], next(p for p in people if not p["owner"])


def test_names_are_masked():
    assert [masked(n) for n in ("张三丰", "李四", "欧阳锋锋", "王", "")] == ["张*丰", "李*", "欧**锋", "王", "*"]


async def test_an_owner_picked_on_the_page_casts_the_households_ballot(rig, client):
    store = rig.store
    b = a_building(store)
    home, owners, _tenant = two_owner_household(store, b["id"])
    cid = opened(rig, electorate="owners", basis="owners", scope=[b["id"]])
    assert consult.is_voter(rig.app, cid, home["id"])
    url = f"/vote/{consult.vote_token(rig.app, cid, home['id'])}"
    page = await (await client.get(url)).text()
    assert 'id="owners"' in page and "张*丰" in page and "李*" in page
    assert "张三丰" not in page and "王小五" not in page and "王*五" not in page  # masked, owners only
    assert page.count('type="radio" name="resident"') == 2
    resp = await client.post(url, data={"choice": "0", "resident": str(owners[1]["id"])})
    assert resp.status == 200 and "已记录：“同意”" in await resp.text()
    b1 = store.q1("SELECT * FROM ballots WHERE consultation_id=? AND household_id=?", (cid, home["id"]))
    assert (b1["resident_id"], b1["channel"], b1["by_proxy_id"]) == (owners[1]["id"], "link", None)
    page = await (await client.get(url)).text()
    assert "您家已投“同意”（李*）" in page and f'value="{owners[1]["id"]}" id="owner-{owners[1]["id"]}" required checked' in page
    await sign_in(client, "admin", PASSWORD)
    body = (await (await client.get(f"/consultations/{cid}.csv")).read()).decode("utf-8-sig")
    mine = next(r for r in csv.reader(io.StringIO(body)) if r[2] == home["label"])
    assert (mine[3], mine[4], mine[5]) == ("同意", "链接", "李四")


async def test_a_posted_id_that_is_not_an_owner_of_the_household_is_refused(rig, client):
    store = rig.store
    b = a_building(store)
    home, owners, tenant = two_owner_household(store, b["id"])
    cid = opened(rig, electorate="owners", basis="owners", scope=[b["id"]])
    foreign = store.q1("SELECT * FROM residents WHERE owner=1 AND active=1 AND household_id!=? ORDER BY id LIMIT 1",
                       (home["id"],))
    url = f"/vote/{consult.vote_token(rig.app, cid, home['id'])}"
    for data in ({"choice": "0", "resident": str(tenant["id"])}, {"choice": "0", "resident": str(foreign["id"])},
                 {"choice": "0"}, {"choice": "0", "resident": "999999"}):
        resp = await client.post(url, data=data)
        text = await resp.text()
        assert resp.status == 400 and "请先选择是哪一位产权人在投票" in text and 'id="back"' in text, data
    resp = await client.post(url, data={"choice": "0", "resident": "x1"})
    assert resp.status == 400
    assert store.scalar("SELECT COUNT(*) FROM ballots WHERE consultation_id=?", (cid,)) == 0


async def test_a_household_without_an_owner_any_more_is_told_so(rig, client):
    store = rig.store
    b = a_building(store)
    home, owners, _ = two_owner_household(store, b["id"])
    cid = opened(rig, electorate="owners", basis="owners", scope=[b["id"]])
    store.conn.execute("UPDATE residents SET owner=0 WHERE household_id=?", (home["id"],))  # sold since
    url = f"/vote/{consult.vote_token(rig.app, cid, home['id'])}"
    resp = await client.get(url)
    text = await resp.text()
    assert resp.status == 403 and "您家现在没有产权人" in text and 'id="choice-0"' not in text
    resp = await client.post(url, data={"choice": "0", "resident": str(owners[0]["id"])})
    assert resp.status == 403 and "您家现在没有产权人" in await resp.text()
    assert store.scalar("SELECT COUNT(*) FROM ballots WHERE consultation_id=?", (cid,)) == 0


async def test_a_households_consultation_keeps_the_plain_page(rig, client):
    cid = opened(rig)
    h = households_of(rig.store, consult.get(rig.app, cid)["scope"][0])[0]
    url = f"/vote/{consult.vote_token(rig.app, cid, h['id'])}"
    page = await (await client.get(url)).text()
    assert 'id="owners"' not in page and 'id="choice-0"' in page
    assert "已记录：“同意”" in await (await client.post(url, data={"choice": "0"})).text()
    ballot = rig.store.q1("SELECT * FROM ballots WHERE consultation_id=?", (cid,))
    assert (ballot["channel"], ballot["resident_id"]) == ("link", None)
