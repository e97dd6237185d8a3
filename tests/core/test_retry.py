import random

import trio
import trio.testing

from etl_core.retry import RetryBudget, SharedPause, backoff_delay


def test_backoff_full_jitter_bounds():
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, base=0.5, cap=30.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # full jitter spreads over the whole range
    assert backoff_delay(10_000, base=1, cap=5, rng=rng) <= 5


def test_budget_withdraw_refund_and_exhaustion():
    budget = RetryBudget(capacity=20, refund=1)
    assert budget.withdraw(10) and budget.withdraw(10)
    assert not budget.withdraw(5)
    assert budget.exhausted == 1 and budget.balance == 0
    for _ in range(30):
        budget.refund()
    assert budget.balance == 20


async def test_shared_pause_holds_every_waiter_until_deadline(autojump_clock):
    pause = SharedPause(jitter=0.1)
    resumed: list[float] = []
    assert pause.pause_for(2.0)
    assert not pause.pause_for(1.0)  # never shortens

    async def waiter():
        await pause.wait()
        resumed.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(waiter)
    assert len(resumed) == 10
    assert all(start + 2.0 <= t <= start + 2.1 for t in resumed)
    assert pause.pauses == 1 and abs(pause.paused_seconds - 2.0) < 1e-9
