"""How many records are in flight at once: a fixed number, or ``workers: auto``.

With ``auto`` the concurrency follows Little's law: to send at a rate r when an answer
takes L seconds, r * L requests must be in flight. Until the rate limiter has a rate
(nothing throttled yet), the concurrency grows like TCP's slow start, by half a slot for
each answer while every slot is busy (by half for each round trip), and stops growing when the
round trip time climbs well above its floor, the sign of a destination that queues
(Vector's adaptive request concurrency and Netflix's concurrency-limits rest on the
same signal). Once there is a rate, it is the rate times the round trip time, with
headroom for the round trip's variation. A throttle event also sets a ceiling just
under the requests in flight then (a destination may cap concurrency rather than
rate), which rises again by one slot for every ten quiet seconds.
"""

from __future__ import annotations

import math
from typing import Literal

import trio

from .ratelimit import RateLimiter

#: Concurrency before anything is known: enough that a first wave runs most quotas'
#: buckets dry at once (which tells their burst), few enough that its echo of 429s
#: stays small.
_INITIAL = 64
#: Slots slow start opens per answer while every slot is busy (x1.5 a round trip).
_SLOW_START = 0.5
#: Headroom over rate * round trip time, for the round trip's variation.
_HEADROOM = 1.5
#: A round trip this many times its floor means the destination queues: stop growing...
_QUEUEING = 2.0
#: ...and this many times means it is overloaded: shrink.
_OVERLOADED = 3.0
#: Weight of the newest round trip in the moving average.
_SMOOTHING = 0.05
#: Seconds after which the floor of the round trip is measured afresh.
_FLOOR_FOR = 30.0
#: Seconds without a throttle before the ceiling a throttle set rises by one slot.
_CEILING_STEP = 10.0


class Concurrency:
    """The slots a record needs to be sent, sized for the rate and the latency.

    Args:
        workers: ``run.workers``: a number, or ``"auto"``.
        max_workers: The most slots ``auto`` opens.
        limiter: The rate limiter, whose rate ``auto`` sizes the slots for.
    """

    def __init__(self, workers: int | Literal["auto"], max_workers: int, limiter: RateLimiter) -> None:
        self.auto = workers == "auto"
        #: Worker tasks the runner starts: every one waits for a slot before taking a record.
        self.pool_size = max_workers if workers == "auto" else workers
        self.slots = trio.CapacityLimiter(min(_INITIAL, max_workers) if workers == "auto" else workers)
        self._max = self.pool_size
        self._limiter = limiter
        self._rtt: float | None = None
        self._floor = math.inf
        self._floor_since = -math.inf
        # The most slots a throttle allows: a destination may cap requests in flight.
        self._ceiling = float(max_workers)
        self._ceiling_raised_at = -math.inf
        self._growth = 0.0  # slots earned by slow start, not yet opened

    @property
    def limit(self) -> int:
        """Slots open now."""
        return int(self.slots.total_tokens)

    def on_answer(self, rtt: float) -> None:
        """Adjust the slots after an answer that took ``rtt`` seconds."""
        slots = self.slots
        if not self.auto:
            return
        now = trio.current_time()
        self._rtt = rtt if self._rtt is None else self._rtt + _SMOOTHING * (rtt - self._rtt)
        if now - self._floor_since > _FLOOR_FOR:
            self._floor, self._floor_since = rtt, now
        self._floor = min(self._floor, rtt)
        limit = int(slots.total_tokens)
        rate = self._limiter.rate
        if self._rtt > _OVERLOADED * self._floor:
            target = max(1, math.floor(limit * 0.9))
        elif rate is not None:
            target = math.ceil(rate * self._rtt * _HEADROOM) + 1
        elif slots.borrowed_tokens >= limit and self._rtt < _QUEUEING * self._floor:
            self._growth += _SLOW_START
            target = limit + int(self._growth)
            self._growth -= int(self._growth)
        else:
            return
        if self._ceiling < self._max and now - self._ceiling_raised_at > _CEILING_STEP:
            self._ceiling, self._ceiling_raised_at = self._ceiling + 1, now
        slots.total_tokens = max(1, int(min(self._max, self._ceiling, target)))

    def on_throttle(self, holding: bool) -> None:
        """A throttle event; ``holding``: it came while sending under a measured rate.

        Such a throttle the rate does not explain: the destination may cap requests in
        flight. Never again as many in flight as now, until it has been quiet a while.
        """
        if self.auto and holding:
            self._ceiling = max(1.0, min(self._ceiling, self.slots.borrowed_tokens - 1))
            self._ceiling_raised_at = trio.current_time()
            self.slots.total_tokens = max(1, min(self.slots.total_tokens, int(self._ceiling)))
