"""Chit-chat is not a request (issue #13 item 5): a labelled set of residents' and leads' messages
(tests/data/messages_labelled.csv: dialect, typos, emoji, voice transcripts, acks, commands) goes
through the real router chain, and "became a request" must match the labels.

The bar: precision and recall of "becomes a request" both >= 0.90 over the whole set, and the
category right for >= 0.70 of the requests found (a regression guard: the category only
picks the wording of the lead's notice and the report's bucket; a lead can see the text). Run with -s to see the confusion tables.
Splits: 'dev' was written first and the word lists were tuned on it; 'holdout1' and 'holdout2'
were written later and measured before being tuned on (see the report); 'holdout3' was written
last and never tuned on: its numbers are the honest estimate for new messages.
A message the reader cannot place is not filed but answered "file this?" ('confirm'): a yes files
it. Those count as not filed here; the test also checks that no labelled request is dropped.
"""
from __future__ import annotations

import csv
import itertools
from collections import Counter
from pathlib import Path

import pytest
from request_world import SENDER_OF_ROLE, build, texts_to

from bot.core.models import Inbound
from bot.domain import requests as R
from bot.domain.requests.rules import read_message

DATA = Path(__file__).parent / "data" / "messages_labelled.csv"
PRECISION_BAR, RECALL_BAR, CATEGORY_BAR = 0.90, 0.90, 0.70
LABELS = ("request", "chitchat", "command", "ack")
OUTCOMES = ("filed", "confirm", "clarify", "not_filed", "command", "other")
MSG_IDS = itertools.count(7_000_000)


