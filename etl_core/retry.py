"""What every sink gets for free: backoff, a retry budget, a shared pause and an adaptive rate.

All of it is shared by the workers of one run and lives on the trio event loop, so
none of it needs locks.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random

import trio

from ._plugin import RateLimitHint


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


@dataclasses.dataclass
class RateLimiterStatistics:
    """A snapshot of :class:`AdaptiveRateLimiter`, for logs and the report."""

    rate: float | None
    throttle_events: int


class AdaptiveRateLimiter:
    """A client-side rate limiter that learns the destination's rate (AIMD).

    Unlimited (or at ``max_rate``) until the first throttle. Then each throttle event
    cuts the rate to ``decrease`` times the rate measured just before it, and every
    second without one adds ``increase_fraction`` of the rate at the last cut, so the
    sender probes back up slowly and steady-state 429s stay rare. Slots are handed out
    with virtual scheduling (GCRA): one timestamp, no lock, no background task.

    Args:
        max_rate: Fixed ceiling in requests per second, or None.
        adaptive: Learn from throttles; when False only ``max_rate`` applies.
        decrease: Multiplicative decrease on a throttle event.
        increase_fraction: Additive increase per second, as a share of the rate at the last cut.
        min_rate: Floor in requests per second.
    """

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        adaptive: bool = True,
        decrease: float = 0.7,
        increase_fraction: float = 0.05,
        min_rate: float = 0.5,
    ) -> None:
        self.max_rate = max_rate
        self.adaptive = adaptive
        self.decrease = decrease
        self.increase_fraction = increase_fraction
        self.min_rate = min_rate
        self._learned: float | None = None  # rate after the last cut, grows while quiet
        self._cut_at = 0.0
        self._rate_at_cut = 0.0
        self._next_slot = 0.0
        self.throttle_events = 0
        # Times of the successes of the last second, to measure the rate actually achieved.
        self._recent: collections.deque[float] = collections.deque()
        self._started = trio.current_time()

    @property
    def rate(self) -> float | None:
        """The current sending rate limit in requests per second, or None for unlimited."""
        learned = self._current_learned()
        if learned is None:
            return self.max_rate
        return learned if self.max_rate is None else min(learned, self.max_rate)

    def _current_learned(self) -> float | None:
        if self._learned is None:
            return None
        quiet = max(0.0, trio.current_time() - self._cut_at)
        return self._learned + self.increase_fraction * self._rate_at_cut * quiet

    async def acquire(self) -> None:
        """Wait for this request's sending slot."""
        rate = self.rate
        if rate is None:
            return
        now = trio.current_time()
        # A small burst allowance (a tenth of a second of traffic) keeps workers busy
        # without letting the sender exceed the rate over any longer window.
        slot = max(self._next_slot, now - 0.1)
        self._next_slot = slot + 1.0 / rate
        if slot > now:
            await trio.sleep_until(slot)

    def on_success(self, hint: RateLimitHint | None = None) -> None:
        """Record a successful send."""
        now = trio.current_time()
        recent = self._recent
        recent.append(now)
        while recent[0] < now - 1.0:
            recent.popleft()

    def _measured_rate(self, now: float) -> float:
        recent = self._recent
        while recent and recent[0] < now - 1.0:
            recent.popleft()
        return len(recent) / max(0.1, min(1.0, now - self._started))

    def on_throttle(self) -> bool:
        """Record a throttled send; cut the rate unless a cut happened very recently.

        Returns:
            True if the rate was cut.
        """
        if not self.adaptive:
            return False
        now = trio.current_time()
        # Throttles answering requests sent before the last cut belong to the same event.
        if self._learned is not None and now - self._cut_at < 1.0:
            return False
        current = self._current_learned()
        measured = self._measured_rate(now)
        if current is None:
            base = measured
        else:
            # The sender may run below its limit (too few workers): cut from what it achieved.
            base = min(current, measured) if measured else current
        new_rate = max(self.min_rate, base * self.decrease)
        if self.max_rate is not None:
            new_rate = min(new_rate, self.max_rate)
        self._learned = new_rate
        self._rate_at_cut = new_rate
        self._cut_at = now
        self.throttle_events += 1
        return True

    def statistics(self) -> RateLimiterStatistics:
        """Return the current rate and the number of throttle events seen."""
        rate = self.rate
        return RateLimiterStatistics(rate=None if rate is None or math.isinf(rate) else round(rate, 2), throttle_events=self.throttle_events)
