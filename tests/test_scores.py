"""流动小红旗 (issue #14 part 4): a building's month in points from what Linli records, with the
compound branches' cross-evaluation; weights shared out when a part has no data, the community
median for a building without data, drills left out, ties in natural building order, a published
month frozen; the chat words, the dashboard page, its form, its 发布 button and its export."""
from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from chat_rig import say
from helpers_callbacks import NOW, make_settings
from sim_rig import close_sim, make_sim, staff
from web_rig import client, csrf_of, sign_in  # noqa: F401  (client is a fixture)

from bot.app import App
from bot.core.clock import FakeClock
from bot.domain import alerts, scores
from bot.domain.alerts import Draft
from bot.domain.scores import ScoreError
from bot.web import auth

MONTH = "2024-06"  # NOW is 2024-06-01 08:00 in Asia/Shanghai
MIN = 60


# -- a small hand-built community: 东园 (10栋 with 4 households, 2栋 with 4), 西园 (1栋 with 2) --------
@pytest.fixture
def app(tmp_path):
    return App(make_settings(tmp_path), clock=FakeClock(NOW))  # the real outbox: rows only, nothing sent


def _node(store, kind, name, parent=None) -> int:
    path = name if parent is None else f"{store.q1('SELECT path FROM nodes WHERE id=?', (parent,))['path']}/{name}"
    return store.db["nodes"].insert({"kind": kind, "name": name, "parent_id": parent, "path": path}).last_pk


def _resident(store, name, roles="resident", household=None, node=None) -> dict:
    rid = store.db["residents"].insert({"key": f"k-{name}", "name": name, "roles": roles,
                                        "household_id": household, "node_id": node}).last_pk
    return store.q1("SELECT * FROM residents WHERE id=?", (rid,))


@pytest.fixture
def town(app):
    s = app.store
    c = _node(s, "community", "大龙社区")
    g = _node(s, "grid", "第一网格", c)
    east, west = _node(s, "compound", "东园", g), _node(s, "compound", "西园", g)
    b10 = _node(s, "building", "10栋", east)  # created first: a lower id than 2栋
    b2 = _node(s, "building", "2栋", east)
    w1 = _node(s, "building", "1栋", west)
    hh = {}
    for b, n in ((b10, 4), (b2, 4), (w1, 2)):
        hh[b] = [s.db["households"].insert({"building_id": b, "room": f"{i + 1}01", "label": f"{b}-{i + 1}01"}).last_pk
                 for i in range(n)]
    boss = _resident(s, "社区书记", "staff", node=c)
    east_lead = _resident(s, "东园支书", "building_lead", household=hh[b10][0])
    west_lead = _resident(s, "西园支书", "building_lead", household=hh[w1][0])
    s.db["node_leads"].insert_all([{"node_id": east, "resident_id": east_lead["id"]},
                                   {"node_id": west, "resident_id": west_lead["id"]}])
    return {"b10": b10, "b2": b2, "w1": w1, "hh": hh, "boss": boss, "east_lead": east_lead,
            "west_lead": west_lead, "east": east, "west": west}


def _ack(store, alert_id, household, at):
    store.db["acks"].insert({"alert_id": alert_id, "household_id": household, "channel": "oa", "answer": "ok",
                             "at": at})


def _request(store, building, household, *, created, resolved=None, rating=None, **more):
    return store.db["requests"].insert({"household_id": household, "building_id": building, "text": "楼道灯坏了",
                                        "created_at": created, "resolved_at": resolved, "rating": rating,
                                        "state": "resolved" if resolved else "filed", **more}).last_pk


@pytest.fixture
def june(app, town):
    """The hand-checked month (see test_a_month_by_hand)."""
    s, t, hh = app.store, town, town["hh"]
    warning = alerts.issue(app, Draft(type="暴雨", colour="yellow", issuer_id=t["boss"]["id"]))
    for i, minutes in enumerate((10, 20, 30)):
        _ack(s, warning, hh[t["b10"]][i], NOW + minutes * MIN)
    _ack(s, warning, hh[t["b2"]][0], NOW + 60 * MIN)
    for h in hh[t["w1"]]:
        _ack(s, warning, h, NOW + 120 * MIN)
    # a drill: every household of 2栋 answers within a minute; it must not count
    drill = alerts.issue(app, Draft(type="暴雨", colour="yellow", status="exercise", issuer_id=t["boss"]["id"]))
    for h in hh[t["b2"]]:
        _ack(s, drill, h, NOW + 61)
    # a notice is not a warning either
    notice = alerts.issue(app, Draft(type=alerts.NOTICE, colour="blue", text="周六停水"))
    for h in hh[t["b2"]]:
        _ack(s, notice, h, NOW + 62)
    _request(s, t["b10"], hh[t["b10"]][0], created=NOW + 3600, resolved=NOW + 7200, rating=5)
    _request(s, t["b10"], hh[t["b10"]][1], created=NOW + 3600)
    _request(s, t["w1"], hh[t["w1"]][0], created=NOW + 3600, resolved=NOW + 7200, rating=3)
    # a wish is not a resident's report; a request of May is not June's
    _request(s, t["b2"], None, created=NOW + 3600, kind="wish")
    _request(s, t["b2"], hh[t["b2"]][0], created=NOW - 86400 * 3, resolved=NOW - 86400, rating=1)
    scores.enter_peer_scores(app, t["east_lead"], t["w1"], MONTH, {"safety": 8, "hygiene": 6, "civility": 10})
    scores.enter_peer_scores(app, t["west_lead"], t["b10"], MONTH, {"safety": 9, "hygiene": 9, "civility": 9})
    scores.enter_peer_score(app, t["boss"], t["b10"], MONTH, "safety", 7)
    return town


def by_id(board) -> dict:
    return {r["building_id"]: r for r in board.rows}


