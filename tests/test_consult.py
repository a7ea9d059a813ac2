"""议事 / 定事, the domain: the frozen electorate, exact threshold arithmetic (a threshold met exactly
passes, the whole electorate counts), one current vote per household (changes appended and logged),
nothing written after closing, proxy votes by who may, the owners-only electorate, the carrier and
result notices, the one reminder to silent households and the close by the timer."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
from sim_rig import T0, small_sim, staff  # noqa: F401  (small_sim: a fixture)

from bot.domain import consult
from bot.domain.consult import ConsultDraft, ConsultError

DAY = 24 * 3600


@pytest.fixture
def sim(small_sim):
    return small_sim


def building_with(store, n_min: int = 3) -> dict:
    """A building with at least n_min active households."""
    return store.q1("SELECT n.*, COUNT(h.id) AS n FROM nodes n JOIN households h ON h.building_id=n.id AND h.active=1 "
                    "WHERE n.kind='building' GROUP BY n.id HAVING COUNT(h.id) >= ? ORDER BY n.id LIMIT 1", (n_min,))


def households_of(store, building_id: int) -> list[dict]:
    return store.q("SELECT * FROM households WHERE building_id=? AND active=1 ORDER BY id", (building_id,))


def make_owners(store, household_ids: list[int]) -> None:
    """Exactly these households have an owner resident (whatever the generated register said)."""
    building = store.q1("SELECT building_id FROM households WHERE id=?", (household_ids[0],))["building_id"]
    for r in store.q("SELECT r.id FROM residents r JOIN households h ON h.id=r.household_id "
                     "WHERE h.building_id=?", (building,)):
        store.db["residents"].update(r["id"], {"owner": 0})
    for h in household_ids:
        for r in store.q("SELECT id FROM residents WHERE household_id=? AND active=1", (h,)):
            store.db["residents"].update(r["id"], {"owner": 1})


def draft(sim, building_id: int, **kw) -> ConsultDraft:
    base = dict(question="3栋加装电梯", closes_at=T0 + 7 * DAY, scope=[building_id], opened_by=staff(sim.store)["id"],
                threshold=(2, 3))
    base.update(kw)
    return ConsultDraft(**base)


def test_threshold_words():
    assert consult.parse_threshold("三分之二 按户") == ((2, 3), "households")
    assert consult.parse_threshold("2/3按面积") == ((2, 3), "area")
    assert consult.parse_threshold("半数") == ((1, 2), None)
    assert consult.parse_threshold("相对多数") == ((0, 1), None)
    assert consult.parse_threshold("四分之三 按业主") == ((3, 4), "owners")
    for bad in ("", "很多", "3/2", "五分之七"):
        with pytest.raises(ConsultError):
            consult.parse_threshold(bad)


def test_the_threshold_is_exact_and_counts_the_whole_electorate():
    c = {"kind": "approve", "threshold_num": 2, "threshold_den": 3}
    # 2 of 3 is exactly two-thirds: passes; 1.999… of 3 would not
    assert consult.decide(c, [Fraction(2), Fraction(0), Fraction(0)], Fraction(3))["outcome"] == "passed"
    assert consult.decide(c, [Fraction(199, 100), Fraction(0), Fraction(0)], Fraction(3))["outcome"] == "failed"
    # unanimous among those who voted, but 6 of 10 households is short of two-thirds
    assert consult.decide(c, [Fraction(6), Fraction(0), Fraction(0)], Fraction(10))["outcome"] == "failed"
    # by area: 200.1 of 300.15 m² is exactly two-thirds (no float rounding either way)
    assert consult.reaches(Fraction("200.1"), Fraction("300.15"), 2, 3)
    assert not consult.reaches(Fraction("200.09"), Fraction("300.15"), 2, 3)
    choose = {"kind": "choose", "threshold_num": 0, "threshold_den": 1}
    assert consult.decide(choose, [Fraction(3), Fraction(5)], Fraction(10)) == {"outcome": "chosen", "option": 1}
    assert consult.decide(choose, [Fraction(4), Fraction(4)], Fraction(10))["outcome"] == "tie"
    assert consult.decide(choose, [Fraction(0), Fraction(0)], Fraction(10))["outcome"] == "none"
    half = {"kind": "choose", "threshold_num": 1, "threshold_den": 2}
    assert consult.decide(half, [Fraction(4), Fraction(3)], Fraction(10))["outcome"] == "not_reached"
    assert consult.decide(half, [Fraction(5), Fraction(3)], Fraction(10)) == {"outcome": "chosen", "option": 0}


def test_choice_words():
    approve = {"kind": "approve", "options": ["同意", "不同意", "弃权"]}
    assert [consult.parse_choice(w, approve) for w in ("同意", "赞成。", "不同意", "反对", "弃权", "选2")] == [0, 0, 1, 1, 2, 1]
    assert consult.parse_choice("1", approve) is None  # a bare "1" acknowledges a warning
    assert consult.parse_choice("收到", approve) is None
    choose = {"kind": "choose", "options": ["甲物业", "乙物业"]}
    assert [consult.parse_choice(w, choose) for w in ("乙物业", "选1", "选项2", "投二", "选3", "同意")] == \
        [1, 0, 1, 1, None, None]


async def test_open_freezes_the_electorate_and_issues_the_carrier_notice(sim):
    store = sim.store
    b = building_with(store)
    cid = consult.open(sim.app, draft(sim, b["id"]))
    c = consult.get(sim.app, cid)
    assert c["state"] == "open" and c["options"] == ["同意", "不同意", "弃权"]
    voters = store.q("SELECT * FROM consultation_voters WHERE consultation_id=?", (cid,))
    assert len(voters) == b["n"] and {v["weight"] for v in voters} == {1.0}
    notice = store.q1("SELECT * FROM alerts WHERE id=?", (c["alert_id"],))
    assert notice["kind"] == "notice" and json.loads(notice["scope"]) == [b["id"]]
    assert "3栋加装电梯" in notice["text"] and "同意" in notice["text"] and f"议事{cid}" in notice["text"]
    assert notice["expires_at"] == pytest.approx(T0 + 7 * DAY)
    assert store.q1("SELECT * FROM events WHERE kind='consult.opened' AND ref_id=?", (cid,)) is not None
    # a household registered later does not vote in it: the electorate is frozen
    assert consult.tally(sim.app, cid)["households"] == b["n"]


async def test_a_vote_changed_before_closing_counts_once_and_is_logged(sim):
    store = sim.store
    b = building_with(store)
    cid = consult.open(sim.app, draft(sim, b["id"]))
    h = households_of(store, b["id"])[0]
    me = store.q1("SELECT * FROM residents WHERE household_id=? AND active=1", (h["id"],))
    first = consult.vote(sim.app, cid, h["id"], 1, channel="oa", resident=me)
    assert (first.changed, first.repeated) == (False, False)
    again = consult.vote(sim.app, cid, h["id"], 1, channel="oa", resident=me)
    assert again.repeated and store.scalar("SELECT COUNT(*) FROM ballots WHERE consultation_id=?", (cid,)) == 1
    sim.clock.advance(3600)
    changed = consult.vote(sim.app, cid, h["id"], 0, channel="link", resident=None)
    assert changed.changed and changed.previous == 1
    assert store.scalar("SELECT COUNT(*) FROM ballots WHERE consultation_id=?", (cid,)) == 2
    t = consult.tally(sim.app, cid)
    assert t["counts"][:2] == [1, 0] and t["voted"] == 1
    kinds = [e["kind"] for e in store.q("SELECT kind FROM events WHERE ref_type='consultation' AND ref_id=? "
                                        "ORDER BY id", (cid,))]
    assert kinds == ["consult.opened", "consult.vote", "consult.vote_changed"]


async def test_a_vote_after_closing_is_refused_and_nothing_is_written(sim):
    store = sim.store
    b = building_with(store)
    cid = consult.open(sim.app, draft(sim, b["id"], closes_at=T0 + DAY))
    h = households_of(store, b["id"])[0]
    sim.clock.advance(DAY)  # the closing time, before the timer has closed it
    with pytest.raises(ConsultError) as e:
        consult.vote(sim.app, cid, h["id"], 0, channel="oa")
    assert e.value.code == "closed" and "已经截止" in e.value.text()
    consult.close(sim.app, cid)
    with pytest.raises(ConsultError):
        consult.proxy_vote(sim.app, cid, h["id"], 0, actor=staff(store))
    assert store.scalar("SELECT COUNT(*) FROM ballots WHERE consultation_id=?", (cid,)) == 0


async def test_two_thirds_of_owner_households_met_exactly_passes(sim):
    store = sim.store
    b = building_with(store, 4)
    hs = households_of(store, b["id"])
    owners = [h["id"] for h in hs[:3]]
    make_owners(store, owners)
    cid = consult.open(sim.app, draft(sim, b["id"], electorate="owners"))
    assert store.scalar("SELECT COUNT(*) FROM consultation_voters WHERE consultation_id=?", (cid,)) == 3
    # a tenant of a household without an owner does not vote; a non-owner's own vote is refused
    tenant_home = hs[3]["id"]
    with pytest.raises(ConsultError) as e:
        consult.vote(sim.app, cid, tenant_home, 0, channel="oa")
    assert e.value.code == "not_voter"
    store.db["residents"].update(store.q1("SELECT id FROM residents WHERE household_id=?", (owners[0],))["id"],
                                 {"owner": 0})
    non_owner = store.q1("SELECT * FROM residents WHERE household_id=?", (owners[0],))
    with pytest.raises(ConsultError) as e:
        consult.vote(sim.app, cid, owners[0], 0, channel="oa", resident=non_owner)
    assert e.value.code == "not_owner" and "产权人" in e.value.text()
    owner = lambda h: store.q1("SELECT * FROM residents WHERE household_id=? AND owner=1", (h,))  # noqa: E731
    consult.vote(sim.app, cid, owners[1], 0, channel="oa", resident=owner(owners[1]))
    assert consult.tally(sim.app, cid)["outcome"] == "failed"  # 1 of 3
    consult.vote(sim.app, cid, owners[2], 0, channel="wecom", resident=owner(owners[2]))
    t = consult.tally(sim.app, cid)
    assert (t["weights"][0], t["total"], t["outcome"]) == (2.0, 3.0, "passed")  # 2 of 3: exactly two-thirds
    assert t["need"] == 2


async def test_by_area_needs_every_area_and_weighs_by_it(sim):
    store = sim.store
    b = building_with(store, 3)
    hs = households_of(store, b["id"])
    for h in hs:
        store.db["households"].update(h["id"], {"area_m2": None})
    store.db["households"].update(hs[0]["id"], {"area_m2": 88.5})
    with pytest.raises(ConsultError) as e:
        consult.open(sim.app, draft(sim, b["id"], basis="area"))
    assert e.value.code == "no_area" and "面积" in e.value.text()
    assert store.scalar("SELECT COUNT(*) FROM consultations") == 0
    areas = [100.05] + [50.0] * (len(hs) - 1)
    for h, a in zip(hs, areas, strict=True):
        store.db["households"].update(h["id"], {"area_m2": a})
    cid = consult.open(sim.app, draft(sim, b["id"], basis="area", threshold=(1, 2)))
    consult.vote(sim.app, cid, hs[0]["id"], 0, channel="link")
    t = consult.tally(sim.app, cid)
    assert t["weights"][0] == pytest.approx(100.05) and t["total"] == pytest.approx(sum(areas))


async def test_proxy_votes_by_a_lead_of_the_building_or_the_steward_only(sim):
    store = sim.store
    b = store.q1("SELECT n.* FROM nodes n JOIN node_leads l ON l.node_id=n.id WHERE n.kind='building' "
                 "ORDER BY n.id LIMIT 1")
    lead = store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id WHERE l.node_id=? "
                    "ORDER BY l.rank LIMIT 1", (b["id"],))
    other = store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id JOIN nodes n "
                     "ON n.id=l.node_id WHERE n.kind='building' AND l.node_id!=? AND r.roles NOT LIKE '%grid%' "
                     "ORDER BY r.id LIMIT 1", (b["id"],))
    cid = consult.open(sim.app, draft(sim, b["id"]))
    h1, h2 = households_of(store, b["id"])[:2]
    out = consult.proxy_vote(sim.app, cid, h1["id"], 0, actor=lead)
    assert out.household["id"] == h1["id"]
    ballot = store.q1("SELECT * FROM ballots WHERE consultation_id=? AND household_id=?", (cid, h1["id"]))
    assert (ballot["channel"], ballot["by_proxy_id"], ballot["resident_id"]) == ("proxy", lead["id"], None)
    with pytest.raises(ConsultError) as e:
        consult.proxy_vote(sim.app, cid, h2["id"], 0, actor=other)
    assert e.value.code == "proxy_not_allowed"
    steward = store.q1("SELECT * FROM residents WHERE roles='resident' AND household_id IS NOT NULL "
                       "AND household_id!=? ORDER BY id LIMIT 1", (h2["id"],))
    store.db["households"].update(h2["id"], {"steward_id": steward["id"]})
    consult.proxy_vote(sim.app, cid, h2["id"], 1, actor=steward)
    assert consult.tally(sim.app, cid)["counts"][:2] == [1, 1]
    assert store.q1("SELECT * FROM events WHERE kind='consult.vote' AND actor_id=?", (steward["id"],)) is not None


async def test_the_timer_reminds_silent_households_once_then_closes_and_publishes(sim):
    store = sim.store
    b = building_with(store, 3)
    boss = staff(store)
    cid = consult.open(sim.app, draft(sim, b["id"], closes_at=T0 + 3 * DAY))
    c = consult.get(sim.app, cid)
    remind_at = T0 + 3 * DAY - 24 * 3600
    assert consult.next_due_at(sim.app) == remind_at
    voted = households_of(store, b["id"])[0]
    consult.vote(sim.app, cid, voted["id"], 0, channel="link")
    sim.clock.advance(remind_at - sim.clock.now())
    done = await consult.run_due(sim.app)
    assert done["consult_reminded"] > 0
    reminders = store.q("SELECT * FROM sends WHERE purpose='consult_remind'")
    voted_people = {r["id"] for r in store.q("SELECT id FROM residents WHERE household_id=?", (voted["id"],))}
    assert reminders
    for r in reminders:  # each carries the vote link of the reminded person's own household
        payload = json.loads(r["payload"])
        token = payload["text"].split("/vote/")[1].split()[0]
        assert payload["url"].endswith(f"/vote/{token}")  # an OA service notice opens it too
        person = store.q1("SELECT household_id FROM residents WHERE id=?", (int(r["key"].rsplit(":", 1)[1]),))
        assert consult.read_vote_token(sim.app, token) == (cid, person["household_id"])
    assert not any(r["key"].endswith(f":{p}") for r in reminders for p in voted_people)
    assert (await consult.run_due(sim.app))["consult_reminded"] == 0  # once
    assert consult.next_due_at(sim.app) == c["closes_at"]
    sim.clock.advance(DAY)
    done = await consult.run_due(sim.app)
    assert done["consult_closed"] == 1
    c = consult.get(sim.app, cid)
    assert c["state"] == "closed" and c["result"]["outcome"] == "failed" and c["result"]["voted"] == 1
    result_notice = store.q1("SELECT * FROM alerts WHERE id=?", (c["result_alert_id"],))
    assert result_notice["kind"] == "notice" and "未通过" in result_notice["text"]
    assert json.loads(result_notice["scope"]) == [b["id"]]
    told = store.q1("SELECT * FROM sends WHERE purpose='consult_result'")
    assert told is not None and told["target"] == boss["wecom_userid"]
    assert consult.next_due_at(sim.app) is None


async def test_who_may_open(sim):
    store = sim.store
    b = building_with(store)
    building_lead = store.q1("SELECT * FROM residents WHERE roles LIKE 'building_lead%' ORDER BY id LIMIT 1")
    with pytest.raises(ConsultError) as e:
        consult.open(sim.app, draft(sim, b["id"]), person=building_lead)
    assert e.value.code == "not_allowed"
    grid = store.q1("SELECT n.* FROM nodes n WHERE n.kind='grid' ORDER BY id LIMIT 1")
    grid_lead = store.q1("SELECT r.* FROM node_leads l JOIN residents r ON r.id=l.resident_id WHERE l.node_id=? "
                         "ORDER BY l.rank LIMIT 1", (grid["id"],))
    inside = store.q1("SELECT id FROM nodes WHERE kind='building' AND path LIKE ? ORDER BY id LIMIT 1",
                      (grid["path"] + "/%",))
    outside = store.q1("SELECT id FROM nodes WHERE kind='building' AND path NOT LIKE ? ORDER BY id LIMIT 1",
                       (grid["path"] + "/%",))
    with pytest.raises(ConsultError) as e:
        consult.open(sim.app, draft(sim, outside["id"], opened_by=grid_lead["id"]), person=grid_lead)
    assert e.value.code == "outside_area"
    assert consult.open(sim.app, draft(sim, inside["id"], opened_by=grid_lead["id"]), person=grid_lead)


async def test_a_secret_ballot_logs_who_voted_never_what(sim):
    store = sim.store
    b = building_with(store)
    cid = consult.open(sim.app, draft(sim, b["id"], secrecy="tally"))
    h = households_of(store, b["id"])[0]
    consult.vote(sim.app, cid, h["id"], 1, channel="link")
    consult.vote(sim.app, cid, h["id"], 0, channel="link")
    logged = [json.loads(e["data"]) for e in store.q("SELECT data FROM events WHERE kind LIKE 'consult.vote%' "
                                                     "AND ref_id=?", (cid,))]
    assert len(logged) == 2 and all("choice" not in d and "previous" not in d for d in logged)
