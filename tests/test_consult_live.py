"""The live tally of /consultations/{id}: the page no longer reloads itself; consult.js fetches
GET /consultations/{id}/tally (the counts, the per-building table, the households) with the page's own
login, area and secrecy: a lead sees who voted, never what; 不记名 shows no choice to anyone; a
consultation the viewer cannot see is 404; a closed one says so (the script then stops)."""
from __future__ import annotations

from test_consult_web import PASSWORD, households_of, opened, rig  # noqa: F401  (rig is a fixture)
from web_rig import client, sign_in  # noqa: F401  (client is a fixture)

from bot.domain import consult
from bot.web import auth


def a_lead(store, building_id: int, *, here: bool) -> dict:
    """A building lead of this building (here) or of another one who leads nothing else."""
    if here:
        return store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id WHERE l.node_id=? "
                        "ORDER BY l.rank LIMIT 1", (building_id,))
    return store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes n "
                    "ON n.id=l.node_id WHERE n.kind='building' AND n.id!=? AND r.roles NOT LIKE '%grid%' "
                    "ORDER BY r.id LIMIT 1", (building_id,))


async def test_the_fragment_needs_a_login_and_follows_the_vote(rig, client):
    cid = opened(rig)
    c = consult.get(rig.app, cid)
    hs = households_of(rig.store, c["scope"][0])
    resp = await client.get(f"/consultations/{cid}/tally", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    await sign_in(client, "admin", PASSWORD)
    page = await (await client.get(f"/consultations/{cid}")).text()
    assert 'http-equiv="refresh"' not in page and '<script src="/static/consult.js' in page
    assert f'data-tally-url="/consultations/{cid}/tally"' in page
    frag = await (await client.get(f"/consultations/{cid}/tally")).text()
    assert frag.lstrip().startswith('<div id="live-parts" data-open="1">') and "<html" not in frag
    assert f'id="turnout"><b>0/{len(hs)}</b>' in frag and 'id="proxy"' not in frag
    consult.vote(rig.app, cid, hs[0]["id"], 1, channel="link")
    resp = await client.get(f"/consultations/{cid}/tally")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    frag = await resp.text()
    assert f'id="turnout"><b>1/{len(hs)}</b>' in frag
    row = frag.split(f'id="household-{hs[0]["id"]}"')[1].split("</tr>")[0]
    assert ">不同意</td>" in row and "链接" in row  # staff, 记名: the choice
    assert 'id="live-closed" data-live hidden' in frag  # still open
    for part in ('id="tally"', 'id="buildings-card"', 'id="households-card"', 'id="live-closed"'):
        assert part in frag
    assert (await client.get("/consultations/9999/tally")).status == 404


async def test_a_closed_consultation_says_so_and_the_page_stops_polling(rig, client):
    cid = opened(rig)
    await sign_in(client, "admin", PASSWORD)
    consult.close(rig.app, cid)
    frag = await (await client.get(f"/consultations/{cid}/tally")).text()
    assert 'data-open="0"' in frag and "议事已截止" in frag
    assert 'id="live-closed" data-live hidden' not in frag
    page = await (await client.get(f"/consultations/{cid}")).text()
    assert "data-tally-url" not in page and "consult.js" not in page and 'id="refresh"' in page


async def test_a_secret_ballot_shows_no_choice_even_to_staff(rig, client):
    cid = opened(rig, secrecy="tally")
    hs = households_of(rig.store, consult.get(rig.app, cid)["scope"][0])
    consult.vote(rig.app, cid, hs[0]["id"], 1, channel="link")
    await sign_in(client, "admin", PASSWORD)
    frag = await (await client.get(f"/consultations/{cid}/tally")).text()
    row = frag.split(f'id="household-{hs[0]["id"]}"')[1].split("</tr>")[0]
    assert ">已投</td>" in row and "不同意" not in row
    assert "不同意</td>" not in frag and "<th>不同意</th>" not in frag  # nor per building
    assert 'id="turnout"><b>1/' in frag


async def test_leads_see_who_voted_in_their_area_only(rig, client):
    cid = opened(rig)
    store = rig.store
    c = consult.get(rig.app, cid)
    hs = households_of(store, c["scope"][0])
    consult.vote(rig.app, cid, hs[0]["id"], 1, channel="link")
    here, elsewhere = a_lead(store, c["scope"][0], here=True), a_lead(store, c["scope"][0], here=False)
    auth.create_user(store, "lead-here", "lead-pw-1", resident_id=here["id"])
    auth.create_user(store, "lead-far", "lead-pw-2", resident_id=elsewhere["id"])
    csrf = await sign_in(client, "lead-here", "lead-pw-1")
    frag = await (await client.get(f"/consultations/{cid}/tally")).text()
    row = frag.split(f'id="household-{hs[0]["id"]}"')[1].split("</tr>")[0]
    assert ">已投</td>" in row and "不同意" not in row and "不同意</td>" not in frag
    await client.post("/logout", data={"csrf": csrf})
    await sign_in(client, "lead-far", "lead-pw-2")
    assert (await client.get(f"/consultations/{cid}/tally")).status == 404
