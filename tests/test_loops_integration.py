"""The community loops where they meet the rest of Linli: a consultation's notice in the relay's
wording (how to vote, never "reply 1 if received"), and the CLI's files of the loops (`linli
report scores|volunteers|consult`), which must hold the same rows as the dashboard's downloads."""
from __future__ import annotations

import argparse
import csv
import io

import pytest
from sim_rig import T0, close_sim, make_sim, small_sim, staff  # noqa: F401  (small_sim: a fixture)

from bot.data import alerts as alerts_db
from bot.domain import claims, consult, scores
from bot.domain import requests as requests_mod
from bot.domain.consult import ConsultDraft
from bot.domain.wording import render
from bot.server import report_command

DAY = 24 * 3600


@pytest.fixture
def sim(small_sim):
    return small_sim


def first_building(store) -> dict:
    return store.q1("SELECT n.* FROM nodes n WHERE n.kind='building' AND EXISTS "
                    "(SELECT 1 FROM households h WHERE h.building_id=n.id AND h.active=1) ORDER BY n.id LIMIT 1")


def open_consultation(sim, building_id: int) -> int:
    return consult.open(sim.app, ConsultDraft(question="3栋加装电梯", closes_at=T0 + 7 * DAY, scope=[building_id],
                                              opened_by=staff(sim.store)["id"], threshold=(2, 3)))


async def test_a_consultation_notice_says_how_to_vote_and_its_link_is_for_voting(sim):
    b = first_building(sim.store)
    cid = open_consultation(sim, b["id"])
    carrier = alerts_db.get(sim.store, consult.get(sim.app, cid)["alert_id"])
    group = render(sim.store, carrier, settings=sim.settings)
    direct = render(sim.store, carrier, "messages/alert_direct.j2", settings=sim.settings, link="http://x/ack/t")
    assert f"议事{cid}" in group and "同意" in group
    assert "回复“1”" not in group and "回复“1”" not in direct
    assert "点击投票：http://x/ack/t" in direct and "点击确认" not in direct
    # an ordinary notice keeps its "收到请回复" line
    other = dict(carrier, carries="")
    assert "收到请" in render(sim.store, other, settings=sim.settings)
    # what the relay actually wrote when it planned the sends (before the consultation pointed back
    # at its notice): leads are asked about a notice, and nothing says "reply 1"
    sent = sim.store.q("SELECT purpose, payload FROM sends WHERE alert_id=?", (carrier["id"],))
    asks = [r for r in sent if r["purpose"] == "ask"]
    assert asks, "the Dalong-shaped register has personal building groups whose leads are asked"
    assert sum("这条通知" in a["payload"] for a in asks) == len(asks)
    assert sum("这条预警" in a["payload"] for a in asks) == 0
    assert [r["purpose"] for r in sent if "回复“1”" in r["payload"] or "点击确认" in r["payload"]] == []
    assert sum(f"议事{cid}" in r["payload"] for r in sent) == len(sent)


def _args(**kw) -> argparse.Namespace:
    base = dict(month=None, alert=None, consultation=None, out="")
    base.update(kw)
    return argparse.Namespace(**base)


def _csv(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))


async def test_the_cli_writes_the_loops_files(sim, tmp_path, capsys):
    store, app = sim.store, sim.app
    boss = staff(store)
    b = first_building(store)
    # a consultation with one vote
    cid = open_consultation(sim, b["id"])
    voter = store.q1("SELECT h.id, h.label FROM consultation_voters v JOIN households h ON h.id=v.household_id "
                     "WHERE v.consultation_id=? ORDER BY h.id LIMIT 1", (cid,))
    consult.proxy_vote(app, cid, voter["id"], 0, actor=boss)
    # a wish claimed, completed in 2 hours and rated
    volunteer = next(p for p in store.q("SELECT * FROM residents WHERE active=1 ORDER BY id")
                     if claims.eligible(app, p) and "staff" not in p["roles"] and p["household_id"])
    resident = store.q1("SELECT * FROM residents WHERE household_id IS NOT NULL AND id != ? AND active=1 "
                        "ORDER BY id LIMIT 1", (volunteer["id"],))
    wish = claims.file_wish(app, boss, "帮独居老人换灯泡", household_id=resident["household_id"])
    claims.claim(app, volunteer, wish["id"])
    claims.complete(app, volunteer, wish["id"], 2, "已换好灯泡")
    requests_mod.rate(app, resident, wish["id"], 5, "很热心")
    month = scores.current_month(sim.clock.now(), sim.settings.timezone)

    out = tmp_path / "consult.csv"
    assert report_command(sim.settings, _args(kind="consult", consultation=cid, out=str(out))) == 0
    rows = _csv(out)
    assert rows[0][:4] == ["小区", "楼栋", "住户", "投票"]
    assert [r[3] for r in rows[1:] if r[2] == voter["label"]] == ["同意"]
    assert report_command(sim.settings, _args(kind="consult", consultation=999, out=str(out))) == 2

    out = tmp_path / "volunteers.csv"
    assert report_command(sim.settings, _args(kind="volunteers", month=month, out=str(out))) == 0
    mine = [r for r in _csv(out)[1:] if r[1] == volunteer["name"]]
    assert len(mine) == 1 and mine[0][4:7] == ["1", "2.0", "5.0"]

    out = tmp_path / "scores.xlsx"
    capsys.readouterr()
    assert report_command(sim.settings, _args(kind="scores", month=month, out=str(out))) == 0
    assert out.read_bytes()[:2] == b"PK" and "流动小红旗" in capsys.readouterr().out
    assert report_command(sim.settings, _args(kind="scores", month="2024-13", out=str(out))) == 2


