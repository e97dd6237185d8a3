"""The adaptive rate limiter: pacing, feedback, and invariants over a grid of quota shapes.

The grid drives the runner's real ``Delivery`` (through ``tests.ratesim``) against a
simulated destination; the acceptance matrix with its goals per cell is in
``test_ratelimit_matrix.py``.
"""

from __future__ import annotations

import pytest
import trio

from etl_core.ratelimit import AdaptiveRateLimiter
from tests.ratesim import Cell, simulate


async def test_unlimited_until_throttled(autojump_clock):
    limiter = AdaptiveRateLimiter()
    assert limiter.rate is None
    start = trio.current_time()
    for _ in range(1000):
        await limiter.acquire()
        limiter.on_success(trio.current_time())
    assert trio.current_time() == start


async def test_paces_at_max_rate(autojump_clock):
    limiter = AdaptiveRateLimiter(max_rate=50)
    start = trio.current_time()
    for _ in range(100):
        await limiter.acquire()
    assert 1.9 <= trio.current_time() - start <= 2.0


async def test_never_above_max_rate(autojump_clock):
    limiter = AdaptiveRateLimiter(max_rate=10)
    for _ in range(50):
        await limiter.acquire()
        limiter.on_success(trio.current_time())
    assert limiter.on_throttle(trio.current_time(), 1.0)
    rates = []
    for _ in range(600):
        await limiter.acquire()
        limiter.on_success(trio.current_time())
        rates.append(limiter.rate)
    assert max(rates) <= 10


async def test_not_adaptive_ignores_throttles(autojump_clock):
    limiter = AdaptiveRateLimiter(max_rate=20, adaptive=False)
    assert not limiter.on_throttle(trio.current_time(), 1.0)
    assert limiter.rate == 20 and limiter.statistics().throttle_events == 1


async def test_a_new_rate_applies_to_waiting_workers(autojump_clock):
    limiter = AdaptiveRateLimiter(max_rate=1)
    sent: list[float] = []

    async def worker():
        await limiter.acquire()
        sent.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(worker)
        await trio.sleep(2.5)
        limiter.max_rate = 100  # e.g. the ceiling was raised: the queue must speed up at once
    assert len(sent) == 20
    assert max(sent) - start < 3.0


async def test_throttles_sent_before_the_reaction_are_one_event(autojump_clock):
    limiter = AdaptiveRateLimiter()
    first_wave = trio.current_time()
    for _ in range(20):
        await limiter.acquire()
        limiter.on_success(first_wave)
    await trio.sleep(0.02)
    assert limiter.on_throttle(first_wave, 1.0)  # the first throttle: an event
    # The rest of the wave was in flight when the limiter reacted: the same event.
    assert not any(limiter.on_throttle(first_wave, 1.0) for _ in range(30))
    assert limiter.statistics().throttle_events == 1
    assert limiter.rate is not None  # it limits from now on


async def test_a_remembered_quota_is_held_from_the_start(autojump_clock):
    limiter = AdaptiveRateLimiter(quota=(100.0, 10.0))
    assert limiter.rate is not None and 0.95 * 100 <= limiter.rate <= 0.97 * 100
    stats = limiter.statistics()
    assert (stats.quota_rate, stats.quota_burst, stats.throttle_events) == (100.0, 10.0, 0)
    # It paces from the first request (connections are still opening), and once the
    # run is under way lets out a share of the burst at once.
    start = trio.current_time()
    for _ in range(97):
        await limiter.acquire()
    assert 0.95 <= trio.current_time() - start <= 1.05
    await trio.sleep(1.0)  # idle: the bucket refills
    resumed = trio.current_time()
    for _ in range(int(limiter.tuning.burst_share * (10 - 1))):  # the measured burst may be one over
        await limiter.acquire()
    assert trio.current_time() - resumed < 1e-9


