"""Client-side rate limiting: the :class:`RateLimiter` protocol and the adaptive limiter.

The runner's :class:`~etl_core._delivery.Delivery` asks the limiter for a sending slot
before every attempt and tells it how each attempt went; any object with the protocol's
methods can stand in (a fixed rate, a shared quota, a test double).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Protocol

import trio


@dataclasses.dataclass
class RateLimiterStatistics:
    """A snapshot of :class:`AdaptiveRateLimiter`, for logs and the report."""

    rate: float | None
    throttle_events: int


@dataclasses.dataclass(frozen=True)
class LimiterTuning:
    """The constants of :class:`AdaptiveRateLimiter`'s measurements, in one place."""

    #: Successes kept for measuring the destination's rate, in seconds.
    history: float = 10.0
    #: Windows shorter than this are too noisy to measure a rate from.
    min_window: float = 0.05
    #: Most windows tried per measurement.
    windows: int = 500
    #: Sending for this long since the last throttle is enough to measure the rate...
    min_episode: float = 0.5
    #: ...and so are this many successes beyond what the bucket held, however quickly they
    #: came: one request of error in the burst then moves the measurement by at most 1/15.
    min_beyond_burst: int = 15
    #: Throttles this soon after a throttle event answer requests sent before it: same event.
    same_event: float = 0.5
    #: Largest share of a second of traffic the limiter lets out at once.
    max_tolerance: float = 0.1
    #: A slot further away than this is recomputed then, in case the rate changed.
    recheck: float = 0.1
    #: Bursts per second a ramp starts from after the first throttle.
    ramp_start: float = 6.0
    #: Burst sizes tried when solving for the burst.
    burst_steps: int = 50


class RateLimiter(Protocol):
    """What :class:`~etl_core._delivery.Delivery` needs of a client-side rate limiter."""

    @property
    def rate(self) -> float | None:
        """The current sending rate limit in requests per second, or None for unlimited."""

    async def acquire(self) -> None:
        """Wait for the next request's sending slot."""

    def on_success(self, sent_at: float | None = None) -> None:
        """Record a delivered request, sent at ``sent_at`` (``trio.current_time()``)."""

    def on_throttle(self) -> bool:
        """Record a throttled request (429, or 503 with Retry-After); True if it changed the rate."""

    def statistics(self) -> RateLimiterStatistics:
        """Return the current rate and the throttle events seen."""


_TUNING = LimiterTuning()


