"""三单制 / 微心愿, the domain: staff open a request or file a wish for claiming, the area's
volunteers hear of it, the first claim wins, the resident is told who is coming, the claimant
gives it back or completes it with hours, the resident rates it as any request; monthly figures."""
from __future__ import annotations

import csv
import dataclasses

import pytest
from helpers_callbacks import make_app, make_settings
from request_world import HEAD, ROWS, events, person, sends, texts_to

from bot.core import texts
from bot.domain import claims
from bot.domain import requests as R
from bot.domain.register import import_register

H, D = 3600, 86400
# two more claimants: a volunteer in the first grid with a phone, a party member in the second
EXTRA = [
    ["第一网格", "一区", "3栋", "1单元", "102", "赵志愿", "13800000001", "志愿者", "", "", "vol2", ""],
    ["第二网格", "二区", "8栋", "", "202", "孙党员", "13800000002", "党员", "", "", "pm8", ""],
]


def build_claims(tmp_path, **claims_settings):
    """request_world's register plus two claimants."""
    s = make_settings(tmp_path)
    if claims_settings:
        s = dataclasses.replace(s, claims=dataclasses.replace(s.claims, **claims_settings))
    app = make_app(s)
    path = tmp_path / "register.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([HEAD] + ROWS + EXTRA)
    import_register(app.store, path)
    return app


@pytest.fixture
def app(tmp_path):
    return build_claims(tmp_path)


def wish(app, text="帮独居老人换灯泡", room="刘阿姨"):
    """Staff file a wish for 刘阿姨's household (一区3栋1单元101) and open it."""
    return claims.file_wish(app, person(app, "陈书记"), text,
                            household_id=person(app, room)["household_id"])


def test_a_wish_is_filed_opened_and_offered_to_the_area_only(app):
    req = wish(app)
    row = R.get(app.store, req["id"])
    assert (row["kind"], row["claim_state"], row["state"]) == ("wish", "open", "accepted")
    assert row["resident_id"] == person(app, "刘阿姨")["id"]
    assert "微心愿" in texts_to(app, "o-liu")[0] and "帮独居老人换灯泡" in texts_to(app, "o-liu")[0]
    # first grid: the volunteer, the new one and the lead who is a party member; not the second grid
    for uid in ("vol1", "vol2", "lead3"):
        [offer] = [t for t in texts_to(app, uid) if f"认领 {req['id']}" in t]
        assert "/claims/" in offer
    assert not [t for t in texts_to(app, "pm8") if "认领" in t]
    assert [s["purpose"] for s in sends(app, "vol2")] == ["claims"]
    assert events(app, req["id"]) == ["request.file", "request.offer"]


def test_the_first_claim_wins_and_the_resident_hears_who_is_coming(app):
    req = wish(app)
    got = claims.claim(app, person(app, "赵志愿"), req["id"])
    assert (got["state"], got["claim_state"], got["assignee_name"]) == ("assigned", "claimed", "赵志愿")
    assert got["claimed_by"] == got["assignee_id"] == person(app, "赵志愿")["id"]
    coming = texts_to(app, "o-liu")[-1]
    assert "赵志愿" in coming and "13800000001" in coming
    assert any("赵志愿" in t and "认领" in t for t in texts_to(app, "staff1"))
    with pytest.raises(claims.Taken) as second:
        claims.claim(app, person(app, "钱师傅"), req["id"])
    assert not second.value.info["mine"]
    refusal = texts.render("messages/claims/refused.j2", code="taken", request_id=req["id"],
                           mine=False, reason="", what="", limit=0)
    assert "已经被其他志愿者认领" in refusal
    assert R.get(app.store, req["id"])["claimed_by"] == person(app, "赵志愿")["id"]


def test_a_stale_claim_loses_the_compare_and_set(app):
    """Two claimants read the open row at once: the second UPDATE finds it claimed."""
    req = wish(app)
    stale = R.get(app.store, req["id"])
    claims.claim(app, person(app, "赵志愿"), req["id"])
    real_get = R.get
    calls = iter([stale])

    def first_stale(store, rid):
        return next(calls, None) or real_get(store, rid)
    R_get, claims.R.get = claims.R.get, first_stale
    try:
        with pytest.raises(claims.Taken):
            claims.claim(app, person(app, "钱师傅"), req["id"])
    finally:
        claims.R.get = R_get
    assert R.get(app.store, req["id"])["assignee_name"] == "赵志愿"


def test_only_registered_claimants_of_the_area_may_claim(app):
    req = wish(app)
    with pytest.raises(claims.NotEligible):
        claims.claim(app, person(app, "王小明"), req["id"])
    with pytest.raises(R.NotFound):  # another grid's volunteer does not see it
        claims.claim(app, person(app, "孙党员"), req["id"])
    plain = R.file_request(app, resident=person(app, "王小明"), text="楼道灯坏了")
    with pytest.raises(claims.NotOpen):
        claims.claim(app, person(app, "钱师傅"), plain["id"])


