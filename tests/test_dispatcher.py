"""Routers, filters, middlewares and the onboarding/fallback handlers, without HTTP."""
from __future__ import annotations

import json
import logging

import pytest
from helpers_callbacks import NOW, add_resident, make_app, make_settings

from bot.core import filters as F
from bot.core import texts
from bot.core.dispatcher import Ctx, Dispatcher, Router
from bot.core.models import Inbound
from handlers import build_dispatcher
from handlers.middlewares import attach_resident, log_errors


@pytest.fixture
def app(tmp_path):
    return make_app(make_settings(tmp_path))


def msg(text="", *, channel="wecom", user="u1", msg_type=None, event=None, key=None,
        inbound_id=1, resident=None) -> Inbound:
    msg_type = msg_type or ("event" if event else "text")
    return Inbound(channel=channel, user_id=user, msg_type=msg_type,
                   text=text, event=event, event_key=key, msg_id=None if event else "1", at=NOW,
                   inbound_id=inbound_id, resident=resident)


def sends(app):
    return app.store.q("SELECT * FROM sends ORDER BY id")


def test_router_order_is_pinned(app):
    # change this list on purpose when adding a router; the order is the priority
    assert [r.name for r in build_dispatcher(app).routers] == [
        "onboarding", "alerts", "schedules", "consult", "claims", "scores", "acks", "requests", "fallback"]
    assert build_dispatcher(app).middlewares == [log_errors, attach_resident]


# -- routing ------------------------------------------------------------------------------

async def test_first_match_wins_across_and_within_routers(app):
    ran = []
    first, second = Router("first"), Router("second")

    @first.text(F.text_equals("a"))
    async def a1(ctx, m):
        ran.append("a1")

    @first.text(F.text_equals("a", "b"))
    async def ab(ctx, m):
        ran.append("ab")

    @second.message()
    async def anything(ctx, m):
        ran.append("anything")

    d = Dispatcher(app, [first, second])
    for text in ("a", "b", "c"):
        ctx = await d.dispatch(msg(text))
    assert ran == ["a1", "ab", "anything"]
    assert ctx.handler == "second.anything"


async def test_text_and_event_decorators_filter_by_type(app):
    r = Router("r")
    seen = []

    @r.event(F.event_is("click"))
    async def click(ctx, m):
        seen.append("click")

    @r.text()
    async def text(ctx, m):
        seen.append("text")

    d = Dispatcher(app, [r])
    await d.dispatch(msg(event="click"))
    await d.dispatch(msg("hi"))
    await d.dispatch(msg(msg_type="image"))  # nothing matches: falls through quietly
    assert seen == ["click", "text"]


async def test_filter_dicts_merge_into_match(app):
    r = Router("r")
    got = {}

    @r.text(F.text_regex(r"(?P<building>\d+)栋"), lambda ctx, m: {"extra": 1})
    async def handler(ctx, m):
        got.update(ctx.match)

    await Dispatcher(app, [r]).dispatch(msg("3栋积水"))
    assert got == {"building": "3", "extra": 1}


async def test_losing_route_leaves_no_match_behind(app):
    r = Router("r")
    got = {}

    @r.text(lambda ctx, m: {"stale": True}, F.text_equals("never"))
    async def loser(ctx, m):
        pass

    @r.text()
    async def winner(ctx, m):
        got.update(ctx.match)

    await Dispatcher(app, [r]).dispatch(msg("x"))
    assert got == {}


async def test_middlewares_run_outermost_first_and_can_stop(app):
    order = []

    def mw(name, stop=False):
        async def run(ctx, m, next):
            order.append(f"{name}>")
            if not stop:
                await next(ctx, m)
            order.append(f"<{name}")
        return run

    r = Router("r")

    @r.message()
    async def h(ctx, m):
        order.append("handler")

    await Dispatcher(app, [r], [mw("outer"), mw("inner")]).dispatch(msg("x"))
    assert order == ["outer>", "inner>", "handler", "<inner", "<outer"]
    order.clear()
    await Dispatcher(app, [r], [mw("outer", stop=True), mw("inner")]).dispatch(msg("x"))
    assert order == ["outer>", "<outer"]


async def test_log_errors_logs_and_reraises(app, caplog):
    r = Router("r")

    @r.message()
    async def boom(ctx, m):
        raise KeyError("oops")

    with caplog.at_level(logging.ERROR, "linli.dispatcher"), pytest.raises(KeyError):
        await Dispatcher(app, [r], [log_errors]).dispatch(msg("x", inbound_id=7))
    assert "r.boom failed on inbound 7" in caplog.text


async def test_attach_resident_looks_up_when_missing(app):
    rid = add_resident(app, name="赵", wecom="zhao")
    r = Router("r")
    seen = []

    @r.message(F.known_resident)
    async def h(ctx, m):
        seen.append(ctx.resident["id"])

    await Dispatcher(app, [r], [attach_resident]).dispatch(msg("x", user="zhao"))
    assert seen == [rid]


# -- filters ------------------------------------------------------------------------------

LEAD = {"id": 1, "name": "王", "roles": "building_lead, resident"}