def test_a_month_by_hand(app, june):
    """Turnout and claims have no data for anyone: their 20 points go to the other parts (×100/80).
    10栋: acks 3/4 in 10/20/30 min (median 20 → 1-20/120), 2 requests on 4 households (the most per
    household, with 1栋's 1 on 2: both 1.0), 1 of 2 resolved, rated 5; peer 安全 (9+7)/2, 卫生 9, 文明 9.
    2栋: 1/4 acked after 60 min; no request (0 for 报事参与, the median for 办结率 and 评价); nobody
    evaluated it (the median of 0.8667 and 0.8). 1栋: 2/2 after 120 min (speed 0), 1 request resolved
    and rated 3, peer (8+6+10)/3."""
    board = scores.month_scores(app, MONTH)
    assert board.left_out == ["turnout", "claims"]
    assert board.weights == {"ack_share": 25, "ack_speed": 12.5, "requests": 12.5, "resolved": 12.5,
                             "rating": 12.5, "peer": 25}
    rows = by_id(board)
    b10, b2, w1 = rows[june["b10"]], rows[june["b2"]], rows[june["w1"]]
    peer10 = (8 + 9 + 9) / 3 / 10
    assert b10["parts"]["ack_share"]["points"] == pytest.approx(25 * 0.75)
    assert b10["parts"]["ack_speed"]["raw"]["minutes"] == 20
    assert b10["parts"]["ack_speed"]["points"] == pytest.approx(12.5 * (1 - 20 / 120), abs=0.01)
    assert b10["peer"]["safety"] == 8 and b10["peer"]["hygiene"] == 9
    expected10 = 25 * 0.75 + 12.5 * (1 - 20 / 120) + 12.5 * 1 + 12.5 * 0.5 + 12.5 * 1 + 25 * peer10
    expected2 = 25 * 0.25 + 12.5 * 0.5 + 0 + 12.5 * 0.75 + 12.5 * 0.75 + 25 * (peer10 + 0.8) / 2
    expected1 = 25 * 1 + 0 + 12.5 * 1 + 12.5 * 1 + 12.5 * 0.5 + 25 * 0.8
    assert b10["total"] == round(expected10, 1) == 82.1
    assert b2["total"] == round(expected2, 1) == 52.1
    assert w1["total"] == round(expected1, 1)
    assert expected1 == pytest.approx(76.25)
    # the drill (every household of 2栋 within a minute) and the notice changed nothing for 2栋
    assert b2["parts"]["ack_share"]["raw"]["acked"] == 1 and b2["parts"]["ack_speed"]["raw"]["minutes"] == 60
    # 2栋's gaps are imputed and say so; its zero requests are a zero, not a gap
    assert b2["parts"]["resolved"]["imputed"] and b2["parts"]["rating"]["imputed"] and b2["parts"]["peer"]["imputed"]
    assert b2["parts"]["requests"] == {"raw": {"value": 0.0, "reported": 0}, "norm": 0.0, "points": 0.0,
                                       "imputed": False}
    assert [r["building_id"] for r in board.rows] == [june["b10"], june["w1"], june["b2"]]
    assert [r["rank"] for r in board.rows] == [1, 2, 3]


def test_weights_are_shared_out_and_an_empty_month_scores_nothing(app, town):
    empty = scores.month_scores(app, MONTH)
    assert empty.empty and empty.left_out == list(scores.PARTS)
    with pytest.raises(ScoreError) as e:
        scores.publish(app, town["boss"], MONTH)
    assert e.value.code == "no_data"
    # only peer scores: the peer part carries all 100 points
    scores.enter_peer_scores(app, town["east_lead"], town["w1"], MONTH, {"safety": 7, "hygiene": 7, "civility": 7})
    board = scores.month_scores(app, MONTH)
    assert board.weights == {"peer": 100}
    rows = by_id(board)
    assert rows[town["w1"]]["total"] == 70.0
    # the others have no peer score: the median of the one building that has one
    assert rows[town["b10"]]["total"] == 70.0 and rows[town["b10"]]["parts"]["peer"]["imputed"]


def test_claims_and_turnout_count_for_the_claimants_building_and_the_voters(app, town):
    s, hh = app.store, town["hh"]
    volunteer = _resident(s, "志愿者小李", "volunteer", household=hh[town["b2"]][1])
    # 2栋's volunteer did 3 h for someone in 1栋 (counts for 2栋), and one claim without hours (1 h)
    _request(s, town["w1"], hh[town["w1"]][1], created=NOW, resolved=NOW + 3600, claim_state="claimed",
             claimed_by=volunteer["id"], hours=3)
    _request(s, town["w1"], None, created=NOW, resolved=NOW + 7200, kind="wish", claim_state="claimed",
             claimed_by=volunteer["id"])
    # an open claim (not resolved) does not count
    _request(s, town["w1"], None, created=NOW, kind="wish", claim_state="claimed", claimed_by=volunteer["id"])
    cid = s.db["consultations"].insert({"question": "加装电梯？", "options": '["同意","不同意"]', "scope": "[]",
                                        "state": "closed", "created_at": NOW, "closes_at": NOW + 86400,
                                        "closed_at": NOW + 86400}).last_pk
    for b in (town["b10"], town["w1"]):
        for h in hh[b]:
            s.db["consultation_voters"].insert({"consultation_id": cid, "household_id": h, "building_id": b})
    for h in hh[town["b10"]][:1] + hh[town["w1"]]:
        s.db["ballots"].insert({"consultation_id": cid, "household_id": h, "choice": 0, "channel": "oa", "at": NOW})
    s.db["ballots"].insert({"consultation_id": cid, "household_id": hh[town["w1"]][0], "choice": 1,
                            "channel": "oa", "at": NOW + 60})  # a changed vote is still one household
    board = scores.month_scores(app, MONTH)
    assert set(board.weights) == {"requests", "resolved", "turnout", "claims"}
    rows = by_id(board)
    assert rows[town["b2"]]["parts"]["claims"]["raw"] == {"value": 1.0, "claims": 2, "hours": 4.0}
    assert rows[town["b2"]]["parts"]["claims"]["norm"] == 1.0 and rows[town["w1"]]["parts"]["claims"]["norm"] == 0
    assert rows[town["b10"]]["parts"]["turnout"]["raw"] == {"value": 0.25, "voted": 1, "voters": 4}
    assert rows[town["w1"]]["parts"]["turnout"]["norm"] == 1.0
    # 2栋 had no voters: the median of 0.25 and 1.0
    assert rows[town["b2"]]["parts"]["turnout"]["imputed"] and rows[town["b2"]]["parts"]["turnout"]["norm"] == 0.625


