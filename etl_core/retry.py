"""What every sink gets for free: backoff with full jitter, a retry budget and a shared pause.

All of it is shared by the workers of one run and lives on the trio event loop, so
none of it needs locks.
"""

from __future__ import annotations

import random

import trio


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
    """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").

    Args:
        attempt: The attempt that just failed, from 1.
        base: Delay scale for the first retry, seconds.
        cap: Largest delay, seconds.
        rng: Random source (injectable for tests).

    Returns:
        A delay drawn uniformly from ``[0, min(cap, base * 2 ** (attempt - 1))]``.
    """
    return rng.uniform(0, min(cap, base * 2 ** min(attempt - 1, 62)))


class RetryBudget:
    """A token bucket that caps retries across all workers.

    Each retry withdraws its cost; each success refunds a little. During an outage the
    bucket empties quickly and records fail fast (``retry budget exhausted``) instead
    of the run retrying for hours.

    Args:
        capacity: Largest (and initial) balance.
        refund: Balance returned by each success.
    """

    def __init__(self, capacity: int, refund: int) -> None:
        self.capacity = capacity
        self.refund_amount = refund
        self.balance = capacity
        self.exhausted = 0

    def withdraw(self, cost: int) -> bool:
        """Take ``cost`` for one retry; return False (and take nothing) if it is not there."""
        if cost > self.balance:
            self.exhausted += 1
            return False
        self.balance -= cost
        return True

    def refund(self) -> None:
        """Return the success refund, up to the capacity."""
        self.balance = min(self.capacity, self.balance + self.refund_amount)


class SharedPause:
    """A pause every worker honours before sending (Retry-After, or a reset announced by headers).

    Args:
        jitter: Largest random delay, in seconds, added per worker when a pause ends,
            so the pool does not resume in one burst.
    """

    def __init__(self, jitter: float = 0.25) -> None:
        self.jitter = jitter
        self.deadline = 0.0
        self.paused_seconds = 0.0
        self.pauses = 0

    def pause_for(self, seconds: float) -> bool:
        """Pause all workers for ``seconds`` from now (never shortens a pause).

        Returns:
            True if this started a new pause or extended the current one.
        """
        now = trio.current_time()
        deadline = now + seconds
        if deadline <= self.deadline:
            return False
        if self.deadline <= now:
            self.pauses += 1
            self.paused_seconds += seconds
        else:
            self.paused_seconds += deadline - self.deadline
        self.deadline = deadline
        return True

    def remaining(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self.deadline - trio.current_time())

    async def wait(self) -> None:
        """Return when no pause is active (immediately if none is)."""
        while (deadline := self.deadline) > trio.current_time():
            await trio.sleep_until(deadline + random.uniform(0, self.jitter))