@pytest.mark.parametrize("flt, m, resident, expected", [
    (F.text_equals("收到", "OK"), msg(" 收到 "), None, True),
    (F.text_equals("收到", "OK"), msg("ok"), None, True),
    (F.text_equals("收到"), msg("收到了吗"), None, False),
    (F.text_regex(r"(?P<room>\d{3,4})"), msg("501漏水"), None, {"room": "501"}),
    (F.text_regex(r"漏水"), msg("501漏水"), None, True),
    (F.text_regex(r"漏水"), msg("停电"), None, False),
    (F.known_resident, msg("x"), LEAD, True),
    (F.known_resident, msg("x"), None, False),
    (F.unknown_user, msg("x"), None, True),
    (F.unknown_user, msg("x"), LEAD, False),
    (F.has_role("building_lead", "grid_lead"), msg("x"), LEAD, True),
    (F.has_role("staff"), msg("x"), LEAD, False),
    (F.has_role("resident"), msg("x"), None, False),
    (F.event_is("CLICK"), msg(event="click"), None, True),
    (F.event_is("subscribe"), msg(event="click"), None, False),
    (F.event_is("click"), msg("click"), None, False),
    (F.msg_type_is("image", "voice"), msg(msg_type="voice"), None, True),
    (F.msg_type_is("image"), msg("x"), None, False),
    (F.channel_is("oa"), msg("x", channel="oa"), None, True),
    (F.not_event, msg(event="click"), None, False),
])
def test_filters(app, flt, m, resident, expected):
    assert flt(Ctx(app=app, msg=m, resident=resident), m) == expected


def test_has_role_rejects_unknown_roles():
    with pytest.raises(ValueError, match="unknown role"):
        F.has_role("boss")


# -- replies ------------------------------------------------------------------------------

@pytest.mark.parametrize("channel, outbox_channel", [("wecom", "wecom_user"), ("oa", "oa_cs")])
async def test_reply_enqueues_numbered_keys_on_the_same_channel(app, channel, outbox_channel):
    ctx = Ctx(app=app, msg=msg("x", channel=channel, user="who", inbound_id=12))
    await ctx.reply("messages/onboarding_unregistered.j2")
    await ctx.reply_text("第二条")
    await ctx.reply_text("第二条")  # a new reply, not a duplicate: its position differs
    rows = sends(app)
    assert [r["key"] for r in rows] == ["reply:12:1", "reply:12:2", "reply:12:3"]
    assert {(r["channel"], r["target"], r["purpose"]) for r in rows} == {
        (outbox_channel, "who", "reply")}
    assert json.loads(rows[0]["payload"]) == {  # a reply may repeat: no platform duplicate check
        "text": texts.render("messages/onboarding_unregistered.j2"), "dedupe": False}


async def test_reply_through_the_real_outbox(tmp_path):
    from bot.app import App  # the real Outbox, never started: rows only, nothing sent
    app = App(make_settings(tmp_path))
    ctx = Ctx(app=app, msg=msg("x", channel="oa", user="o1", inbound_id=3))
    assert await ctx.reply_text("好的") is not None
    assert await Ctx(app=app, msg=ctx.msg).reply_text("好的") is None  # same key: ignored
    [row] = sends(app)
    assert (row["key"], row["channel"], row["target"], row["state"]) == (
        "reply:3:1", "oa_cs", "o1", "pending")
    assert json.loads(row["payload"]) == {"text": "好的", "dedupe": False}


async def test_rerunning_a_message_queues_nothing_new(app):
    d = build_dispatcher(app)
    for _ in range(2):
        await d.dispatch(msg("你好", user="stranger", inbound_id=5))
    assert len(sends(app)) == 1


# -- onboarding and fallback ------------------------------------------------------------

@pytest.mark.parametrize("kind, m, registered, template", [
    ("unknown user writes", msg("你好", user="s"), False, "onboarding_unregistered"),
    ("unknown user sends a photo", msg(msg_type="image", user="s"), False,
     "onboarding_unregistered"),
    ("unknown user clicks a menu", msg(event="click", user="s"), False, None),
    ("unknown user unsubscribes", msg(event="unsubscribe", channel="oa", user="s"), False, None),
    ("new OA follower", msg(event="subscribe", channel="oa", user="s"), False,
     "onboarding_welcome"),
    ("QR-code follower", msg(event="subscribe_scan", channel="oa", user="s"), False,
     "onboarding_welcome"),
    ("registered follower", msg(event="subscribe", channel="oa", user="s"), True,
     "onboarding_welcome"),
    ("WeCom subscribe is not a welcome", msg(event="subscribe", user="s"), False, None),
    # any other text from a resident is a request (handlers/requests.py); thanks are not
    ("resident writes something unhandled", msg("谢谢", user="s"), True,
     "fallback_help"),
    ("resident clicks an unhandled menu", msg(event="click", user="s"), True, None),
])
async def test_onboarding_and_fallback(app, kind, m, registered, template):
    if registered:
        add_resident(app, name="刘", roles="resident,volunteer",
                     **({"openid": "s"} if m.channel == "oa" else {"wecom": "s"}))
    ctx = await build_dispatcher(app).dispatch(m)
    rows = sends(app)
    if template is None:
        assert rows == [], kind
        return
    assert ctx.handler.split(".")[0] == template.split("_")[0], kind
    expected = {
        "onboarding_unregistered": {},
        "onboarding_welcome": {"resident": ctx.resident},
        "fallback_help": {"resident_name": "刘", "roles": ["resident", "volunteer"]},
    }[template]
    [row] = rows
    assert json.loads(row["payload"])["text"] == texts.render(f"messages/{template}.j2",
                                                              **expected), kind