def test_equal_totals_follow_natural_building_order(app, town):
    """10栋 and 2栋 get the same scores: 2栋 comes first (natural order), though its id is higher."""
    for b in (town["b10"], town["b2"]):
        scores.enter_peer_scores(app, town["west_lead"], b, MONTH, {"safety": 9, "hygiene": 9, "civility": 9})
    scores.enter_peer_scores(app, town["east_lead"], town["w1"], MONTH, {"safety": 5})
    rows = scores.month_scores(app, MONTH).rows
    assert [(r["building"], r["rank"]) for r in rows] == [("2栋", 1), ("10栋", 2), ("1栋", 3)]
    assert rows[0]["total"] == rows[1]["total"] == 90.0


def test_peer_scores_are_refused_for_the_own_compound_and_replaced_when_entered_again(app, town):
    with pytest.raises(ScoreError) as e:
        scores.enter_peer_scores(app, town["east_lead"], town["b2"], MONTH, {"safety": 9})
    assert e.value.code == "own_compound"
    assert "不能给自己小区的楼栋打分" in scores_error_text(e.value)
    nobody = _resident(app.store, "普通居民", household=town["hh"][town["b2"]][2])
    with pytest.raises(ScoreError) as e:
        scores.enter_peer_scores(app, nobody, town["w1"], MONTH, {"safety": 9})
    assert e.value.code == "not_allowed"
    for bad in ({"safety": 11}, {"safety": -1}, {"safety": "九"}, {}):
        with pytest.raises(ScoreError):
            scores.enter_peer_scores(app, town["east_lead"], town["w1"], MONTH, bad)
    # staff may score their own … anyone's buildings
    scores.enter_peer_score(app, town["boss"], town["b2"], MONTH, "hygiene", 6)
    scores.enter_peer_score(app, town["east_lead"], town["w1"], MONTH, "safety", 4)
    scores.enter_peer_score(app, town["east_lead"], town["w1"], MONTH, "safety", 9)  # replaces the 4
    assert app.store.q("SELECT score FROM peer_scores WHERE building_id=? AND by_id=?",
                       (town["w1"], town["east_lead"]["id"])) == [{"score": 9.0}]
    # a month not begun yet is refused
    with pytest.raises(ScoreError) as e:
        scores.enter_peer_score(app, town["east_lead"], town["w1"], "2024-07", "safety", 9)
    assert e.value.code == "future_month"


def scores_error_text(e: ScoreError) -> str:
    from bot.core import texts

    return texts.render("messages/scores/error.j2", code=e.code, **e.params)


def test_publishing_freezes_the_month_and_sends_the_notice_once(app, june):
    before = scores.month_scores(app, MONTH)
    done = scores.publish(app, june["boss"], MONTH)
    alert = app.store.q1("SELECT * FROM alerts WHERE id=?", (done["alert_id"],))
    assert alert["kind"] == "notice" and alert["status"] == "actual" and alert["scope"] == "[]"
    assert "流动小红旗" in alert["text"] and "东园 10栋" in alert["text"] and "82.1 分" in alert["text"]
    assert "西园 1栋" in alert["text"] and "东园 2栋" in alert["text"]  # top 3 of 3
    assert app.store.scalar("SELECT alert_id FROM score_months WHERE month=?", (MONTH,)) == done["alert_id"]
    # later data changes nothing: a new rating for 2栋, more peer scores are refused
    _request(app.store, june["b2"], june["hh"][june["b2"]][0], created=NOW + 7200, resolved=NOW + 9000, rating=5)
    after = scores.month_scores(app, MONTH)
    assert after.published["alert_id"] == done["alert_id"]
    assert [(r["building_id"], r["total"]) for r in after.rows] == [(r["building_id"], r["total"]) for r in before.rows]
    assert scores.compute(app.store, app.settings, MONTH)["rows"] != after.rows  # the live figures did move
    with pytest.raises(ScoreError) as e:
        scores.enter_peer_score(app, june["east_lead"], june["w1"], MONTH, "safety", 1)
    assert e.value.code == "month_published"
    with pytest.raises(ScoreError) as e:
        scores.publish(app, june["boss"], MONTH)
    assert e.value.code == "already_published" and "不能重复发布" in scores_error_text(e.value)
    assert app.store.scalar("SELECT COUNT(*) FROM alerts WHERE kind='notice' AND text LIKE '%流动小红旗%'") == 1
    with pytest.raises(ScoreError) as e:
        scores.publish(app, june["east_lead"], "2024-05")
    assert e.value.code == "staff_only"


def test_top_n_and_a_viewers_area_keep_community_ranks(app, june):
    board = scores.month_scores(app, MONTH, within=[june["b2"]])
    assert [(r["building_id"], r["rank"]) for r in board.rows] == [(june["b2"], 3)] and board.total_buildings == 3
    app.settings = __import__("dataclasses").replace(
        app.settings, scores=__import__("dataclasses").replace(app.settings.scores, top_n=1))
    done = scores.publish(app, june["boss"], MONTH)
    assert [r["building_id"] for r in done["top"]] == [june["b10"]]


