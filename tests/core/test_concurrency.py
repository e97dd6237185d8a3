"""`workers: auto`: concurrency sized by the rate and the round trip, and a fixed number."""

from __future__ import annotations

import math

import trio

from etl_core._concurrency import Concurrency
from etl_core.ratelimit import AdaptiveRateLimiter


async def test_a_fixed_number_never_moves(autojump_clock):
    concurrency = Concurrency(8, 256, AdaptiveRateLimiter())
    assert concurrency.pool_size == 8 and concurrency.limit == 8
    for _ in range(100):
        concurrency.on_answer(0.05)
    concurrency.on_throttle(holding=True)
    assert concurrency.limit == 8


async def test_auto_grows_while_every_slot_is_busy(autojump_clock):
    concurrency = Concurrency("auto", 256, AdaptiveRateLimiter())
    start = concurrency.limit
    for _ in range(40):  # every slot busy at each answer
        while concurrency.slots.borrowed_tokens < concurrency.limit:
            concurrency.slots.acquire_on_behalf_of_nowait(object())
        concurrency.on_answer(0.05)
    assert concurrency.limit == start + 20  # half a slot per answer
    concurrency.slots.release_on_behalf_of(next(iter(concurrency.slots._borrowers)))
    concurrency.on_answer(0.05)
    concurrency.on_answer(0.05)
    assert concurrency.limit == start + 20  # a slot is free: no need for more


async def test_auto_follows_the_rate_and_the_round_trip(autojump_clock):
    limiter = AdaptiveRateLimiter(quota=(200.0, 20.0))  # holds just under 200/s
    concurrency = Concurrency("auto", 256, limiter)
    for _ in range(200):
        concurrency.on_answer(0.1)
    rate = limiter.rate
    assert rate is not None
    assert concurrency.limit == math.ceil(rate * 0.1 * 1.5) + 1  # Little's law with headroom


async def test_a_throttle_the_rate_does_not_explain_sets_a_ceiling(autojump_clock):
    limiter = AdaptiveRateLimiter(quota=(1000.0, 20.0))
    concurrency = Concurrency("auto", 256, limiter)
    for _ in range(5):
        concurrency.slots.acquire_on_behalf_of_nowait(object())
    concurrency.on_throttle(holding=True)  # 5 in flight were too many: a cap on concurrency
    for _ in range(50):
        concurrency.on_answer(0.1)
    assert concurrency.limit == 4
    await trio.sleep(11)  # a quiet while: the ceiling rises by one
    concurrency.on_answer(0.1)
    assert concurrency.limit == 5


async def test_a_round_trip_is_compared_with_those_of_requests_of_its_size(autojump_clock):
    limiter = AdaptiveRateLimiter(quota=(200.0, 20.0))
    concurrency = Concurrency("auto", 256, limiter)
    for _ in range(100):  # batches of a sink that sends in batches: a full one, and a split's single record
        concurrency.on_answer(0.2, records=500)
        concurrency.on_answer(0.01, records=1)
    assert concurrency.limit > 10  # not shrunk: a full batch is slower, not a sign of overload


async def test_auto_shrinks_when_alike_requests_slow_down(autojump_clock):
    limiter = AdaptiveRateLimiter(quota=(200.0, 20.0))
    concurrency = Concurrency("auto", 256, limiter)
    for _ in range(20):
        concurrency.on_answer(0.01)
    before = concurrency.limit
    for _ in range(100):  # ten times the floor: the destination queues
        concurrency.on_answer(0.1)
    assert concurrency.limit < before
