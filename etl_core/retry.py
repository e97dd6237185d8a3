"""What every sink gets for free: backoff with jitter, a retry budget and a shared pause.

All of it is shared by the workers of one run and lives on the trio event loop, so
none of it needs locks.
"""

from __future__ import annotations

import math
import random

import trio


def backoff_delay(
    attempt: int, *, base: float, cap: float, jitter: float = 1.0, rng: random.Random = random._inst
) -> float:
    """Exponential backoff with jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").

    Args:
        attempt: The attempt that just failed, from 1.
        base: Delay scale for the first retry, seconds.
        cap: Largest delay, seconds.
        jitter: The random share of the delay: 1 for full jitter, 0.5 for equal jitter.
        rng: Random source (injectable for tests).

    Returns:
        With ``d = min(cap, base * 2 ** (attempt - 1))``, a delay drawn uniformly from
        ``[d * (1 - jitter), d]``.
    """
    delay = min(cap, base * 2 ** min(attempt - 1, 62))
    return delay * (1 - jitter) + rng.uniform(0, delay * jitter)


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


class DestinationUnavailable(Exception):
    """Nothing more is sent in this run: the destination looks unavailable.

    It asked for more pauses than ``run.retry.max_paused``, or was down for longer than
    ``run.max_outage``.
    """


class SharedPause:
    """A pause every worker honours before sending (Retry-After, or a reset announced by headers).

    The pauses of a run add up to at most ``max_total`` seconds: a destination that keeps
    asking for more (e.g. ``Retry-After: 999999`` on every answer, each capped at
    ``run.retry.retry_after_max``) would otherwise let the run crawl for days. A pause
    that would go over it is refused, and the pause is then spent for good.

    Args:
        jitter: Largest random delay, in seconds, added per worker when a pause ends,
            so the pool does not resume in one burst.
        max_total: Most seconds of pauses in all.
    """

    def __init__(self, jitter: float = 0.25, max_total: float = math.inf) -> None:
        self.jitter = jitter
        self.max_total = max_total
        self.deadline = 0.0
        self.paused_seconds = 0.0
        self.pauses = 0
        #: True once a pause was refused because it would go over ``max_total``.
        self.spent = False
        self._spent = trio.Event()

    def spent_reason(self) -> str:
        """Why the run stops once the pauses asked for went past ``max_total``."""
        return (
            f"the destination asked for more than {self.max_total:g} s of pauses in all (run.retry.max_paused), "
            "so it looks unavailable: run again later to send the records left"
        )

    def pause_for(self, seconds: float) -> bool:
        """Pause all workers for ``seconds`` from now (never shortens a pause).

        A pause that would take the total over ``max_total`` is refused, and from then on
        :attr:`spent` is True and :meth:`wait` raises :class:`DestinationUnavailable`.

        Returns:
            True if this started a new pause or extended the current one.
        """
        now = trio.current_time()
        deadline = now + seconds
        if self.spent or deadline <= self.deadline:
            return False
        added = seconds if self.deadline <= now else deadline - self.deadline
        if self.paused_seconds + added > self.max_total:
            self.stop()
            return False
        if self.deadline <= now:
            self.pauses += 1
        self.paused_seconds += added
        self.deadline = deadline
        return True

    def stop(self) -> None:
        """Send nothing more: every caller of :meth:`wait` raises at once."""
        self.spent = True
        self._spent.set()

    def remaining(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self.deadline - trio.current_time())

    async def wait(self) -> None:
        """Return when no pause is active (immediately if none is).

        Raises:
            DestinationUnavailable: The pauses are spent (at once, or as soon as it happens while waiting).
        """
        while not self.spent and (deadline := self.deadline) > trio.current_time():
            with trio.move_on_at(deadline + random.uniform(0, self.jitter)):
                await self._spent.wait()
        if self.spent:
            raise DestinationUnavailable