# -- a second hand-checked month: two compounds, four buildings, every part with data ----------------
@pytest.fixture
def four(app):
    """北苑 (1栋 with 4 households, 2栋 with 2) and 南苑 (3栋 with 4, 4栋 with 2); staff, each
    compound's lead, a volunteer in 1栋 and one in 4栋."""
    s = app.store
    c = _node(s, "community", "大龙社区")
    g = _node(s, "grid", "第一网格", c)
    north, south = _node(s, "compound", "北苑", g), _node(s, "compound", "南苑", g)
    n1, n2 = _node(s, "building", "1栋", north), _node(s, "building", "2栋", north)
    s3, s4 = _node(s, "building", "3栋", south), _node(s, "building", "4栋", south)
    hh = {b: [s.db["households"].insert({"building_id": b, "room": f"{i + 1}01", "label": f"{b}-{i + 1}01"}).last_pk
              for i in range(n)] for b, n in ((n1, 4), (n2, 2), (s3, 4), (s4, 2))}
    boss = _resident(s, "社区书记", "staff", node=c)
    north_lead = _resident(s, "北苑支书", "building_lead", household=hh[n1][0])
    south_lead = _resident(s, "南苑支书", "building_lead", household=hh[s3][0])
    s.db["node_leads"].insert_all([{"node_id": north, "resident_id": north_lead["id"]},
                                   {"node_id": south, "resident_id": south_lead["id"]}])
    vol_n1 = _resident(s, "志愿者北", "volunteer", household=hh[n1][1])
    vol_s4 = _resident(s, "志愿者南", "volunteer", household=hh[s4][1])
    return {"n1": n1, "n2": n2, "s3": s3, "s4": s4, "hh": hh, "boss": boss, "north_lead": north_lead,
            "south_lead": south_lead, "vol_n1": vol_n1, "vol_s4": vol_s4}


def _consultation(store, state, voters: dict[int, list[int]], voted: list[int], *, closed_at) -> int:
    cid = store.db["consultations"].insert({"question": "加装电梯？", "options": '["同意","不同意"]', "scope": "[]",
                                            "state": state, "created_at": NOW, "closes_at": closed_at,
                                            "closed_at": closed_at}).last_pk
    for b, households in voters.items():
        for h in households:
            store.db["consultation_voters"].insert({"consultation_id": cid, "household_id": h, "building_id": b})
    for h in voted:
        store.db["ballots"].insert({"consultation_id": cid, "household_id": h, "choice": 0, "channel": "oa",
                                    "at": NOW})
    return cid