def labelled() -> list[dict]:
    with open(DATA, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_labelled_set_is_big_and_varied():
    rows = labelled()
    assert len(rows) >= 200
    kinds = Counter(r["expected"].split(":")[0] for r in rows)
    assert set(kinds) == set(LABELS) and min(kinds.values()) >= 10
    assert set(r["role"] for r in rows) == set(SENDER_OF_ROLE)
    assert {r["expected"].split(":")[0] for r in rows} <= set(LABELS)
    assert Counter(r["split"] for r in rows)["holdout3"] >= 50


async def _outcome(app, row: dict) -> tuple[str, str | None]:
    """Send one message as its role; (what happened, the category if a request was filed)."""
    uid = SENDER_OF_ROLE[row["role"]]
    before = app.store.scalar("SELECT COALESCE(MAX(id), 0) FROM requests")
    ctx = await app.dispatcher.dispatch(Inbound(
        channel="wecom", user_id=uid, msg_type="text", text=row["text"],
        msg_id=str(next(MSG_IDS)), at=app.clock.now()))
    filed = app.store.q("SELECT * FROM requests WHERE id > ?", (before,))
    R.take_clarification(app, f"wecom:{uid}")  # each message starts a fresh conversation
    if filed:
        return "filed", filed[0]["category"]
    handler = ctx.handler or ""
    if handler == "requests.file_or_clarify":
        sent = app.store.q1("SELECT payload FROM sends ORDER BY id DESC LIMIT 1")["payload"]
        if "需要登记为报事" in sent:
            return "confirm", None  # "file this?": one "是" away from a request
        return ("clarify" if "请问需要什么帮助" in sent else "not_filed"), None
    if handler.startswith("requests."):
        return "command", None
    return "other", None


def _scores(table: Counter) -> tuple[float, float, int, int, int]:
    tp = table["request", "filed"]
    filed = sum(table[label, "filed"] for label in LABELS)
    wanted = sum(table["request", o] for o in OUTCOMES)
    return (tp / filed if filed else 0.0), (tp / wanted if wanted else 0.0), tp, filed, wanted


def _print_table(title: str, table: Counter) -> None:
    precision, recall, tp, filed, wanted = _scores(table)
    print(f"\n{title}\nexpected \\ outcome  " + " ".join(f"{o:>9}" for o in OUTCOMES))
    for label in LABELS:
        print(f"{label:<19} " + " ".join(f"{table[label, o]:>9}" for o in OUTCOMES))
    print(f"becomes a request: precision {precision:.3f} ({tp}/{filed}), "
          f"recall {recall:.3f} ({tp}/{wanted}); "
          f"asked to confirm: {table['request', 'confirm']} requests, "
          f"{sum(table[label, 'confirm'] for label in LABELS if label != 'request')} others")


async def test_chitchat_is_not_a_request_and_reports_are(tmp_path):
    app = build(tmp_path)
    tables: dict[str, Counter] = {s: Counter() for s in ("dev", "holdout1", "holdout2", "holdout3", "all")}
    wrong, categories_right, found = [], 0, 0
    for row in labelled():
        outcome, category = await _outcome(app, row)
        label, _, want_category = row["expected"].partition(":")
        for split in (row["split"], "all"):
            tables[split][label, outcome] += 1
        if (label == "request") != (outcome == "filed"):
            wrong.append(f"{row['split']:>7} {row['role']:>13} {row['expected']:<20} -> "
                         f"{outcome:<9} {row['text']}")
        if label == "request" and outcome == "filed":
            found += 1
            categories_right += category == want_category
            if category != want_category:
                print(f"category: {row['text']} -> {category} (labelled {want_category})")
    for split in ("dev", "holdout1", "holdout2", "holdout3", "all"):
        _print_table(f"{split} ({sum(tables[split].values())} messages)", tables[split])
    print(f"category right for {categories_right}/{found} requests filed")
    print("\n".join(wrong))
    precision, recall, tp, filed, wanted = _scores(tables["all"])
    assert wanted >= 100 and filed > 0
    # nothing a resident reports is dropped: what is not filed at once was asked "file this?"
    dropped = [w for w in wrong if "request:" in w and "-> confirm" not in w]
    assert dropped == []
    assert precision >= PRECISION_BAR, "\n".join(wrong)
    assert recall >= RECALL_BAR, "\n".join(wrong)
    assert categories_right / found >= CATEGORY_BAR


@pytest.mark.parametrize("role", ["building_lead", "grid_lead", "staff"])
async def test_a_leads_weather_question_files_nothing(tmp_path, role):
    """The reported case: "帮我看看今天的天气" from a lead became an elderly-care request."""
    app = build(tmp_path)
    ctx = await app.dispatcher.dispatch(Inbound(
        channel="wecom", user_id=SENDER_OF_ROLE[role], msg_type="text", text="帮我看看今天的天气",
        msg_id="1", at=app.clock.now()))
    assert app.store.scalar("SELECT COUNT(*) FROM requests") == 0
    assert ctx.handler == "requests.file_or_clarify"
    reply = app.store.q1("SELECT payload FROM sends ORDER BY id DESC LIMIT 1")["payload"]
    assert "报事 3栋2单元楼道灯坏了" in reply  # tells a lead how to file explicitly


async def test_an_uncertain_message_is_filed_after_a_yes(tmp_path):
    app = build(tmp_path)

    async def say(text, n):
        await app.dispatcher.dispatch(Inbound(channel="wecom", user_id="xm", msg_type="text",
                                              text=text, msg_id=f"X{n}", at=app.clock.now()))
        return texts_to(app, "xm")[-1]
    assert "需要登记为报事" in await say("我家楼上的阳台在往下淌水", 1)
    assert app.store.scalar("SELECT COUNT(*) FROM requests") == 0
    assert "已登记 #1" in await say("是", 2)
    assert R.get(app.store, 1)["text"] == "我家楼上的阳台在往下淌水"
    assert "需要登记为报事" in await say("今天的菜好贵啊", 3)
    assert "没有登记为报事" in await say("不用", 4)  # no: nothing filed, a short help reply
    assert "需要登记为报事" in await say("有人把车停在盲道上", 5)
    assert "已登记 #2" in await say("3栋门口", 6)  # more detail files both parts together
    assert R.get(app.store, 2)["text"] == "有人把车停在盲道上 3栋门口"
    assert app.store.scalar("SELECT COUNT(*) FROM requests") == 2


async def test_a_lead_files_explicitly_and_after_the_question(tmp_path):
    app = build(tmp_path)

    async def say(text, n):
        await app.dispatcher.dispatch(Inbound(channel="wecom", user_id="lead3", msg_type="text",
                                              text=text, msg_id=f"L{n}", at=app.clock.now()))
    await say("报事 3栋地下车库进水了", 1)
    req = R.get(app.store, 1)
    assert (req["text"], req["category"], req["urgency"]) == ("3栋地下车库进水了", "water", "urgent")
    await say("报事", 2)  # the word alone: asked what it is
    assert app.store.scalar("SELECT COUNT(*) FROM requests") == 1
    await say("5栋门口井盖松了", 3)  # the answer files, without 报事 again
    assert R.get(app.store, 2)["text"] == "5栋门口井盖松了"
    await say("5栋门口井盖松了", 4)  # but not a second time unasked
    assert app.store.scalar("SELECT COUNT(*) FROM requests") == 2


@pytest.mark.parametrize("text, role, kind", [
    ("帮我看看今天的天气", "resident", "chitchat"),
    ("能不能来看看", "resident", "request"),  # an ask, even without a subject
    ("收到，地下车库进水了", "resident", "request"),
    ("家里都好 不用担心", "resident", "chitchat"),  # "担心" negated
    ("在吗", "resident", "unclear"),
    ("5栋302", "resident", "unclear"),  # a place and nothing else
    ("报事", "building_lead", "unclear"),
    ("3栋楼道灯坏了", "building_lead", "chitchat"),
    ("报事 3栋楼道灯坏了", "building_lead", "request"),
    ("", "resident", "unclear"),
    ("🙂🙂", "resident", "unclear"),
])
def test_read_message(text, role, kind):
    sender = {"roles": role}
    from bot.core.config import load
    assert read_message(text, sender, load(None, env={})).kind == kind


def test_read_message_answering_a_question_files_content_but_not_chitchat():
    from bot.core.config import load
    s, resident = load(None, env={}), {"roles": "resident"}
    assert read_message("5栋302", resident, s, answering=True).kind == "request"
    assert read_message("今天天气怎么样", resident, s, answering=True).kind == "chitchat"
    assert read_message("3栋楼道灯坏了", {"roles": "building_lead"}, s,
                        answering=True).kind == "request"