async def test_a_quota_is_remembered_as_measured_only_once_holding_it_proved_it(autojump_clock):
    limiter = AdaptiveRateLimiter(quota=(100.0, 10.0))
    # Just measured (here: read back), never held: the next run gets it with a margin.
    rate, burst = limiter.quota_to_remember()
    assert rate == pytest.approx(100.0 * (1 - limiter.tuning.unproven_margin)) and burst == 10.0
    # Held without a throttle for longer than the proof takes: kept as measured.
    while trio.current_time() < limiter.tuning.proof + 1.0:
        await limiter.acquire()
        limiter.on_success(trio.current_time())
    assert limiter.quota_to_remember() == (100.0, 10.0)
    # A throttle while holding measures again: the new figure has to prove itself.
    assert limiter.on_throttle(trio.current_time(), 1.0)
    rate, _ = limiter.quota_to_remember()
    assert rate < 100.0 * (1 - limiter.tuning.unproven_margin) + 1e-9


async def test_a_measurement_that_is_only_a_lower_bound_is_probed_within_seconds(autojump_clock):
    # Four workers carry 118/s against a bucket of 100/s and 20: each episode, from a full
    # bucket to an empty one, shows only B + R*T = 118*T. After a 1 s pause the bucket
    # is full again, having thrown tokens away, so the successes since the last throttle
    # prove only R >= 47/s: the quota may be well above it. It holds that lower bound
    # for seconds, not the minute it waits before probing a measurement it can trust.
    limiter = AdaptiveRateLimiter()

    async def send_at_pace(count: int) -> float:
        for _ in range(count):
            await limiter.acquire()
            limiter.on_success(trio.current_time())
            await trio.sleep(1 / 118)
        return trio.current_time()

    assert limiter.on_throttle(await send_at_pace(111), 1.0)
    await trio.sleep(1.0)
    assert limiter.on_throttle(await send_at_pace(76), 1.0)
    stats = limiter.statistics()
    assert stats.holding and stats.quota_rate is not None and stats.quota_rate < 60
    # Said so, and not kept for the next run, which would start far under the quota.
    assert stats.lower_bound and limiter.quota_to_remember() is None
    await trio.sleep(1.0)
    held_at, start = stats.rate, trio.current_time()
    while limiter.statistics().holding and trio.current_time() - start < 60:
        await limiter.acquire()
        limiter.on_success(trio.current_time())
    assert trio.current_time() - start <= limiter.tuning.probe_after_lower_bound + 0.5
    # The probe grows fast, from the rate held, and keeps that rate as a floor.
    await send_at_pace(60)
    assert limiter.rate is not None and held_at is not None and limiter.rate > 1.3 * held_at


# -- invariants over a grid of shapes, through the runner's Delivery --------------------

GRID = [
    Cell(rate=100, burst=1, workers=32),
    Cell(rate=100, burst=10, workers=4),
    Cell(rate=100, burst=100, workers=0),
    Cell(rate=20, burst=2, workers=0, latency=0.1, jitter=0.05),
    Cell(rate=300, burst=30, workers=0, retry_after="none"),
    Cell(rate=100, burst=10, workers=64, retry_after="fractional", status=503),
    Cell(rate=50, shape="fixed_window", window=10, workers=16, rows=1500),
]


@pytest.mark.parametrize("cell", GRID, ids=Cell.label)
def test_every_row_is_delivered_once_with_few_throttles(cell):
    outcome = simulate("etl", cell)
    assert outcome.ok == cell.rows and outcome.failed == 0
    # The first wave's requests in flight (64 with auto, more once slow start grew them),
    # those in flight at one more throttle (a fixed window's end), and a few more.
    assert outcome.throttled <= 0.01 * cell.rows + 2 * outcome.peak_concurrency
    # A strict spacing (burst 1) is held well under its rate when arrivals are blurred
    # (``tests.ratesim._STRICT``).
    assert outcome.goodput >= (0.5 if cell.burst == 1 else 0.6) * cell.capacity
    if outcome.final_rate is not None:
        # The limit ends near the quota: neither far above it nor starved below it.
        assert 0.5 * cell.capacity <= outcome.final_rate <= 1.5 * cell.capacity


def test_a_sender_bound_run_is_never_limited():
    # Two workers at 20 ms carry 95/s, under a quota of 1,000/s: nothing to learn.
    cell = Cell(rate=1000, burst=10, workers=2)
    outcome = simulate("etl", cell)
    assert outcome.throttled == 0 and outcome.final_rate is None
    assert outcome.goodput >= 0.99 * cell.capacity


