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

The slots count requests, and a request of a sink that sends in batches may carry one
record or hundreds (a split batch's halves get smaller and faster). Little's law takes
the round trip of every request; the signs of queueing compare a round trip only with
those of requests of about its size (within a factor of two), lest a full batch look
like an overloaded destination next to a single record.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(slots=True)
class _RoundTrips:
    """Round trips of some requests: their moving average, and their floor (the quickest lately)."""

    average: float = math.nan
    floor: float = math.inf
    floor_since: float = -math.inf

    def add(self, rtt: float, now: float) -> None:
        self.average = rtt if math.isnan(self.average) else self.average + _SMOOTHING * (rtt - self.average)
        if now - self.floor_since > _FLOOR_FOR:
            self.floor, self.floor_since = rtt, now
        self.floor = min(self.floor, rtt)


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
        self._rtt = _RoundTrips()  # every request's
        self._rtt_by_size: dict[int, _RoundTrips] = {}  # by records per request, within a factor of two
        # The most slots a throttle allows: a destination may cap requests in flight.
        self._ceiling = float(max_workers)
        self._ceiling_raised_at = -math.inf
        self._growth = 0.0  # slots earned by slow start, not yet opened

    @property
    def limit(self) -> int:
        """Slots open now."""
        return int(self.slots.total_tokens)

    def on_answer(self, rtt: float, records: int = 1) -> None:
        """Adjust the slots after an answer that took ``rtt`` seconds to a request of ``records`` records."""
        slots = self.slots
        if not self.auto:
            return
        now = trio.current_time()
        every = self._rtt
        every.add(rtt, now)
        size = records.bit_length()
        if (alike := self._rtt_by_size.get(size)) is None:
            alike = self._rtt_by_size[size] = _RoundTrips()
        alike.add(rtt, now)
        limit = int(slots.total_tokens)
        rate = self._limiter.rate
        if alike.average > _OVERLOADED * alike.floor:
            target = max(1, math.floor(limit * 0.9))
        elif rate is not None:
            target = math.ceil(rate * every.average * _HEADROOM) + 1
        elif slots.borrowed_tokens >= limit and alike.average < _QUEUEING * alike.floor:
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