def unit_building(store) -> tuple[dict, str, list[int]]:
    """A building with two units, one unit's name, and that unit's households."""
    row = store.q1("SELECT building_id, unit FROM households WHERE active=1 AND unit != '' AND building_id IN "
                   "(SELECT building_id FROM households WHERE unit != '' GROUP BY building_id "
                   "HAVING COUNT(DISTINCT unit) > 1) ORDER BY building_id, unit LIMIT 1")
    building = store.q1("SELECT * FROM nodes WHERE id=?", (row["building_id"],))
    mine = [h["id"] for h in store.q("SELECT id FROM households WHERE building_id=? AND unit=? AND active=1",
                                      (row["building_id"], row["unit"]))]
    return building, row["unit"], mine


async def test_a_lift_consultation_of_one_unit_counts_only_that_unit(tmp_path):
    from bot.domain.consult import ConsultError

    sim = await make_sim(tmp_path, households=200, seed=11)  # large enough for buildings with units
    store = sim.store
    building, unit, mine = unit_building(store)
    assert consult.parse_unit("二单元") == "2单元" and consult.parse_unit("3") == "3单元"
    assert consult.split_unit(["大龙一区/3栋/2单元"]) == (["大龙一区/3栋"], "2单元")
    assert consult.split_unit(["3栋2单元"]) == (["3栋"], "2单元")
    cid = consult.open(sim.app, ConsultDraft(question="加装电梯", closes_at=T0 + 7 * DAY, scope=[building["id"]],
                                             opened_by=staff(store)["id"], threshold=(2, 3), unit=unit))
    voters = [v["household_id"] for v in store.q("SELECT household_id FROM consultation_voters "
                                                  "WHERE consultation_id=? ORDER BY household_id", (cid,))]
    assert voters == sorted(mine)
    carrier = alerts_db.get(store, consult.get(sim.app, cid)["alert_id"])
    assert f"{building['name']}{unit}" in carrier["text"]
    with pytest.raises(ConsultError) as e:
        consult.open(sim.app, ConsultDraft(question="加装电梯", closes_at=T0 + 7 * DAY, scope=[building["id"]],
                                           opened_by=staff(store)["id"], unit="9单元"))
    assert e.value.code == "unknown_unit" and unit in e.value.text()
    await close_sim(sim)


async def test_the_worlds_stewards_confirm_for_neighbours_from_their_silent_list(tmp_path):
    """The local world's stewards read their list of silent households the way a person would and
    confirm for neighbours without WeChat; the list's wording names who lives in each household, so
    this breaks if the message and the world stop understanding each other."""
    from sim_rig import run_until

    from bot.domain import alerts

    sim = await make_sim(tmp_path, households=200, seed=11, relay={"stewards": True})
    try:
        alerts.issue(sim.app, alerts.Draft(type="暴雨", colour="yellow", issuer_id=staff(sim.store)["id"]))
        await run_until(sim.app, sim.world, sim.clock.now() + 40 * 60)
        stewards = set(sim.world.register.stewards())
        by_stewards = [p for p in sim.world.people.truth["proxy"] if p[0] in stewards]
        lists = sim.store.q("SELECT payload FROM sends WHERE purpose='leadlist' AND payload LIKE '%您联系的住户%'")
        assert lists and by_stewards
    finally:
        await close_sim(sim)


async def test_the_worlds_leads_forward_a_consultation_notice_as_they_forward_a_warning(sim):
    """Leads are asked to forward "这条通知" for a notice: the local world's leads read that too."""
    from sim_rig import run_until

    b = sim.store.q1("SELECT n.id FROM nodes n JOIN chat_groups g ON g.node_id=n.id AND g.kind='personal' "
                     "WHERE n.kind='building' ORDER BY n.id LIMIT 1")
    cid = open_consultation(sim, b["id"])
    alert_id = consult.get(sim.app, cid)["alert_id"]
    await run_until(sim.app, sim.world, sim.clock.now() + 10 * 60)
    states = [h["state"] for h in sim.store.q("SELECT state FROM hops WHERE alert_id=? AND group_id IS NOT NULL",
                                               (alert_id,))]
    assert states and "forwarded" in states
