"""Quiet chats (issue #13 item 4): reminders to one person become one digest per interval, nobody
gets more than cap_per_hour non-reply messages an hour, urgent notices still go at once, and the
outbox serves replies first and one person's replies in command order."""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from helpers_callbacks import NOW
from request_world import build, person, texts_to

from bot.core.clock import FakeClock
from bot.core.config import load
from bot.data import digest as digest_rows
from bot.data import sends as sends_data
from bot.data.store import Store
from bot.domain import digest
from bot.domain import requests as R
from bot.transports.outbound.outbox import Outbox
from bot.transports.outbound.senders import ERR_LOCAL_DEFER, SendResult

H, M = 3600.0, 60.0


class WithQuiet:
    """Settings plus a [quiet] section (bot/core/config.py does not have one yet)."""

    def __init__(self, settings, **quiet):
        self._s = settings
        self.quiet = SimpleNamespace(**{**digest.DEFAULTS, **quiet})

    def __getattr__(self, name):
        return getattr(self._s, name)


def quiet_app(tmp_path, clock=None, **quiet):
    app = build(tmp_path, clock or FakeClock(NOW))
    app.settings = WithQuiet(app.settings, **quiet)
    return app


def file_many(app, n, text="3栋2单元楼道灯坏了", name="王小明"):
    return [R.file_request(app, resident=person(app, name), text=f"{text}（{i}）")["id"]
            for i in range(n)]


async def remind(app, at):
    """Run the request reminders at clock time `at` (the clock moves with them, as in production)."""
    app.clock.t = at
    return await R.run_due(app)


def digests_to(app, target):
    return [json.loads(r["payload"])["text"] for r in
            app.store.q("SELECT payload FROM sends WHERE target=? AND purpose='digest' ORDER BY id",
                        (target,))]


# -- the digest ------------------------------------------------------------------------------
async def test_a_burst_of_reminders_is_one_message_and_one_digest(tmp_path):
    app = quiet_app(tmp_path)
    ids = file_many(app, 30)
    before = len(texts_to(app, "grid1"))
    assert await remind(app, NOW + 4 * H) == 30  # all 30 go up to the grid lead at once
    got = texts_to(app, "grid1")[before:]
    assert len(got) == 1 and "【报事催办】" in got[0] and "还没有人接单" in got[0]
    assert digest_rows.counts(app.store) == {"waiting": 29 + 10, "sent": 0}  # + lead3's capped
    # the oldest waiting: lead3's new-request notices past the cap, held at filing
    assert digest.next_due_at(app) == NOW + 15 * M
    # the grid lead's digest is due 15 min after its first held reminder
    app.clock.t = NOW + 4 * H + 15 * M - 1
    await digest.run_due(app)
    assert digests_to(app, "grid1") == []
    app.clock.t = NOW + 4 * H + 15 * M
    assert (await digest.run_due(app)) == {"digests": 1}
    (text,) = digests_to(app, "grid1")
    assert "近 15 分钟有 29 条提醒" in text and "【报事催办】29 条" in text
    shown = text.count("约4小时无人接单")
    assert 10 <= shown <= 20 and f"另有 {29 - shown} 条" in text  # the rest counted, not listed
    listed = [i for i in ids[1:] if f"#{i} " in text]
    assert listed == ids[1:1 + shown]  # in the order they were held
    assert len(text.encode("utf-8")) <= digest.MAX_TEXT_BYTES
    # exactly once: another run (another process, a restart) sends nothing more
    assert (await digest.run_due(app)) == {"digests": 0}
    assert len(digests_to(app, "grid1")) == 1
    assert digest.next_due_at(app) is None


async def test_an_urgent_request_is_reminded_at_once_even_with_a_digest_waiting(tmp_path):
    app = quiet_app(tmp_path)
    file_many(app, 3)
    app.clock.t = NOW + 3 * H
    urgent = R.file_request(app, resident=person(app, "王小明"), text="地下车库进水了")
    assert urgent["urgency"] == "urgent"
    n = len(texts_to(app, "grid1"))  # the urgent request told the grid lead at filing
    # at 4 h all four are due: the three ordinary ones (the first at once, two held: grid1 had
    # a message a moment ago) and the urgent one, which goes at once although two are waiting
    assert await remind(app, NOW + 4 * H) == 4
    got = texts_to(app, "grid1")[n:]
    assert len(got) == 2 and f"#{urgent['id']}（紧急）" in got[1].replace(" 用水排水", "")
    assert digest_rows.counts(app.store)["waiting"] == 2