def test_a_second_month_by_hand_every_part(app, four):
    """Every part has data, so the configured weights stand (20 10 10 10 10 10 10 20).

    acks of the one real warning (all 12 households) — first answers only, in minutes:
      1栋 6, 12, 30 (and 30's second answer at 40), one silent: share 3/4, median 12 → 1 - 12/120 = 0.9
      2栋 60, 84: share 1, median 72 → 0.4
      3栋 nobody (the drill, which everyone there answered within a minute, does not count):
          share 0, speed 0 (reached and silent: not a gap for the median)
      4栋 150, one silent: share 1/2, speed 0 (past the 120 min cap)
    requests of June (a wish and a May request do not count):
      1栋 2 on 4 households, both resolved, rated 5 and 4 → 0.5 per household, resolved 1, rating 0.875
      2栋 1 on 2, open, unrated → 0.5, resolved 0, rating imputed
      3栋 1 on 4, resolved, rated 2 → 0.25, resolved 1, rating 0.25
      4栋 none → 0, resolved and rating imputed
      per household ÷ the top 0.5: 1, 1, 0.5, 0; resolved median (1, 0, 1) = 1; rating median
      (0.875, 0.25) = 0.5625
    turnout (closed in June; the cancelled one, which all of 3栋 voted in, does not count):
      2栋 2/2 = 1, 3栋 1/4, 4栋 1/2; 1栋 was not asked: the median 0.5
    claims resolved in June, for the claimant's building: 4栋's volunteer 3 h, 1栋's one claim without
      hours (1 h): per household 1.5 and 0.25 → ÷ 1.5: 4栋 1, 1栋 1/6 (an unfinished claim: nothing)
    peer: 3栋 by 北苑's lead (安全8 卫生6 文明10, then 安全 again: 9) and staff (7 8 8): per category
      8, 7, 9 → 0.8; 1栋 by 南苑's lead 10 9 8 → 0.9; 2栋 and 4栋 the median 0.85
    """
    s, t, hh = app.store, four, four["hh"]
    warning = alerts.issue(app, Draft(type="暴雨", colour="yellow", issuer_id=t["boss"]["id"]))
    for b, minutes in ((t["n1"], (6, 12, 30)), (t["n2"], (60, 84)), (t["s4"], (150,))):
        for h, m in zip(hh[b], minutes, strict=False):
            _ack(s, warning, h, NOW + m * MIN)
    _ack(s, warning, hh[t["n1"]][2], NOW + 40 * MIN)  # a second answer: the first one counts
    drill = alerts.issue(app, Draft(type="暴雨", colour="yellow", status="exercise", issuer_id=t["boss"]["id"]))
    for h in hh[t["s3"]]:
        _ack(s, drill, h, NOW + 30)
    _request(s, t["n1"], hh[t["n1"]][0], created=NOW + 3600, resolved=NOW + 7200, rating=5)
    _request(s, t["n1"], hh[t["n1"]][1], created=NOW + 3600, resolved=NOW + 7200, rating=4)
    _request(s, t["n2"], hh[t["n2"]][0], created=NOW + 3600)
    _request(s, t["s3"], hh[t["s3"]][1], created=NOW + 3600, resolved=NOW + 7200, rating=2)
    _request(s, t["s4"], hh[t["s4"]][0], created=NOW - 86400 * 2, resolved=NOW - 86400, rating=5)  # May
    _request(s, t["n2"], None, created=NOW + 3600, kind="wish")
    _consultation(s, "closed", {t["n2"]: hh[t["n2"]], t["s3"]: hh[t["s3"]], t["s4"]: hh[t["s4"]]},
                  hh[t["n2"]] + hh[t["s3"]][:1] + hh[t["s4"]][:1], closed_at=NOW + 86400)
    _consultation(s, "cancelled", {t["s3"]: hh[t["s3"]]}, hh[t["s3"]], closed_at=NOW + 86400)
    _request(s, t["n2"], None, created=NOW, resolved=NOW + 7200, kind="wish", claim_state="claimed",
             claimed_by=t["vol_s4"]["id"], hours=3)
    _request(s, t["s3"], None, created=NOW, resolved=NOW + 7200, kind="wish", claim_state="claimed",
             claimed_by=t["vol_n1"]["id"])
    _request(s, t["s3"], None, created=NOW, kind="wish", claim_state="claimed", claimed_by=t["vol_n1"]["id"],
             hours=5)  # not done yet
    scores.enter_peer_scores(app, t["north_lead"], t["s3"], MONTH, {"safety": 8, "hygiene": 6, "civility": 10})
    scores.enter_peer_scores(app, t["north_lead"], t["s3"], MONTH, {"safety": 9})
    scores.enter_peer_scores(app, t["boss"], t["s3"], MONTH, {"safety": 7, "hygiene": 8, "civility": 8})
    scores.enter_peer_scores(app, t["south_lead"], t["n1"], MONTH, {"safety": 10, "hygiene": 9, "civility": 8})

    board = scores.month_scores(app, MONTH)
    assert board.left_out == []
    assert board.weights == {"ack_share": 20, "ack_speed": 10, "requests": 10, "resolved": 10, "rating": 10,
                             "turnout": 10, "claims": 10, "peer": 20}
    rows = by_id(board)
    norms = {b: {p: rows[t[b]]["parts"][p]["norm"] for p in scores.PARTS} for b in ("n1", "n2", "s3", "s4")}
    assert norms["n1"] == {"ack_share": 0.75, "ack_speed": 0.9, "requests": 1, "resolved": 1, "rating": 0.875,
                           "turnout": 0.5, "claims": pytest.approx(1 / 6, abs=1e-4), "peer": 0.9}
    assert norms["n2"] == {"ack_share": 1, "ack_speed": 0.4, "requests": 1, "resolved": 0, "rating": 0.5625,
                           "turnout": 1, "claims": 0, "peer": 0.85}
    assert norms["s3"] == {"ack_share": 0, "ack_speed": 0, "requests": 0.5, "resolved": 1, "rating": 0.25,
                           "turnout": 0.25, "claims": 0, "peer": 0.8}
    assert norms["s4"] == {"ack_share": 0.5, "ack_speed": 0, "requests": 0, "resolved": 1, "rating": 0.5625,
                           "turnout": 0.5, "claims": 1, "peer": 0.85}
    imputed = {b: {p for p in scores.PARTS if rows[t[b]]["parts"][p]["imputed"]} for b in ("n1", "n2", "s3", "s4")}
    assert imputed == {"n1": {"turnout"}, "n2": {"rating", "peer"}, "s3": set(), "s4": {"resolved", "rating", "peer"}}
    assert rows[t["s3"]]["parts"]["ack_speed"]["raw"] == {"value": 0.0, "minutes": None, "answers": 0}
    assert rows[t["n1"]]["parts"]["ack_speed"]["raw"]["minutes"] == 12
    assert rows[t["s3"]]["peer"] == {"value": 0.8, "safety": 8, "hygiene": 7, "civility": 9, "evaluators": 2}
    assert rows[t["s4"]]["parts"]["claims"]["raw"] == {"value": 1.5, "claims": 1, "hours": 3.0}
    assert rows[t["n1"]]["parts"]["claims"]["raw"] == {"value": 0.25, "claims": 1, "hours": 1.0}
    # 1栋 15 + 9 + 10 + 10 + 8.75 + 5 + 1.667 + 18; 2栋 20 + 4 + 10 + 0 + 5.625 + 10 + 0 + 17;
    # 3栋 0 + 0 + 5 + 10 + 2.5 + 2.5 + 0 + 16; 4栋 10 + 0 + 0 + 10 + 5.625 + 5 + 10 + 17
    assert [(r["building_id"], r["total"], r["rank"]) for r in board.rows] == [
        (t["n1"], 77.4, 1), (t["n2"], 66.6, 2), (t["s4"], 57.6, 3), (t["s3"], 36.0, 4)]


def test_month_bounds_are_the_communitys_local_months(app, town):
    """Asia/Shanghai is UTC+8: 23:30 on 31 May there is 15:30 UTC, 00:10 on 1 June is 16:10 UTC on
    31 May. The first warning (and request) is May's, the second June's."""
    s, hh = app.store, town["hh"]
    may_last = NOW - 8 * 3600 - 30 * MIN   # 2024-05-31 23:30 Asia/Shanghai
    june_first = NOW - 7 * 3600 - 50 * MIN  # 2024-06-01 00:10 Asia/Shanghai
    app.clock.t = may_last
    late = alerts.issue(app, Draft(type="暴雨", colour="yellow", issuer_id=town["boss"]["id"]))
    _ack(s, late, hh[town["b10"]][0], may_last + 5 * MIN)
    _request(s, town["b10"], hh[town["b10"]][0], created=may_last)
    app.clock.t = june_first
    early = alerts.issue(app, Draft(type="暴雨", colour="yellow", issuer_id=town["boss"]["id"]))
    _ack(s, early, hh[town["w1"]][0], june_first + 5 * MIN)
    _request(s, town["w1"], hh[town["w1"]][0], created=june_first)
    # a score entered at 00:10 without a month is June's
    assert scores.enter_peer_scores(app, town["east_lead"], town["w1"], None, {"safety": 8})["month"] == MONTH
    may, june = by_id(scores.month_scores(app, "2024-05")), by_id(scores.month_scores(app, MONTH))
    assert may[town["b10"]]["parts"]["ack_share"]["raw"]["acked"] == 1
    assert may[town["w1"]]["parts"]["ack_share"]["raw"]["acked"] == 0
    assert may[town["b10"]]["parts"]["requests"]["raw"]["reported"] == 1
    assert may[town["w1"]]["parts"]["requests"]["raw"]["reported"] == 0
    assert june[town["w1"]]["parts"]["ack_share"]["raw"]["acked"] == 1
    assert june[town["b10"]]["parts"]["ack_share"]["raw"]["acked"] == 0
    assert june[town["w1"]]["parts"]["requests"]["raw"]["reported"] == 1
    assert june[town["b10"]]["parts"]["requests"]["raw"]["reported"] == 0
    assert june[town["w1"]]["peer"]["safety"] == 8 and may[town["w1"]]["peer"] is None


