"""PlatformReach (issue #9): how people are reached privately, batched, and read back."""
from __future__ import annotations

import json

import pytest

from bot.domain.ports import Reach
from bot.transports.outbound.reach import PlatformReach
from bot.transports.outbound.senders import SendResult

reach = PlatformReach()


def person(i, wecom=None, openid=None):
    return {"id": i, "wecom_userid": wecom, "oa_openid": openid}


def test_satisfies_the_domain_port():
    r: Reach = reach  # the domain's Protocol; a type checker holds this line to it
    assert r.person(person(1, wecom="w")) == ("wecom_user", "w")


@pytest.mark.parametrize("p, expected", [
    (person(1, wecom="zhang", openid="o-zhang"), ("wecom_user", "zhang")),  # WeCom first
    (person(2, openid="o-li"), ("oa_template", "o-li")),  # a service notice, not a CS message
    (person(3), None),
    (person(4, wecom="", openid="  "), None),  # blanks from a spreadsheet are no account
    (person(5, wecom="a|b"), None),  # '|' would address two members in one call
    ({"name": "no account keys at all"}, None),
])
def test_person(p, expected):
    assert reach.person(p) == expected


def test_routes_lists_every_account_best_first():
    assert reach.routes(person(1, wecom="w", openid="o")) == [("wecom_user", "w"), ("oa_template", "o")]
    assert reach.routes(person(2)) == []


def test_fan_out_batches_wecom_by_1000_and_oa_one_each():
    wecom = [person(i, wecom=f"u{i:04d}") for i in range(2345)]
    oa = [person(10_000 + i, openid=f"o{i}") for i in range(3)]
    nobody = [person(20_000), person(20_001, wecom="")]
    both = person(30_000, wecom="u0000", openid="o-x")  # same WeCom account as wecom[0]
    calls = reach.fan_out(wecom[:1500] + oa + nobody + [both] + wecom[1500:])
    w = [c for c in calls if c[0] == "wecom_user"]
    assert [len(t.split("|")) for _, t, _ in w] == [1000, 1000, 345]
    assert w[0][1].split("|")[:2] == ["u0000", "u0001"]  # the order given
    assert "|".join(t for _, t, _ in w).split("|") == [p["wecom_userid"] for p in wecom]
    assert [m["id"] for m in w[0][2]][:2] == [0, 30_000]  # both people behind u0000
    assert sum(len(m) for _, _, m in w) == 2346
    o = [c for c in calls if c[0] == "oa_template"]
    assert [(t, [m["id"] for m in ms]) for _, t, ms in o] == [
        ("o0", [10_000]), ("o1", [10_001]), ("o2", [10_002])]
    assert reach.fan_out([]) == [] and reach.fan_out(nobody) == []


def test_batch_size_is_bounded_by_the_platform():
    assert [len(t.split("|")) for _, t, _ in PlatformReach(2).fan_out(
        [person(i, wecom=f"u{i}") for i in range(5)])] == [2, 2, 1]
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            PlatformReach(bad)


def sent_row(channel="wecom_user", target="a|b|c", state="sent", error=None):
    return {"id": 1, "channel": channel, "target": target, "state": state, "error": error}


def test_delivered_removes_the_platforms_invalid_users():
    ok = SendResult(True, 0, "ok", detail={"msgid": "m", "invaliduser": "b|zz"})
    assert reach.delivered(sent_row(), ok) == ["a", "c"]
    assert reach.delivered(sent_row(), SendResult(True, 0, "ok")) == ["a", "b", "c"]
    assert reach.delivered(sent_row(target="a|a"), SendResult(True)) == ["a"]
    everyone_invalid = SendResult(True, 0, "ok", detail={"invaliduser": "a|b|c"})
    assert reach.delivered(sent_row(), everyone_invalid) == []


def test_delivered_only_for_sent_rows_to_people():
    ok = SendResult(True, 0, "ok")
    for state in ("pending", "sending", "failed", "dead", "waiting"):
        assert reach.delivered(sent_row(state=state), ok) == []
    for channel in ("robot", "wecom_appchat", "customer_group"):
        assert reach.delivered(sent_row(channel=channel, target="chat1"), ok) == []
    assert reach.delivered(sent_row(channel="oa_template", target="o1"), ok) == ["o1"]


def test_delivered_reads_the_kept_detail_when_there_is_no_result():
    kept = json.dumps({"msgid": "m", "invaliduser": "a"})
    assert reach.delivered(sent_row(error=kept)) == ["b", "c"]
    assert reach.delivered(sent_row(error=None)) == ["a", "b", "c"]
    assert reach.delivered(sent_row(error="not json")) == ["a", "b", "c"]
    assert reach.delivered(sent_row(error="[1, 2]")) == ["a", "b", "c"]
