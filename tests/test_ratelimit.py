"""The token bucket with a fake clock: no real waiting."""
from __future__ import annotations

import asyncio

from bot.core.clock import FakeClock
from bot.transports.outbound.ratelimit import TokenBucket
from bot.transports.outbound.senders import limit_bucket


def fake_time():
    clock = FakeClock()

    async def sleep(s):
        clock.advance(s)
        await asyncio.sleep(0)

    return clock, sleep


async def test_burst_then_steady_rate():
    clock, sleep = fake_time()
    b = TokenBucket(60, burst=5, now=clock.now, sleep=sleep)
    t0 = clock.now()
    for _ in range(5):
        assert await b.acquire() == 0
    await b.acquire()
    assert clock.now() - t0 == 1.0  # 60/min = one a second after the burst
    assert not b.try_acquire()


async def test_concurrent_acquirers_never_exceed_the_limit_in_any_minute():
    clock, sleep = fake_time()
    b = limit_bucket(20, now=clock.now, sleep=sleep)
    stamps = []

    async def worker():
        for _ in range(10):
            await b.acquire()
            stamps.append(clock.now())

    await asyncio.gather(*(worker() for _ in range(8)))
    assert len(stamps) == 80
    assert max(sum(1 for u in stamps if t - 60 < u <= t) for t in stamps) <= 20
    assert clock.now() - stamps[0] < 80 / 15 * 60 + 1  # and close to the allowed pace


async def test_oversized_request_waits_for_a_full_bucket_then_borrows():
    clock, sleep = fake_time()
    b = TokenBucket(100, burst=10, now=clock.now, sleep=sleep)
    await b.acquire(10)
    await b.acquire(50)  # bigger than the bucket: no deadlock
    assert b.tokens < 0
    waited = await b.acquire(1)
    assert waited > 0


async def test_a_clock_that_does_not_move_does_not_spin_forever():
    clock = FakeClock()

    async def real_tiny_sleep(s):
        await asyncio.sleep(0)

    b = TokenBucket(60, burst=1, now=clock.now, sleep=real_tiny_sleep)
    await b.acquire()
    await asyncio.wait_for(b.acquire(), 1.0)


def test_replay_rebuilds_the_level_from_past_takes():
    clock, sleep = fake_time()
    now = clock.now()
    b = limit_bucket(30, now=clock.now, sleep=sleep)  # burst 7, 23/min refill
    assert b.replay([]) == b.capacity  # nothing recent: full
    # 20 takes in the last 20 s (what a fresh bucket after a restart would forget)
    before = [now - 20 + i for i in range(20)]
    assert b.replay(before) < 1 and b.wait_time() > 0 and not b.try_acquire()
    # take greedily for two minutes: no 60 s window, across the restart, holds more than 30
    after = []
    for _ in range(240):
        clock.advance(0.5)
        if b.try_acquire():
            after.append(clock.now())
    takes = before + after
    assert max(sum(1 for u in takes if t - 60 < u <= t) for t in takes) <= 30
    assert len(after) >= 30  # and it does not stall: 23/min keeps flowing


def test_replay_of_more_takes_than_allowed_leaves_debt():
    clock, sleep = fake_time()
    b = TokenBucket(60, burst=5, now=clock.now, sleep=sleep)
    level = b.replay([clock.now()] * 8)  # 8 at once from a 5-token bucket: 3 in debt
    assert level == -3
    assert b.wait_time() == 4.0  # back to one token after 4 s at 1/s


def test_a_bucket_that_says_ready_takes_the_token():
    """Regression: wait_time() called 0.99999998 of a token "ready" while try_acquire() refused it,
    and the sender ignored the refusal: every send passed uncounted (193 of 223 dropped by WeCom)."""
    from bot.transports.outbound.ratelimit import TokenBucket

    t = [1000.0]
    b = TokenBucket(30, now=lambda: t[0])  # 30 a minute: one token every 2 s
    for _ in range(30):
        assert b.try_acquire()
    t[0] += 2.0 - 4e-8  # almost exactly one token back
    assert b.wait_time() == 0.0
    assert b.try_acquire()  # ready means taken
    assert b.wait_time() > 0  # and it was counted: the next one must wait