@pytest.mark.parametrize("word, month", [("", "2024-06"), ("本月", "2024-06"), ("上月", "2024-05"),
                                         ("6月", "2024-06"), ("11月", "2023-11"), ("2024年3月", "2024-03"),
                                         ("2024-02", "2024-02")])
def test_months_as_people_write_them(word, month):
    assert scores.parse_month(word, NOW) == month


def test_a_month_that_is_not_one_is_refused():
    for word in ("13月", "hello", "2024-13"):
        with pytest.raises(ScoreError):
            scores.parse_month(word, NOW)


# -- chat ------------------------------------------------------------------------------------------
@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=60, dashboard={"password": PASSWORD})
    yield rig
    await close_sim(rig)


def compound_lead(store) -> dict:
    """The register names no compound lead: make 大龙一区's building lead lead the compound too."""
    compound = store.q1("SELECT id FROM nodes WHERE kind='compound' AND name='大龙一区'")["id"]
    lead = store.q1("SELECT r.* FROM residents r JOIN node_leads l ON l.resident_id=r.id JOIN nodes b ON b.id=l.node_id "
                    "WHERE b.parent_id=? AND r.wecom_userid IS NOT NULL ORDER BY r.id LIMIT 1", (compound,))
    store.db["node_leads"].insert({"node_id": compound, "resident_id": lead["id"], "rank": 0})
    return lead


def bid(store, compound: str, building: str = "1栋") -> int:
    return store.q1("SELECT b.id FROM nodes b JOIN nodes c ON c.id=b.parent_id WHERE c.name=? AND b.name=?",
                    (compound, building))["id"]


async def test_chat_peer_scores_from_a_compound_lead(sim):
    lead = compound_lead(sim.store)
    reply = await say(sim, lead, "评分 金湖花园/1栋 安全9 卫生8 文明10")
    assert "已记下" in reply and "金湖花园/1栋" in reply and "安全 9 分" in reply and "文明 10 分" in reply
    rows = sim.store.q("SELECT category, score, month FROM peer_scores WHERE by_id=? ORDER BY category", (lead["id"],))
    assert rows == [{"category": "civility", "score": 10.0, "month": MONTH},
                    {"category": "hygiene", "score": 8.0, "month": MONTH},
                    {"category": "safety", "score": 9.0, "month": MONTH}]
    # again: replaces theirs; a month may be named; the building may be written without the slash
    assert "已记下" in await say(sim, lead, "互评 金湖花园1栋 安全：6")
    assert sim.store.scalar("SELECT score FROM peer_scores WHERE by_id=? AND category='safety' AND month=?",
                            (lead["id"], MONTH)) == 6
    assert "2024年5月" in await say(sim, lead, "评分 龙景苑/1栋 卫生7 5月")
    # their own compound is refused, in Chinese
    own = await say(sim, lead, "评分 大龙一区/1栋 安全10")
    assert "不能给自己小区的楼栋打分" in own
    # "1栋" alone names a building in every other compound: asked to say which
    assert "不止一栋" in await say(sim, lead, "评分 1栋 安全9")
    assert "0 到 10" in await say(sim, lead, "评分 龙景苑/1栋 安全11")
    assert "格式" in await say(sim, lead, "评分 龙景苑/1栋")
    assert "没有找到楼栋" in await say(sim, lead, "评分 火星/1栋 安全9")
    assert sim.store.scalar("SELECT COUNT(*) FROM peer_scores WHERE building_id=?",
                            (bid(sim.store, "大龙一区"),)) == 0


async def test_chat_a_building_lead_who_leads_no_compound_is_refused(sim):
    lead = sim.store.q1("SELECT r.* FROM residents r JOIN node_leads l ON l.resident_id=r.id "
                        "WHERE r.wecom_userid IS NOT NULL AND r.roles LIKE '%building_lead%' ORDER BY r.id LIMIT 1")
    assert "只有小区党支部负责人和社区工作人员" in await say(sim, lead, "评分 金湖花园/1栋 安全9")
    assert sim.store.scalar("SELECT COUNT(*) FROM peer_scores") == 0


async def test_chat_ranking_and_publishing_by_staff(sim):
    boss, lead = staff(sim.store), compound_lead(sim.store)
    await say(sim, lead, "评分 金湖花园/1栋 安全10 卫生10 文明10")
    await say(sim, boss, "评分 大龙一区/1栋 安全8 卫生8 文明8")  # staff may score any compound
    text = await say(sim, boss, "红旗榜")
    assert "2024年6月流动小红旗榜" in text and "尚未发布" in text
    assert text.index("金湖花园 1栋") < text.index("大龙一区 1栋")
    assert "100.0 分" in text and "公布红旗榜" in text
    assert "请核对" in await say(sim, boss, "公布红旗榜")
    done = await say(sim, boss, "确认")
    assert "已发布" in done and "金湖花园 1栋" in done
    notice = sim.store.q1("SELECT * FROM alerts WHERE kind='notice' ORDER BY id DESC")
    assert "流动小红旗" in notice["text"] and "金湖花园 1栋" in notice["text"]
    assert sim.store.scalar("SELECT alert_id FROM score_months WHERE month=?", (MONTH,)) == notice["id"]
    assert "不能重复发布" in await say(sim, boss, "公布红旗榜 6月")
    assert "已于" in await say(sim, boss, "红旗榜 本月")
    # a lead asking to publish is told who may
    assert "只有社区工作人员可以发布红旗榜" in await say(sim, lead, "公布红旗榜 5月")