class AdaptiveRateLimiter:
    """A client-side rate limiter that learns the destination's rate from its throttles.

    With ``Retry-After`` every throttle (429/503) pauses the whole pool, so a throttle
    costs a second or more of sending however it is answered: the limiter's job is to
    need few of them, and to send just under the destination's rate in between.

    It measures instead of cutting blindly. A quota is a token bucket (a rate plus a
    burst): it lets through at most its burst plus its rate times the elapsed time, and
    it is empty when it throttles. So the successes counted back from a throttle give
    the destination's rate once the burst is known. The limiter:

    * sends unlimited (or at ``max_rate``) until the first throttle; the successes of
      the requests sent before it are the burst, plus what the rate let through while
      the destination worked through them (which is taken off);
    * ramps up from ``_TUNING.ramp_start`` (six) bursts per second (``ramp_growth``) until the
      next throttle, measures the rate from the successes before it, and holds
      ``first_margin`` under it: two throttles in all while the quota stays put. The
      burst under this measurement may be a request off; when that makes it come out
      above the margin, a third throttle follows and measures again;
    * after ``hold`` seconds of sending it probes (the rate grows slowly at first, then
      faster: ``probe_growth``) to find a raised quota, and measures again at the
      probe's throttle. The first two measurements together give the burst exactly
      (from then on taken as the same share of a second of the rate, so that it
      follows a quota that moves), and once the burst is known the limiter holds
      ``margin`` under each measurement. Each probe that finds the same rate doubles
      the hold (up to ``max_hold``), and for a minute after the rate moved, probes come
      every ``hold_after_change``;
    * when too little got through since the last throttle to measure the rate (less
      than ``_TUNING.min_episode`` of sending and fewer than ``_TUNING.min_beyond_burst`` requests
      beyond what the bucket held: the quota dropped, or the ramp started far above
      it), ramps up again from what the successes prove, or from ``decrease`` times
      the rate (the multiplicative decrease of AIMD) when only the bucket's content
      got through.

    Time spent paused (no successes) does not count as sending time. Slots are handed
    out with virtual scheduling (GCRA): waiters queue, and the first one sleeps until
    its slot, recomputed at least every 0.1 s so a new rate applies at once.

    Args:
        max_rate: Fixed ceiling in requests per second, or None.
        adaptive: Learn from throttles; when False only ``max_rate`` applies.
        margin: How far under a measured rate to hold, as a share of it, once the burst
            is known.
        first_margin: The same for the first measurement, whose burst comes from the
            first wave and may be a request off.
        decrease: Cut applied when a throttle cannot be measured from.
        probe_growth: Growth of a probe: the rate is multiplied by
            ``exp(probe_growth * t**2)`` after ``t`` seconds of sending.
        ramp_growth: The same for a ramp (the rate is not known yet).
        hold: Seconds of sending at the measured rate before the first probe.
        max_hold: Longest hold between probes while the rate stays the same.
        hold_after_change: Seconds between probes for a minute after the rate moved.
        min_rate: Floor in requests per second.
    """

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        adaptive: bool = True,
        margin: float = 0.01,
        first_margin: float = 0.02,
        decrease: float = 0.5,
        probe_growth: float = 0.3,
        ramp_growth: float = 1.0,
        hold: float = 120.0,
        max_hold: float = 600.0,
        hold_after_change: float = 5.0,
        min_rate: float = 0.5,
    ) -> None:
        self.max_rate = max_rate
        self.adaptive = adaptive
        self.margin = margin
        self.first_margin = first_margin
        self.decrease = decrease
        self.probe_growth = probe_growth
        self.ramp_growth = ramp_growth
        self.hold = hold
        self.hold_after_change = hold_after_change
        self.max_hold = max_hold
        self.min_rate = min_rate
        self.throttle_events = 0
        self.estimate: float | None = None  # the destination's measured rate
        self.burst: float | None = None  # its burst, in requests
        self.burst_time: float | None = None  # the burst in seconds of the rate, once the rate is known
        self._first_event: float | None = None
        self._wave_successes = 0  # successes of the requests sent before the first throttle
        self._wave_answers = (math.inf, -math.inf)  # when the first and the last of those came back
        # The first measurement's successes, throttle and previous throttle, until the
        # second measurement tells the burst.
        self._ramp_episode: tuple[list[float], float, float] | None = None
        self._burst_solved = False
        self._base: float | None = None  # rate at the start of the current phase
        self._growth = 0.0  # 0 while holding
        self._phase_active = 0.0  # self._active when the current phase started
        self._hold_for = hold
        self._stable_probes = 0
        self._volatile_until = -math.inf
        self._event_at: float | None = None
        self._last_slot = -math.inf
        self._gate = trio.Lock()
        # Sending time: the time between successes, gaps (pauses) left out.
        self._active = 0.0
        self._last_success: float | None = None
        self._successes = 0
        self._active_at_event = 0.0  # self._active at the last throttle event
        self._history: collections.deque[float] = collections.deque()  # success times
        self._second: collections.deque[float] = collections.deque()  # those of the last second

    # -- the rate ------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The current sending rate limit in requests per second, or None for unlimited."""
        base = self._base
        if base is None:
            return self.max_rate
        rate = base
        if self._growth:
            elapsed = self._active - self._phase_active
            rate = base * math.exp(min(20.0, self._growth * elapsed * elapsed))
            # Never run ahead of what the sender achieves (too few workers, slow
            # responses): a probe would learn nothing and the rate would balloon.
            # (Measured over the last second, or over the sending time since the last
            # throttle when that is shorter: a pause is not a slow sender.)
            achieved = len(self._second) / max(_TUNING.min_window, min(1.0, self._active - self._active_at_event))
            rate = min(rate, max(base, 2.0 * achieved))
        rate = max(self.min_rate, rate)
        return rate if self.max_rate is None else min(rate, self.max_rate)

    async def acquire(self) -> None:
        """Wait for this request's sending slot.

        Waiters queue (first come, first served) and only the first one waits for the
        clock, so a change of rate applies to the very next slot.
        """
        if self.rate is None:
            return
        async with self._gate:
            while True:
                rate = self.rate
                if rate is None:
                    return
                now = trio.current_time()
                # A small burst allowance keeps workers busy without exceeding the rate
                # over any longer window, nor the destination's burst: it lets out
                # 1 + tolerance * rate requests at once, one plus half the burst and
                # never more than the burst.
                burst = self._burst_at(rate)
                tolerance = _TUNING.max_tolerance
                if burst is not None:
                    tolerance = min(tolerance, max(0.0, min(0.5 * burst, burst - 1.0)) / rate)
                slot = max(self._last_slot + 1.0 / rate, now - tolerance)
                if slot <= now:
                    self._last_slot = slot
                    return
                await trio.sleep_until(min(slot, now + _TUNING.recheck))

    # -- feedback ------------------------------------------------------------------

    def on_success(self, sent_at: float | None = None) -> None:
        """Record a successful send.

        Args:
            sent_at: When the request was sent (``trio.current_time()``); now if None.
        """
        now = trio.current_time()
        sent = now if sent_at is None else sent_at
        last = self._last_success
        if last is not None:
            rate = self.rate
            gap = 0.25 if rate is None else max(0.25, 4.0 / rate)
            self._active += min(now - last, gap)
        self._last_success = now
        self._successes += 1
        second = self._second
        second.append(now)
        while second[0] < now - 1.0:
            second.popleft()
        in_first_wave = self._first_event is None or (self.estimate is None and sent <= self._first_event)
        if in_first_wave:
            self._wave_successes += 1
            self._wave_answers = (min(self._wave_answers[0], now), max(self._wave_answers[1], now))
        if self._base is None:
            return  # nothing learnt yet: no history needed
        history = self._history
        history.append(now)
        while history[0] < now - _TUNING.history:
            history.popleft()
        if in_first_wave:
            # A late answer to the first wave (which ended at the first throttle, since a
            # phase has started): the burst is larger than it seemed.
            self.burst = self._wave_successes
            if self._growth == self.ramp_growth:
                self._base = max(self._base, self._ramp_start(None))
        if not self._growth and self._active - self._phase_active >= self._hold_for:
            self._start(self._base, self.probe_growth)

    def on_throttle(self) -> bool:
        """Record a throttled send and learn from it.

        Returns:
            True if this started a new throttle event (the rate changed).
        """
        if not self.adaptive:
            return False
        now = trio.current_time()
        if self._event_at is not None and now - self._event_at < _TUNING.same_event:
            return False
        upper = self.rate  # the rate that ran out of quota
        previous_event, self._event_at = self._event_at, now
        self.throttle_events += 1
        # Sending time since the last throttle (pauses left out).
        sent_for, self._active_at_event = self._active - self._active_at_event, self._active
        self._last_success = None  # the wait (and any pause) until the next success is not sending time
        if self._first_event is None:
            # The first throttle: the start measured the burst, not the rate. Answers
            # to the rest of the first wave of requests are still on their way.
            self._first_event = now
            self.burst = self._wave_successes
            self._start(self._ramp_start(upper), self.ramp_growth)
            return True
        assert previous_event is not None
        episode = [t for t in self._history if t > previous_event]
        if self.burst_time is None:
            lower = self._first_measurement(episode, now, previous_event)
        else:
            lower = self._bound(episode, now, previous_event)
        if upper is not None:
            lower = min(lower, upper)
        # Only what got through beyond what the bucket held tells anything about the
        # rate. It was empty at the last throttle and refilled while nothing was sent
        # (the pause), up to the burst.
        held = min(self._burst_at(lower) or 0.0, lower * max(0.0, now - previous_event - sent_for))
        beyond_burst = len(episode) - held
        if lower > 0 and beyond_burst >= 1 and (sent_for >= _TUNING.min_episode or beyond_burst >= _TUNING.min_beyond_burst):
            if self.burst_time is None:
                # The first measurement; kept until the next one tells the burst exactly.
                self._ramp_episode = (episode, now, previous_event)
                self.burst_time = (self.burst or 0.0) / lower
            elif self._ramp_episode is not None:
                lower = self._solve_burst(episode, now, previous_event, fallback=lower)
            self._learn(lower, now)
            self._start(lower * (1.0 - (self.margin if self._burst_solved else self.first_margin)), 0.0)
        else:
            # Too few got through since the last throttle to measure the rate: the
            # quota dropped, or the rate was far above it. Ramp up again from what the
            # successes prove, or from a cut.
            if self.estimate is not None and lower < 0.8 * self.estimate:
                self._volatile_until = now + 60.0
                self._stable_probes = 0
            cut = self.decrease * (upper if upper is not None else 2.0 * len(self._second))
            if lower <= 0:
                start = cut
            elif beyond_burst < 1:
                start = min(lower, cut)  # a bound from the burst alone may be far too high
            else:
                start = lower
            self._start(start, self.ramp_growth)
        return True

    def _burst_at(self, rate: float) -> float | None:
        """The destination's burst in requests when its rate is ``rate`` (None if unknown)."""
        return self.burst if self.burst_time is None else self.burst_time * rate

    def _ramp_start(self, upper: float | None) -> float:
        """The rate to ramp up from after the first throttle: ``_TUNING.ramp_start`` bursts per second."""
        rate = _TUNING.ramp_start * max(1.0, self.burst or 0.0)
        return rate if upper is None else min(rate, self.decrease * upper)

    def _bound(self, times: list[float], now: float, since: float, burst: float | None = None) -> float:
        """The destination's rate, measured from the successes ``times`` between throttles at ``since`` and ``now``.

        A quota is a token bucket. It was empty at ``since`` and is empty now (less
        than one request left: count half of one). In any window ending now it let
        through what it held when the window began plus its rate times the window; what
        it held is at most its rate times the time since ``since``, and at most its
        burst: ``burst`` requests if given, else ``burst_time`` seconds of the rate once
        that is known (so that it follows a quota that moves), else the first wave's
        successes. Every window gives a lower bound of the rate; the largest one is the
        measurement.
        """
        burst_time = self.burst_time if burst is None else None
        if burst is None:
            burst = self.burst or 0.0
        best = 0.0
        count = 0.5
        # A few hundred windows are plenty.
        stride = 1 + len(times) // _TUNING.windows
        for i, t in enumerate(reversed(times), 1):
            count += 1
            if i % stride:
                continue
            # Short windows are noisy: count them over at least _TUNING.min_window.
            window = max(now - t, _TUNING.min_window)
            refill = max(0.0, now - window - since)
            if burst_time is not None:
                best = max(best, count / (window + min(refill, burst_time)))
            else:
                best = max(best, count / (window + refill), (count - burst) / window)
        return best

    def _first_measurement(self, episode: list[float], now: float, since: float) -> float:
        """Measure the rate, with the burst taken from the first wave.

        The first wave's successes are the burst plus the requests the rate let through
        while the destination worked through the wave, which is about as long as its
        successes took to come back. Each pass takes that trickle, at the rate measured
        so far, off the burst and measures again. The result may err either way by a
        request or two of burst, a few per cent of the rate at a small burst: the
        ``first_margin`` absorbs that, and the first probe corrects it.
        """
        wave = self._wave_successes
        first_answer, last_answer = self._wave_answers
        trickle_time = max(0.0, last_answer - first_answer) if wave > 1 else 0.0
        rate = self._bound(episode, now, since)
        for _ in range(3):
            self.burst = max(1.0, wave - rate * trickle_time)
            rate = self._bound(episode, now, since)
        return rate

    def _solve_burst(self, times: list[float], now: float, since: float, *, fallback: float) -> float:
        """Learn the burst from this measurement and the first one; return the rate.

        Each measurement gives the rate as a function of the burst, and a longer one
        (a gentle probe) depends on it less: the burst for which both give the same
        rate is the destination's. If no burst makes them agree (the quota moved in
        between), ``fallback`` is returned and the burst stays as it was.
        """
        assert self._ramp_episode is not None
        first_times, first_now, first_since = self._ramp_episode
        self._ramp_episode = None
        top = float(self._wave_successes)  # the most the burst can be
        best_gap, burst, rate = math.inf, top, fallback
        for step in range(_TUNING.burst_steps, -1, -1):
            candidate = top * step / _TUNING.burst_steps
            first = self._bound(first_times, first_now, first_since, candidate)
            second = self._bound(times, now, since, candidate)
            if abs(first - second) < best_gap:
                best_gap, burst, rate = abs(first - second), candidate, max(first, second)
        if rate <= 0 or best_gap > 0.02 * rate:
            return fallback
        self.burst, self.burst_time = burst, burst / rate
        self._burst_solved = True
        return rate

    def _learn(self, estimate: float, now: float) -> None:
        previous = self.estimate
        self.estimate = estimate
        if previous is None:
            return
        change = abs(estimate / previous - 1.0)
        if change > 0.2:
            self._volatile_until = now + 60.0
            self._stable_probes = 0
        elif change <= 0.05:
            self._stable_probes += 1
        if now < self._volatile_until:
            self._hold_for = self.hold_after_change
        else:
            self._hold_for = min(self.max_hold, self.hold * 2.0 ** self._stable_probes)

    def _start(self, rate: float | None, growth: float) -> None:
        """Start a phase: hold ``rate`` (growth 0) or grow from it."""
        self._base = None if rate is None else max(self.min_rate, rate)
        self._growth = growth
        self._phase_active = self._active

    def statistics(self) -> RateLimiterStatistics:
        """Return the current rate and the number of throttle events seen."""
        rate = self.rate
        return RateLimiterStatistics(rate=None if rate is None or math.isinf(rate) else round(rate, 2), throttle_events=self.throttle_events)