async def test_digests_off_sends_reminders_one_by_one(tmp_path):
    app = quiet_app(tmp_path, digest_interval_min=0, cap_per_hour=0)
    file_many(app, 30)
    n = len(texts_to(app, "grid1"))
    await remind(app, NOW + 4 * H)
    assert len(texts_to(app, "grid1")) == n + 30
    assert digest_rows.counts(app.store) == {"waiting": 0, "sent": 0}
    assert digest.next_due_at(app) is None


async def test_the_hourly_cap_holds_the_rest_for_the_digest(tmp_path):
    app = quiet_app(tmp_path, cap_per_hour=20)
    file_many(app, 30)
    lead = [t for t in texts_to(app, "lead3") if "【新报事】" in t]
    assert len(lead) == 20
    assert digest_rows.counts(app.store)["waiting"] == 10
    # replies never count towards the cap: 50 answers to lead3's commands change nothing
    for i in range(50):
        app.outbox.enqueue(f"reply:x{i}:1", "wecom_user", "lead3", {"text": "好的"}, purpose="reply")
    assert sends_data.sent_to_since(app.store, "wecom_user", "lead3", NOW - H) == 20
    app.clock.t = NOW + 15 * M
    await digest.run_due(app)
    (text,) = digests_to(app, "lead3")
    assert "【新报事】10 条" in text and "另有" not in text
    # an hour later the cap has room again: the next request is told at once
    app.clock.t = NOW + H + 1
    R.file_request(app, resident=person(app, "王小明"), text="3栋门禁坏了")
    assert "门禁" in [t for t in texts_to(app, "lead3") if "【新报事】" in t][-1]


async def test_an_urgent_notice_goes_past_the_cap(tmp_path):
    app = quiet_app(tmp_path, cap_per_hour=2)
    file_many(app, 3)
    assert len([t for t in texts_to(app, "lead3") if "【新报事】" in t]) == 2
    R.file_request(app, resident=person(app, "王小明"), text="3栋楼道着火了")
    assert "【紧急报事】" in texts_to(app, "lead3")[-1]


async def test_a_digest_is_written_once_across_a_crash_and_a_restart(tmp_path):
    app = quiet_app(tmp_path)
    file_many(app, 5)
    await remind(app, NOW + 4 * H)
    app.clock.t = NOW + 5 * H

    real = app.outbox.enqueue

    def crash(*a, **kw):
        real(*a, **kw)  # the row is written ... and the process dies before the commit
        raise RuntimeError("killed")

    app.outbox.enqueue = crash
    assert (await digest.run_due(app)) == {"digests": 0}
    assert digests_to(app, "grid1") == [] and digest_rows.counts(app.store)["sent"] == 0
    app.store.close()
    again = quiet_app(tmp_path, clock=app.clock)  # a restart on the same database
    assert (await digest.run_due(again)) == {"digests": 1}
    assert len(digests_to(again, "grid1")) == 1
    assert (await digest.run_due(again)) == {"digests": 0}
    assert digest_rows.counts(again.store)["waiting"] == 0


async def test_notify_outcomes(tmp_path):
    app = quiet_app(tmp_path)
    lead = person(app, "王楼长")
    v = R.view(app, R.file_request(app, resident=person(app, "王小明"), text="楼道灯坏了"))
    kw = dict(kind="new_request", line="#1 x", r=v)
    # someone without WeChat: nothing is sent or held, and the caller hears so
    assert digest.notify(app, person(app, "张大爷"), "messages/digest.j2", "k0", **kw) \
        == digest.UNREACHABLE
    assert digest.notify(app, lead, "messages/requests/digest_line.j2", "k1", **kw) == digest.SENT
    assert digest.notify(app, lead, "messages/requests/digest_line.j2", "k1", **kw) == digest.ALREADY
    assert digest.notify(app, lead, "messages/requests/digest_line.j2", "k2", always_digest=True,
                         **kw) == digest.HELD
    assert digest.notify(app, lead, "messages/requests/digest_line.j2", "k2", **kw) == digest.ALREADY
    # the first hold armed the app's timer at the digest's due time
    assert digest.next_due_at(app) == NOW + 15 * M