async def test_chat_a_lead_sees_their_area_and_a_resident_is_not_a_scorer(sim):
    grid_lead = sim.store.q1("SELECT * FROM residents WHERE roles LIKE '%grid_lead%' AND wecom_userid IS NOT NULL "
                             "ORDER BY id LIMIT 1")
    scores.enter_peer_scores(sim.app, staff(sim.store), bid(sim.store, "龙景苑"), MONTH, {"safety": 6})
    text = await say(sim, grid_lead, "红旗榜")
    assert "流动小红旗榜" in text and "大龙一区 1栋" in text and "金湖花园 1栋" not in text  # 第一网格 only
    assert "公布红旗榜" not in text  # the publishing hint is for staff
    resident = sim.store.q1("SELECT * FROM residents WHERE roles='resident' AND oa_openid IS NOT NULL "
                            "AND household_id IS NOT NULL ORDER BY id LIMIT 1")
    await say(sim, resident, "评分 金湖花园/1栋 安全1 卫生1 文明1")
    assert sim.store.scalar("SELECT COUNT(*) FROM peer_scores WHERE by_id=?", (resident["id"],)) == 0
    assert "不认识" not in await say(sim, staff(sim.store), "红旗榜 5月")


def score_notices(store) -> int:
    return store.scalar("SELECT COUNT(*) FROM alerts WHERE kind='notice' AND text LIKE '%流动小红旗%'")


async def test_chat_publish_is_a_preview_and_only_confirm_sends_it(sim):
    boss = staff(sim.store)
    await say(sim, boss, "评分 金湖花园/1栋 安全10")
    expected = scores.preview(sim.app, boss, MONTH)["text"]
    shown = await say(sim, boss, "发布红旗榜 6月")
    # the notice exactly as it will go out, the month, that it freezes, how to answer
    assert expected in shown and "2024年6月" in shown and "定格" in shown
    assert "回复“确认”发布，“取消”放弃" in shown
    assert score_notices(sim.store) == 0 and sim.store.scalar("SELECT COUNT(*) FROM score_months") == 0
    done = await say(sim, boss, "确认")
    assert "已发布" in done and "金湖花园 1栋" in done
    notice = sim.store.q1("SELECT * FROM alerts WHERE kind='notice' ORDER BY id DESC")
    assert notice["text"] == expected  # what the preview showed is what went out
    assert sim.store.scalar("SELECT alert_id FROM score_months WHERE month=?", (MONTH,)) == notice["id"]
    # the preview is used up: a second 确认 is not scores' any more, and nothing goes out twice
    assert "已发布" not in await say(sim, boss, "确认")
    assert "不能重复发布" in await say(sim, boss, "发布红旗榜")
    assert score_notices(sim.store) == 1


async def test_chat_cancel_publishes_nothing(sim):
    boss = staff(sim.store)
    await say(sim, boss, "评分 金湖花园/1栋 安全10")
    await say(sim, boss, "发布红旗榜")
    assert "没有发布" in await say(sim, boss, "取消")
    assert "已发布" not in await say(sim, boss, "确认")
    assert score_notices(sim.store) == 0 and sim.store.scalar("SELECT COUNT(*) FROM score_months") == 0


async def test_chat_an_expired_preview_is_not_confirmed(sim):
    from handlers.scores import CONFIRM_TTL_S

    boss = staff(sim.store)
    await say(sim, boss, "评分 金湖花园/1栋 安全10")
    assert "10 分钟内不回复" in await say(sim, boss, "发布红旗榜")
    sim.clock.advance(CONFIRM_TTL_S + 1)
    assert "已发布" not in await say(sim, boss, "确认")
    assert score_notices(sim.store) == 0 and sim.store.scalar("SELECT COUNT(*) FROM score_months") == 0


async def test_chat_a_schedule_preview_keeps_its_own_confirm(sim):
    """A newer preview of another kind (here a schedule) replaces the scores preview: 确认 is the
    schedule's, and no ranking goes out."""
    boss = staff(sim.store)
    await say(sim, boss, "评分 金湖花园/1栋 安全10")
    await say(sim, boss, "发布红旗榜")
    await say(sim, boss, "定时 明天8点 通知 周六上午停水，请提前储水")
    await say(sim, boss, "确认")
    assert sim.store.scalar("SELECT COUNT(*) FROM schedules") == 1
    assert score_notices(sim.store) == 0 and sim.store.scalar("SELECT COUNT(*) FROM score_months") == 0


async def test_chat_confirm_checks_again_published_meanwhile_or_changed(sim):
    boss, lead = staff(sim.store), compound_lead(sim.store)
    await say(sim, lead, "评分 金湖花园/1栋 安全10")
    # figures moved after the preview (another building now leads): nothing sent, a new preview shown
    await say(sim, boss, "发布红旗榜")
    scores.enter_peer_scores(sim.app, boss, bid(sim.store, "碧水湾"), MONTH, {"safety": 10, "hygiene": 10,
                                                                              "civility": 10})
    scores.enter_peer_scores(sim.app, lead, bid(sim.store, "金湖花园"), MONTH, {"safety": 3})
    again = await say(sim, boss, "确认")
    assert "有了变化" in again and "回复“确认”发布" in again and score_notices(sim.store) == 0
    assert "第1名　碧水湾 1栋" in again and "金湖花园 1栋" not in again  # 3 points: below every median
    # published from the dashboard meanwhile: the pending 确认 is refused, nothing goes out twice
    scores.publish(sim.app, boss, MONTH)
    assert "不能重复发布" in await say(sim, boss, "确认")
    assert score_notices(sim.store) == 1


# -- dashboard -------------------------------------------------------------------------------------
PASSWORD = "scores-pw-1"


@pytest.fixture
def rig(sim):
    return sim