def test_a_lead_opens_a_request_of_their_building_not_another(app):
    req = R.file_request(app, resident=person(app, "王小明"), text="3栋2单元楼道灯坏了")
    with pytest.raises(R.Forbidden):
        claims.open_for_claims(app, person(app, "周楼长"), req["id"])
    opened = claims.open_for_claims(app, person(app, "王楼长"), req["id"])
    assert (opened["claim_state"], opened["accepted_by"]) == ("open", person(app, "王楼长")["id"])
    assert claims.open_for_claims(app, person(app, "王楼长"), req["id"])["claim_state"] == "open"
    assert events(app, req["id"]).count("request.offer") == 1  # opening twice is nothing new


def test_release_opens_it_again_and_only_the_claimant_may(app):
    req = wish(app)
    claims.claim(app, person(app, "赵志愿"), req["id"])
    with pytest.raises(claims.NotYours):
        claims.release(app, person(app, "钱师傅"), req["id"])
    back = claims.release(app, person(app, "赵志愿"), req["id"])
    assert (back["state"], back["claim_state"], back["assignee_id"], back["claimed_by"]) == (
        "accepted", "open", None, None)
    assert "重新" in texts_to(app, "o-liu")[-1]
    again = claims.claim(app, person(app, "钱师傅"), req["id"])
    assert again["assignee_name"] == "钱师傅"


def test_complete_with_hours_then_the_resident_rates_it(app):
    req = wish(app)
    vol = person(app, "赵志愿")
    claims.claim(app, vol, req["id"])
    with pytest.raises(R.BadInput):
        claims.complete(app, vol, req["id"], None, "已换好")
    with pytest.raises(R.BadInput):
        claims.complete(app, vol, req["id"], 100, "已换好")
    with pytest.raises(claims.NotYours):
        claims.complete(app, person(app, "钱师傅"), req["id"], 1, "x")
    done = claims.complete(app, vol, req["id"], 2, "已换好灯泡")
    assert (done["state"], done["hours"], done["resolution"]) == ("resolved", 2, "已换好灯泡")
    assert "评价 #" in texts_to(app, "o-liu")[-1] and "微心愿" in texts_to(app, "o-liu")[-1]
    R.rate(app, person(app, "刘阿姨"), req["id"], 5, "很热心")
    row = R.get(app.store, req["id"])
    assert (row["state"], row["rating"], row["claimed_by"]) == ("closed", 5, vol["id"])
    m = claims.my_month(app, vol)
    assert (len(m["done"]), m["hours"], m["rating"]) == (1, 2, 5.0)
    figures = claims.month_figures(app, person(app, "陈书记"), "2024-06")
    assert [(r["name"], r["completed"], r["hours"], r["rating"]) for r in figures["rows"]] == [
        ("赵志愿", 1, 2.0, 5.0)]
    assert claims.month_figures(app, person(app, "陈书记"), "2024-07")["rows"] == []


def test_a_residents_own_wish_is_a_request_of_kind_wish(app):
    req = R.file_request(app, resident=person(app, "王小明"), text="想请人帮忙换个灯泡", kind="wish")
    assert R.get(app.store, req["id"])["kind"] == "wish"
    assert texts_to(app, "xm")[-1].startswith(f"已登记微心愿 #{req['id']}")
    assert f"开放认领 {req['id']}" in texts_to(app, "lead3")[-1]


def test_hours_are_read_as_people_write_them():
    assert claims.parse_hours("2小时") == 2
    assert claims.parse_hours("1.5h") == 1.5
    assert claims.parse_hours("半小时") == 0.5
    assert claims.parse_hours("30分钟") == 0.5
    assert claims.parse_hours("２个小时") == 2
    assert claims.parse_hours("已换好") is None


def test_the_link_token_names_the_volunteer_and_cannot_be_altered(app):
    vol = person(app, "赵志愿")
    token = claims.link_token(app, vol)
    assert claims.person_of_token(app, token)["id"] == vol["id"]
    other = f"{person(app, '钱师傅')['id']}.0.{token.split('.')[2]}"
    assert claims.person_of_token(app, other) is None
    # a resident's link is no claimant's link, even signed
    assert claims.person_of_token(app, claims.link_token(app, person(app, "王小明"))) is None


def test_dispatching_or_resolving_it_otherwise_takes_it_off_the_claims(app):
    first, second = wish(app), wish(app, "帮忙取快递")
    vol = person(app, "赵志愿")
    claims.claim(app, vol, first["id"])
    R.assign(app, person(app, "陈书记"), first["id"], "王师傅")  # staff send someone else
    row = R.get(app.store, first["id"])
    assert (row["claim_state"], row["claimed_by"], row["assignee_name"]) == (None, None, "王师傅")
    assert claims.holding(app, vol) == []
    R.resolve(app, person(app, "王楼长"), second["id"], "楼长顺手取了")
    assert R.get(app.store, second["id"])["claim_state"] is None
    assert claims.open_list(app, vol) == []
    assert claims.board(app, person(app, "陈书记")) == {"open": [], "claimed": []}
    with pytest.raises(claims.NotOpen):
        claims.claim(app, vol, second["id"])