@pytest.mark.parametrize("quiet, message", [
    ({"digest_interval_min": -1}, "digest_interval_min must be 0 or more"),
    ({"cap_per_hour": "many"}, "cap_per_hour must be a number"),
    ({"digest_max_lines": 0}, "digest_max_lines must be at least 1"),
    ({"cap_per_hour": float("nan")}, "cap_per_hour must be 0 or more"),
])
def test_bad_quiet_settings_are_refused_by_name(quiet, message):
    with pytest.raises(ValueError, match=message):
        digest.quiet(SimpleNamespace(quiet=SimpleNamespace(**{**digest.DEFAULTS, **quiet})))


def test_quiet_defaults_without_a_section():
    q = digest.quiet(SimpleNamespace())
    assert (q.interval_s, q.cap_per_hour, q.max_lines) == (15 * M, 20, 20)
    assert digest.quiet(SimpleNamespace(quiet=SimpleNamespace(digest_interval_min=0))).window_s == H


def test_a_digest_of_long_lines_stays_under_the_text_limit():
    items = [{"kind": "reminder", "line": f"#{i} " + "很长的内容" * 20, "created_at": NOW}
             for i in range(200)]
    text = digest.render(items, 20, person=None, minutes=15)
    assert len(text.encode("utf-8")) <= digest.MAX_TEXT_BYTES
    shown = text.count("· #")
    assert 0 < shown < 20 and f"另有 {200 - shown} 条" in text


# -- replies first, in command order ---------------------------------------------------------
def add(store, key, target, purpose, channel="wecom_user", next_at=None, state="pending"):
    sid = sends_data.insert(store, key, channel, target, "{}", None, purpose, NOW)
    store.conn.execute("UPDATE sends SET next_at=?, state=? WHERE id=?", (next_at, state, sid))
    return sid


def test_claim_takes_replies_first_and_one_per_person_in_order():
    store = Store(":memory:")
    hops = [add(store, f"hop{i}", f"u{i}", "hop") for i in range(50)]
    a1, b1, a2, c1, b2 = (add(store, k, t, "reply") for k, t in
                          [("a1", "A", ), ("b1", "B"), ("a2", "A"), ("c1", "C"), ("b2", "B")])
    got = [r["id"] for r in sends_data.claim(store, NOW, 5)]
    assert got == [a1, b1, c1, hops[0], hops[1]]  # a2, b2 wait behind a1, b1
    assert sends_data.claim_replies(store, NOW, 10) == []  # a1, b1 in flight
    # a1 is deferred by the per-member limit: a2 must not overtake it
    sends_data.record(store, a1, state="pending", attempts=0, error_code=None, error=None,
                      next_at=NOW + 30, sent_at=None)
    sends_data.record(store, b1, state="sent", attempts=1, error_code=None, error=None,
                      next_at=None, sent_at=NOW)
    assert sends_data.claim_replies(store, NOW, 10) == [b2]
    assert sends_data.claim_replies(store, NOW + 30, 10) == [a1, b2]
    # a failed reply does not block the next one for ever
    sends_data.record(store, a1, state="failed", attempts=1, error_code=1, error="x",
                      next_at=None, sent_at=None)
    assert sends_data.claim_replies(store, NOW + 30, 10) == [a2, b2]


def test_a_probe_never_takes_a_reply_out_of_order():
    store = Store(":memory:")
    first = add(store, "r1", "A", "reply")
    add(store, "r2", "A", "reply")
    assert sends_data.claim_probe(store, "wecom_user", NOW)["id"] == first
    assert sends_data.claim_probe(store, "wecom_user", NOW) is None  # r2 waits for r1


