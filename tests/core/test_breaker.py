"""The outage breaker on its own: when it opens, who probes, when it gives up."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from etl_core._breaker import OutageBreaker
from etl_core.retry import DestinationUnavailable, backoff_delay


def make_breaker(expired: list[str] | None = None, **kwargs: float) -> OutageBreaker:
    settings = {"max_outage": 60.0, "probe_base": 0.5, "probe_cap": 10.0, **kwargs}
    return OutageBreaker(on_expired=(expired if expired is not None else []).append, **settings)


def fail(breaker: OutageBreaker, line: int, sent_at: float, *, retry_after: float | None = None, probe: bool = False) -> bool:
    return breaker.on_failure(line, sent_at, status=503, reason="HTTP 503", retry_after=retry_after, probe=probe)


async def test_it_opens_on_failures_of_several_records_once_waiting_did_not_help(autojump_clock):
    breaker = make_breaker()
    sent_at = trio.current_time()
    await trio.sleep(0.1)
    # A wave sent before the first failure came back: the pool did not know yet.
    assert not any(fail(breaker, line, sent_at) for line in range(10))
    assert not breaker.is_open
    await trio.sleep(0.1)
    assert fail(breaker, 11, trio.current_time())  # sent after the first came back
    assert breaker.is_open and breaker.outages == 1


async def test_one_record_failing_again_and_again_is_no_outage(autojump_clock):
    breaker = make_breaker()
    for _ in range(20):
        await trio.sleep(0.5)
        assert not fail(breaker, 7, trio.current_time())
    assert not breaker.is_open


async def test_an_answer_that_shows_the_destination_is_up_ends_the_streak(autojump_clock):
    breaker = make_breaker()
    for line in range(4):
        await trio.sleep(0.1)
        assert not fail(breaker, line, trio.current_time())
    breaker.on_alive()
    for line in range(4):
        await trio.sleep(0.1)
        assert not fail(breaker, line, trio.current_time())
    assert not breaker.is_open


async def open_breaker(breaker: OutageBreaker, *, retry_after: float | None = None) -> None:
    for line in range(breaker.threshold):
        await trio.sleep(0.01)
        fail(breaker, line, trio.current_time(), retry_after=retry_after)
    assert breaker.is_open


async def test_while_open_one_probe_at_a_time_goes_out_and_its_success_lets_everyone_go(autojump_clock):
    breaker = make_breaker(max_outage=600)
    await open_breaker(breaker)
    opened = trio.current_time()
    admitted: list[tuple[float, bool]] = []

    async def worker() -> None:
        probe = await breaker.admit()
        admitted.append((trio.current_time(), probe))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(worker)
        await trio.sleep(30)
        # One probe was let out, after the first backoff (0.25-0.5 s); the rest wait.
        assert len(admitted) == 1 and admitted[0][1] is True
        assert 0.25 <= admitted[0][0] - opened <= 0.5
        assert fail(breaker, 99, admitted[0][0], probe=True)  # a failed probe: still down
        await trio.sleep(30)
        assert len(admitted) == 2 and admitted[1][1] is True
        breaker.on_alive(probe=True)
    assert [probe for _, probe in admitted] == [True, True, False, False, False]
    assert not breaker.is_open and breaker.probes == 2
    assert breaker.outage_seconds == pytest.approx(60, abs=0.1)


async def test_a_failed_probe_waits_for_retry_after_when_it_is_longer_than_the_backoff(autojump_clock):
    breaker = make_breaker()
    await open_breaker(breaker)
    assert await breaker.admit()
    fail(breaker, 1, trio.current_time(), retry_after=45.0, probe=True)
    before = trio.current_time()
    assert await breaker.admit()
    assert trio.current_time() - before == pytest.approx(45)


async def test_past_max_outage_every_waiter_gives_up_and_the_run_is_told_once(autojump_clock):
    expired: list[str] = []
    breaker = make_breaker(expired, max_outage=20)
    await open_breaker(breaker)
    opened = trio.current_time()
    outcomes: list[str] = []

    async def worker() -> None:
        try:
            while True:
                if await breaker.admit():
                    fail(breaker, 1, trio.current_time(), probe=True)
        except DestinationUnavailable:
            outcomes.append("unavailable")

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(worker)
    assert outcomes == ["unavailable"] * 3
    assert trio.current_time() - opened == pytest.approx(20, abs=0.01)
    assert len(expired) == 1 and "run.max_outage" in expired[0]


async def test_stop_releases_every_waiter(autojump_clock):
    breaker = make_breaker()
    await open_breaker(breaker)
    outcomes: list[str] = []

    async def worker() -> None:
        with pytest.raises(DestinationUnavailable):
            while not await breaker.admit():
                pass
            await trio.sleep_forever()  # a probe does not come back (hangs)
        outcomes.append("stopped")

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(worker)
        await trio.sleep(5)
        breaker.stop()
        nursery.cancel_scope.deadline = trio.current_time() + 1
    assert outcomes == ["stopped", "stopped"]  # the third was probing, and was cancelled


def test_probe_delays_grow_to_the_cap_with_equal_jitter():
    rng = random.Random(3)
    for attempt in range(1, 10):
        ceiling = min(10.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, base=0.5, cap=10.0, jitter=0.5, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