def test_max_rate_is_a_ceiling():
    cell = Cell(rate=1000, burst=100, workers=32)
    outcome = simulate("etl", cell, max_rate=200)
    assert outcome.throttled == 0
    assert 0.95 * 200 <= outcome.goodput <= 200 * 1.05


async def test_a_first_throttle_with_nothing_through_tells_nothing_of_the_burst(autojump_clock):
    # Another client emptied the bucket (R = 100/s, B = 10): the first request is throttled.
    limiter = AdaptiveRateLimiter()
    await limiter.acquire()
    assert limiter.on_throttle(trio.current_time(), 1.0)
    await trio.sleep(1.0)  # the pause: the bucket fills up to 10
    # 20 requests 5 ms apart get through (10 from the bucket, 10 refilled), the 21st not.
    for _ in range(20):
        limiter.on_success(trio.current_time())
        await trio.sleep(0.005)
    assert limiter.on_throttle(trio.current_time(), 1.0)
    # Read as a burst of one, 20 successes in 0.1 s would be a rate of 200/s.
    assert limiter.quota_rate is not None and limiter.quota_rate <= 100


async def test_an_episode_of_one_success_measures_nothing(autojump_clock):
    limiter = AdaptiveRateLimiter()
    for _ in range(20):  # the first wave: 20 through, then a throttle
        limiter.on_success(trio.current_time())
    assert limiter.on_throttle(trio.current_time(), 1.0)
    await trio.sleep(1.0)
    await trio.sleep(0.001)
    limiter.on_success(trio.current_time())  # one through, 1 ms after the pause...
    await trio.sleep(0.001)
    assert limiter.on_throttle(trio.current_time(), 1.0)  # ...and the next throttled
    # One success tells no rate (read as one in the second since the last throttle, it
    # would be 1/s, and a learner shard publishes what it measures).
    assert limiter.quota_rate is None


async def test_a_throttle_after_one_success_while_holding_narrows_the_hold_not_halves_it(autojump_clock):
    # A strict spacing (burst 1) at 10/s: held just under it, the second request after a
    # pause arrives a little early (the blur of arrival times) and is refused.
    limiter = AdaptiveRateLimiter(quota=(10.0, 1.0))
    held = limiter.rate
    assert held is not None
    await limiter.acquire()
    limiter.on_success(trio.current_time())
    assert limiter.on_throttle(trio.current_time(), 1.0)
    await trio.sleep(1.0)
    await limiter.acquire()
    limiter.on_success(trio.current_time())  # one through after the pause...
    await limiter.acquire()
    assert limiter.on_throttle(trio.current_time(), 1.0)  # ...the next refused
    # Too few to measure, but no sign of a quota that dropped hard: no search from half.
    assert limiter.statistics().holding and limiter.quota_rate == pytest.approx(held, rel=0.05)
    assert limiter.rate is not None and 0.85 * held <= limiter.rate < held


async def _first_wave_of_a_shard_then_alone(limiter: AdaptiveRateLimiter) -> None:
    """A bucket of R = 200/s, B = 20 emptied by four shards at once (this one's share: 5
    successes), then, after the pause, this shard alone at 300/s: the bucket runs dry
    after 0.2 s, 60 successes, and the next request is throttled."""
    for _ in range(5):
        limiter.on_success(trio.current_time())
    assert limiter.on_throttle(trio.current_time(), 1.0)
    await trio.sleep(1.0)
    for _ in range(60):
        limiter.on_success(trio.current_time())
        await trio.sleep(1 / 300)
    assert limiter.on_throttle(trio.current_time(), 1.0)


async def test_a_shard_measures_the_burst_from_the_first_wave_of_all_shards(autojump_clock):
    alone = AdaptiveRateLimiter()
    await _first_wave_of_a_shard_then_alone(alone)
    # Its share read as the burst: 55 of the 60 as the rate of 0.2 s.
    assert alone.quota_rate is not None and alone.quota_rate > 250
    shared = AdaptiveRateLimiter()
    assert shared.first_wave() == (0, 0.0)
    shared.share_first_wave(22, 0.01)  # the four shards' first waves: 22 successes in 10 ms
    await _first_wave_of_a_shard_then_alone(shared)
    assert shared.first_wave()[0] == 5
    assert shared.quota_rate == pytest.approx(200, rel=0.05)
    assert shared.quota_burst == pytest.approx(20, abs=2)