class OrderSender:
    """Records the order rows reach the 'platform'; some calls take longer (more event-loop
    turns) so concurrent sends to one person would come out reordered. It defers the first
    attempt of one reply (the per-member limit) to check that the replies after it wait."""

    def __init__(self, on_send=None, defer_first=None):
        self.log, self.inflight, self.overlap = [], {}, 0
        self.on_send, self.defer_first, self.deferred = on_send, defer_first, False

    async def send(self, target, payload):
        text = payload["text"]
        if text == self.defer_first and not self.deferred:
            self.deferred = True
            return SendResult(False, ERR_LOCAL_DEFER, "per-member limit", retryable=True,
                              detail={"defer_s": 2.0})
        self.inflight[target] = self.inflight.get(target, 0) + 1
        self.overlap = max(self.overlap, self.inflight[target])
        for _ in range(7 - len(self.log) % 7):  # uneven durations
            await asyncio.sleep(0)
        self.inflight[target] -= 1
        self.log.append((target, text))
        if self.on_send:
            self.on_send(len(self.log))
        return SendResult(True, None, "")


async def test_replies_go_before_a_5000_row_fan_out_and_in_command_order():
    clock = FakeClock(NOW)
    store = Store(":memory:")
    app = SimpleNamespace(store=store, clock=clock, settings=load(None, env={}))
    outbox = Outbox(app)
    queued = []

    def commands_arrive(n):  # mid-fan-out (after 40 hop sends), A, B and C each send 3 commands
        if n == 40:
            for i in range(3):
                for who in "ABC":
                    queued.append(outbox.enqueue(f"reply:{who}{i}:1", "wecom_user", who,
                                                 {"text": f"{who}{i}", "dedupe": False},
                                                 purpose="reply"))

    sender = OrderSender(on_send=commands_arrive, defer_first="A0")
    app.senders = {"wecom_user": sender, "appchat": sender}
    outbox.enqueue_many([{"key": f"hop:{i}", "channel": "appchat", "target": f"chat{i}",
                          "payload": {"text": "台风红色预警"}, "purpose": "hop"}
                         for i in range(5000)])
    await outbox.drain()
    clock.advance(2.0)  # A0's per-member wait
    await outbox.drain()
    assert len(sender.log) == 5009 and len(queued) == 9
    at = {text: n for n, (_, text) in enumerate(sender.log)}
    # a person's replies go one at a time (so they cannot overtake each other): the i-th waits
    # for the (i-1)-th, i.e. for about one window of sends in flight (32), and never for the
    # 4,960 fan-out rows still queued behind
    late = {f"{w}{i}": at[f"{w}{i}"] - 40 for w in "BC" for i in range(3)}
    assert all(n <= (int(k[1]) + 1) * 40 for k, n in late.items()), late
    assert max(late.values()) < 200
    assert at["A0"] > at["B2"]  # A0 was deferred ...
    for who in "ABC":  # ... and still everyone's replies arrived in command order
        assert [t for tg, t in sender.log if tg == who] == [f"{who}{i}" for i in range(3)]
    assert sender.overlap == 1  # never two sends in the air to one person
    assert store.scalar("SELECT count(*) FROM sends WHERE state='sent'") == 5009


def test_the_new_queries_read_their_indexes(tmp_path):
    """EXPLAIN QUERY PLAN, not timings: the per-claim and per-notice queries stay cheap however
    many rows a fan-out left pending."""
    store = Store(tmp_path / "plans.db")
    traced: list[str] = []
    store.conn.set_trace_callback(traced.append)
    sends_data.claim_replies(store, NOW, 5)
    sends_data.sent_to_since(store, "wecom_user", "u1", NOW - H)
    digest_rows.has_waiting(store, "wecom_user", "u1")
    digest_rows.oldest_waiting(store)
    store.conn.set_trace_callback(None)
    assert len(traced) == 4
    got = " || ".join(" | ".join(r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
                      for sql in traced)
    for index in ("sends_open_replies", "sends_target_created", "digest_items_target",
                  "digest_items_waiting"):
        assert index in got, got
    assert "SCAN sends" not in got and "SCAN digest_items" not in got  # no full-table walk
