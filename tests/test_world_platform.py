"""The world platform on its own, spoken to over raw HTTP as Linli (or anyone) would."""
from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from outbound_world import settings

from bot.core.clock import FakeClock
from bot.world.platform import WorldState, make_platform_app


@pytest.fixture
async def world():
    clock = FakeClock()
    w = WorldState(settings(), clock=clock, seed=3, token_ttl_s=7200)
    client = TestClient(TestServer(make_platform_app(w)))
    await client.start_server()
    w.client = client
    yield w
    await client.close()


async def wecom_token(w) -> str:
    r = await w.client.get("/cgi-bin/gettoken", params={"corpid": "wwtestcorp",
                                                        "corpsecret": "corp-secret"})
    data = await r.json()
    assert data["errcode"] == 0 and data["expires_in"] == 7200
    return data["access_token"]


async def post(w, path, body, **params):
    r = await w.client.post(path, json=body, params=params)
    assert r.status == 200  # WeChat answers errors inside a 200
    return await r.json()


async def test_gettoken_checks_corp_and_secret(world):
    r = await world.client.get("/cgi-bin/gettoken", params={"corpid": "x", "corpsecret": "y"})
    assert (await r.json())["errcode"] == 40013
    r = await world.client.get("/cgi-bin/gettoken",
                               params={"corpid": "wwtestcorp", "corpsecret": "wrong"})
    assert (await r.json())["errcode"] == 40001
    # WeCom returns the same token while it is valid
    assert await wecom_token(world) == await wecom_token(world)


async def test_token_expiry_and_realms(world):
    world.register_user("u1")
    tok = await wecom_token(world)
    body = {"touser": "u1", "msgtype": "text", "agentid": 1000002, "text": {"content": "hi"}}
    assert (await post(world, "/cgi-bin/message/send", body, access_token=tok))["errcode"] == 0
    assert (await post(world, "/cgi-bin/message/send", body,
                       access_token="nope"))["errcode"] == 40014
    world.clock.advance(7201)
    assert (await post(world, "/cgi-bin/message/send", body,
                       access_token=tok))["errcode"] == 42001
    # a WeCom token is no good for the Official Account
    world.register_openid("o1")
    world.user_wrote("o1")
    r = await post(world, "/cgi-bin/message/custom/send",
                   {"touser": "o1", "msgtype": "text", "text": {"content": "x"}},
                   access_token=await wecom_token(world))
    assert r["errcode"] == 40001


async def test_new_oa_token_retires_the_old_one_after_five_minutes(world):
    q = {"grant_type": "client_credential", "appid": "wxtestapp", "secret": "oa-secret"}
    old = (await (await world.client.get("/cgi-bin/token", params=q)).json())["access_token"]
    new = (await (await world.client.get("/cgi-bin/token", params=q)).json())["access_token"]
    assert old != new
    assert world.check_token(old, "oa") is None
    world.clock.advance(301)
    assert world.check_token(old, "oa") == (42001, "access_token expired")
    assert world.check_token(new, "oa") is None


async def test_message_send_invaliduser_and_silent_member_limit(world):
    world.register_user("u1")
    tok = await wecom_token(world)

    def body(text):
        return {"touser": "u1|ghost", "msgtype": "text", "agentid": 1000002,
                "text": {"content": text}}

    r = await post(world, "/cgi-bin/message/send", body("m0"), access_token=tok)
    assert r["errcode"] == 0 and r["invaliduser"] == "ghost"
    for i in range(1, 40):
        r = await post(world, "/cgi-bin/message/send", body(f"m{i}"), access_token=tok)
        assert r["errcode"] == 0  # the platform never says...
    assert len(world.messages_for("u1")) == 30  # ...that it dropped the rest
    assert len(world.dropped) == 10
    r = await post(world, "/cgi-bin/message/send",
                   {**body("x"), "touser": "ghost"}, access_token=tok)
    assert r["errcode"] == 81013


async def test_robot_allows_20_posts_per_minute(world):
    world.add_group("g-robot", "robot", ["a", "b"], robot_key="KEY1")
    codes = [(await post(world, "/cgi-bin/webhook/send",
                         {"msgtype": "text", "text": {"content": f"{i}"}}, key="KEY1"))["errcode"]
             for i in range(21)]
    assert codes == [0] * 20 + [45009]
    world.clock.advance(60)

    async def robot(key, text):
        return (await post(world, "/cgi-bin/webhook/send",
                           {"msgtype": "text", "text": {"content": text}}, key=key))["errcode"]

    assert await robot("KEY1", "later") == 0
    assert await robot("NOKEY", "x") == 93000
    assert await robot("KEY1", "长" * 700) == 40058  # 2,100 bytes > 2,048
    assert len(world.group_messages("g-robot")) == 21


async def test_personal_group_is_unreachable_by_api(world):
    world.register_user("lead")
    world.add_group("g-personal", "personal", ["lead", "r1"])
    tok = await wecom_token(world)
    r = await post(world, "/cgi-bin/appchat/send",
                   {"chatid": "g-personal", "msgtype": "text", "text": {"content": "x"}},
                   access_token=tok)
    assert r["errcode"] == 86003
    world.human_post("g-personal", "lead", "转发：台风预警")
    assert [d.text for d in world.group_messages("g-personal")] == ["转发：台风预警"]
    assert world.seen_by("r1")[0].sender == "lead"
    with pytest.raises(ValueError):
        world.human_post("g-personal", "stranger", "x")


async def test_injected_faults(world):
    world.register_user("u1")
    tok = await wecom_token(world)
    body = {"touser": "u1", "msgtype": "text", "agentid": 1000002, "text": {"content": "x"}}
    world.inject("/cgi-bin/message/send", errcode=-1, times=2)
    world.inject("/cgi-bin/message/send", status=502)
    codes = [(await post(world, "/cgi-bin/message/send", body, access_token=tok))["errcode"]
             for _ in range(2)]
    assert codes == [-1, -1]
    r = await world.client.post("/cgi-bin/message/send", json=body, params={"access_token": tok})
    assert r.status == 502
    world.inject("/cgi-bin/message/send", drop=True)
    with pytest.raises(aiohttp.ClientError):
        await world.client.post("/cgi-bin/message/send", json=body, params={"access_token": tok})
    assert (await post(world, "/cgi-bin/message/send", body, access_token=tok))["errcode"] == 0
    # probability faults follow the seeded RNG: same seed, same pattern
    world.inject("/cgi-bin/webhook/send", errcode=-1, probability=0.5)
    world.add_group("g", "robot", ["a"], robot_key="K")
    pattern = [(await post(world, "/cgi-bin/webhook/send",
                           {"msgtype": "text", "text": {"content": "x"}}, key="K"))["errcode"]
               for _ in range(10)]
    assert set(pattern) == {0, -1}