async def test_the_page_ranks_and_a_lead_sees_their_area(rig, client):
    lead = compound_lead(rig.store)
    scores.enter_peer_scores(rig.app, lead, bid(rig.store, "碧水湾"), MONTH, {"safety": 10, "hygiene": 10,
                                                                              "civility": 10})
    scores.enter_peer_scores(rig.app, lead, bid(rig.store, "金湖花园"), MONTH, {"safety": 5})
    await sign_in(client, "admin", PASSWORD)
    html = await (await client.get("/scores")).text()
    assert "流动小红旗" in html and 'id="score-table"' in html and "2024年6月" in html
    first = html.index(f'id="b-{bid(rig.store, "碧水湾")}"')
    assert first < html.index(f'id="b-{bid(rig.store, "大龙一区")}"')
    assert 'id="publish"' in html and "支部互评" in html  # admin's page: publish, and the weights line
    # the 发布 form asks the browser first (forms.js reads data-confirm; the CSP forbids inline handlers)
    assert 'id="publish-form" data-confirm="确定发布2024年6月的流动小红旗榜吗？' in html
    assert '<script src="/static/forms.js"></script>' in html
    assert 'id="peer-form"' not in html  # the unlinked admin account has no register entry to score as
    assert "中位数" in html  # the others' peer part is the median
    assert 'href="/static/scores.css"' in html
    # a month with nothing in it
    html = await (await client.get("/scores?month=2024-05")).text()
    assert 'id="scores-empty"' in html
    assert (await client.get("/scores?month=2024-13")).status == 400
    # the compound lead's account: their area's rows (the community's ranks) and the form
    auth.create_user(rig.store, "lead", "lead-pw", resident_id=lead["id"])
    await client.post("/logout", data={"csrf": csrf_of(html)})
    await sign_in(client, "lead", "lead-pw")
    html = await (await client.get("/scores")).text()
    assert f'id="b-{bid(rig.store, "大龙一区")}"' in html and f'id="b-{bid(rig.store, "碧水湾")}"' not in html
    assert 'id="peer-form"' in html and 'id="publish"' not in html
    assert f'<option value="{bid(rig.store, "大龙一区")}">' not in html  # not their own compound
    assert f'<option value="{bid(rig.store, "碧水湾")}">' in html


async def test_the_form_enters_peer_scores_with_csrf_and_refuses_the_own_compound(rig, client):
    lead = compound_lead(rig.store)
    auth.create_user(rig.store, "lead", "lead-pw", resident_id=lead["id"])
    csrf = await sign_in(client, "lead", "lead-pw")
    target = bid(rig.store, "碧水湾")
    form = {"month": MONTH, "building": str(target), "safety": "9", "hygiene": "", "civility": "7.5"}
    assert (await client.post("/scores/peer", data=form)).status == 403  # no CSRF token
    resp = await client.post("/scores/peer", data={**form, "csrf": csrf}, allow_redirects=False)
    assert resp.status == 303 and "saved=peer" in resp.headers["Location"]
    assert rig.store.q("SELECT category, score FROM peer_scores WHERE building_id=? ORDER BY category", (target,)) == [
        {"category": "civility", "score": 7.5}, {"category": "safety", "score": 9.0}]
    own = await client.post("/scores/peer", data={**form, "building": str(bid(rig.store, "大龙一区")), "csrf": csrf})
    assert own.status == 403 and "不能给自己小区的楼栋打分" in await own.text()
    bad = await client.post("/scores/peer", data={**form, "safety": "12", "csrf": csrf})
    assert bad.status == 400 and "0 到 10" in await bad.text()
    assert (await client.post("/scores/publish", data={"month": MONTH, "csrf": csrf})).status == 403  # staff only


async def test_staff_publish_from_the_page_once(rig, client):
    lead = compound_lead(rig.store)
    scores.enter_peer_scores(rig.app, lead, bid(rig.store, "碧水湾"), MONTH, {"safety": 10})
    scores.enter_peer_scores(rig.app, lead, bid(rig.store, "金湖花园"), MONTH, {"safety": 2})
    csrf = await sign_in(client, "admin", PASSWORD)
    resp = await client.post("/scores/publish", data={"month": MONTH, "csrf": csrf}, allow_redirects=False)
    assert resp.status == 303 and "saved=published" in resp.headers["Location"]
    alert_id = rig.store.scalar("SELECT alert_id FROM score_months WHERE month=?", (MONTH,))
    notice = rig.store.q1("SELECT * FROM alerts WHERE id=?", (alert_id,))
    assert notice["kind"] == "notice" and "碧水湾 1栋" in notice["text"] and notice["issuer_id"] is None
    html = await (await client.get("/scores?saved=published")).text()
    assert "已发布" in html and f'href="/alerts/{alert_id}"' in html and 'id="publish"' not in html
    again = await client.post("/scores/publish", data={"month": MONTH, "csrf": csrf})
    assert again.status == 409 and "不能重复发布" in await again.text()


async def test_the_export_in_rank_order_with_bom_and_formula_escaping(rig, client):
    lead = compound_lead(rig.store)
    rig.store.conn.execute("UPDATE nodes SET name='=HYPERLINK(\"x\")' WHERE kind='compound' AND name='碧水湾'")
    scores.enter_peer_scores(rig.app, lead, bid(rig.store, '=HYPERLINK("x")'), MONTH, {"safety": 10})
    scores.enter_peer_scores(rig.app, lead, bid(rig.store, "金湖花园"), MONTH, {"safety": 2})
    await sign_in(client, "admin", PASSWORD)
    resp = await client.get(f"/scores.csv?month={MONTH}")
    body = await resp.read()
    assert resp.status == 200 and body.startswith(b"\xef\xbb\xbf")
    assert resp.headers["Content-Disposition"] == f'attachment; filename="scores-{MONTH}.csv"'
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:6] == ["名次", "网格", "小区", "楼栋", "户数", "总分"] and "支部互评" in rows[0]
    assert rows[1][0] == "1" and rows[1][2] == "'=HYPERLINK(\"x\")" and rows[1][5] == "100.0"
    assert len(rows) == 1 + rig.store.scalar("SELECT COUNT(*) FROM nodes WHERE kind='building'")
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, len(rows))]
    xlsx = await (await client.get(f"/scores.xlsx?month={MONTH}")).read()
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx)).active
    assert sheet.title == "流动小红旗" and sheet["A1"].value == "名次" and sheet["C2"].value.startswith("'=")
