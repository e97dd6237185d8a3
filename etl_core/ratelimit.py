"""Client-side rate limiting: the :class:`RateLimiter` protocol and the adaptive limiter.

The runner's :class:`~etl_core._delivery.Delivery` asks the limiter for a sending slot
before every attempt and tells it how each attempt went; any object with the protocol's
methods can stand in (a fixed rate, a shared quota, a test double).

:class:`AdaptiveRateLimiter`:

Model: the destination is a token bucket, with a rate R and a burst B. A success
means the bucket had a token when the request arrived; a throttle means it was
empty. So in any stretch of time T in which N requests got through, N <= B + R*T,
and N <= R*T when the stretch starts at a throttle (an empty bucket). The limiter
measures R as the largest of these lower bounds over the successes since the
last throttle, and B from the first wave (sent unlimited until the first throttle:
B = N0 - R*T0, counting all its successes or those sent up to its last throttled
request, whichever gives more). It paces requests with GCRA at ``(1 - margin) * R``
and lets out up to ``burst_share * (B - 1)`` at once (B may be a request over), so it
never spends more than the bucket holds.

Before any throttle it sends unlimited (or at ``max_rate``). After the first, R is
not known yet: it ramps up (``ramp_growth``) from what the first wave suggests
until the next throttle, which measures R. It then holds; every ``probe_every``
seconds of sending (``probe_every_after_move`` for a minute after the quota dropped,
or until it rises again) it probes upward slowly (``probe_growth``) to find a raised
quota, and measures again at the probe's throttle. When that first measurement is only
a lower bound (it came from the successes since a throttle, across a pause in which the bucket
filled and threw tokens away; or the first wave took as long as half the measuring
window: few workers cannot tell R from B then), the first probe
comes after ``probe_after_lower_bound`` seconds and grows fast, and the rate held
before it stays a floor. A throttle while holding means the quota dropped: it
measures again. Throttles that answer requests sent before the
limiter reacted belong to the same event and teach nothing new. Time paused on a
``Retry-After`` is not sending time, and while a ramp or probe outruns what the
workers achieve, the rate grows no further than twice the achieved rate.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

import trio

from ._quota import SendTimes, measure_quota


@dataclasses.dataclass(frozen=True)
class RateLimiterStatistics:
    """A snapshot of a rate limiter, for logs and the report.

    Attributes:
        rate: The sending limit now, in requests per second (None: unlimited).
        throttle_events: Throttle events seen (a burst of 429s answering requests sent
            before the limiter reacted counts once).
        quota_rate: The destination's rate as measured, or None before a measurement.
        quota_burst: The destination's burst in requests, as measured, or None.
        holding: Sending at a measured rate (not searching for the quota, nor probing above it).
        lower_bound: The measured rate is only a lower bound of the quota's (a probe
            soon measures the quota itself): not a rate to keep to or to remember.
        shared: Keeping to a quota shared with other shards of the run.
    """

    rate: float | None
    throttle_events: int
    quota_rate: float | None = None
    quota_burst: float | None = None
    holding: bool = False
    lower_bound: bool = False
    shared: bool = False


class RateLimiter(Protocol):
    """What :class:`~etl_core._delivery.Delivery` needs of a client-side rate limiter."""

    @property
    def rate(self) -> float | None:
        """The current sending rate limit in requests per second, or None for unlimited."""

    async def acquire(self) -> None:
        """Wait for the next request's sending slot."""

    def on_success(self, sent_at: float) -> None:
        """Record a delivered request, sent at ``sent_at`` (``trio.current_time()``)."""

    def on_throttle(self, sent_at: float, retry_after: float | None) -> bool:
        """Record a throttled request and the pause it asked for; True if it started a new throttle event."""

    def statistics(self) -> RateLimiterStatistics:
        """Return the current rate and what the limiter has learnt."""

    async def aclose(self) -> None:
        """At the end of the run: leave to whoever shares the quota what this limiter holds."""


@dataclasses.dataclass(frozen=True)
class LimiterTuning:
    """The constants of :class:`AdaptiveRateLimiter`, in one place."""

    #: Hold this share under the measured rate (more when the measurement is coarser)...
    margin: float = 0.01
    #: ...by this share of what a coarse measurement may overstate: one that does pays
    #: one throttle, after which a long hold measures the rate finely, while a margin
    #: for all of it is paid on every second of the run, and most measurements do not.
    overstated_share: float = 0.5
    #: ...but never more than this.
    max_margin: float = 0.1
    #: The margin under a quota remembered from an earlier run.
    remembered_margin: float = 0.03
    #: Seconds of sending held under a measurement without a throttle that prove it...
    proof: float = 5.0
    #: ...and what is taken off one that no hold has proven before it is remembered.
    unproven_margin: float = 0.03
    #: e-folds per second of sending while searching for an unknown quota (x55 a second).
    ramp_growth: float = 4.0
    #: The same while probing above a measured quota (x2 in under 3 s).
    probe_growth: float = 0.25
    #: Seconds of sending at the measured rate before a probe (at most one throttle a minute)...
    probe_every: float = 60.0
    #: ...twice that after each probe that finds the same quota, up to this.
    max_probe_every: float = 600.0
    #: The same for a minute after the quota was seen to drop (until it rises again).
    probe_every_after_move: float = 5.0
    #: ...and at the soonest after a first measurement that is only a lower bound.
    probe_after_lower_bound: float = 2.0
    #: A measurement this far from the last one means the quota moved.
    move: float = 0.2
    #: Successes kept for measuring (their send times).
    tail: int = 4096
    #: Windows tried per measurement, at most.
    windows: int = 400
    #: Successes an episode needs for a measurement (fewer: none, as if nothing got through).
    min_episode: int = 2
    #: A window shorter than this is too noisy to measure a rate from.
    min_window: float = 0.02
    #: Steps in solving the first wave's burst and the rate together, from below. When the
    #: wave took about as long as the measuring window (few workers, or a slow start) the
    #: two cannot be told apart, and solving to the end can land far above the quota:
    #: stopping early errs low, and a probe finds the rest.
    burst_iterations: int = 8
    #: Share of the measured burst the limiter lets out at once.
    burst_share: float = 0.75
    #: Floor of any rate, in requests per second.
    min_rate: float = 0.5


_TUNING = LimiterTuning()


class AdaptiveRateLimiter:
    """A client-side rate limiter that measures the destination's quota from its throttles.

    The model and the phases (first wave, ramp, hold, probes) are described in the
    module's docstring.

    Args:
        max_rate: Fixed ceiling in requests per second, or None.
        adaptive: Learn from throttles; when False only ``max_rate`` applies.
        quota: A quota measured by an earlier run, ``(rate, burst)``: start by holding
            just under it instead of learning it again.
        tuning: The constants.
    """

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        adaptive: bool = True,
        quota: tuple[float, float] | None = None,
        tuning: LimiterTuning = _TUNING,
    ) -> None:
        self.max_rate = max_rate
        self.adaptive = adaptive
        self.tuning = tuning
        #: The destination's measured rate and burst (None until measured).
        self.quota_rate: float | None = None
        self.quota_burst: float | None = None
        self.throttle_events = 0
        self._successes = SendTimes(tuning.tail)
        self._clock = _SendingClock()
        self._pacer = _Pacer()
        self._wave_end: float | None = None  # when the first throttle came, if before any limit
        self._wave = SendTimes(tuning.tail)  # its successes
        self._shared_wave: tuple[int, float] | None = None  # every sender's first wave, counted together
        self._wave_emptied = -math.inf  # the first wave's latest throttled send: the bucket was empty
        self._empty_at: float | None = None  # the last throttled send: the bucket was empty then
        self._episode = 0  # successes sent since then
        self._reacted_at = -math.inf  # when the limiter last reacted to a throttle
        self._last_pause = 1.0  # the pause the last throttle asked for: what a probe costs
        self._base: float | None = None  # the rate at the start of the current phase
        self._growth = 0.0  # 0 while holding
        self._phase_start = 0.0  # sending time when the phase started
        self._next_probe = math.inf  # sending time of the next probe
        self._probe_every = tuning.probe_every
        self._margin = tuning.margin  # doubled by throttles that come while holding
        self._burst_scale = 1.0  # halved by throttles that come right after a pause
        self._held_throttle_at = -math.inf
        self._moved_until = -math.inf
        self._proven: float | None = None  # a rate held under the measurement for `proof` s without a throttle
        self._lower_bound_only = False  # the last measurement may be well under the quota: probe soon, fast
        self._probe_floor: float | None = None  # the rate held without a throttle before the current probe
        if quota is not None:
            # Measured in another run, at another time: held with a wider margin until a
            # probe measures it again.
            self._learnt(*quota, now=0.0, overstated=self.tuning.remembered_margin)

    # -- the rate ------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The current sending rate limit in requests per second, or None for unlimited."""
        base = self._base
        if base is None:
            return self.max_rate
        rate = base
        if self._growth:
            elapsed = self._clock.active(trio.current_time()) - self._phase_start
            rate = base * math.exp(min(20.0, self._growth * elapsed))
            if self._growth < self.tuning.ramp_growth:
                achieved = self._achieved()
                if achieved is not None:
                    # The workers cannot keep up with the probe: growing further would teach nothing.
                    rate = min(rate, max(base, 2.0 * achieved))
        rate = max(self.tuning.min_rate, rate)
        return rate if self.max_rate is None else min(rate, self.max_rate)

    def _allowance(self, rate: float) -> float:
        """How many requests may leave at once: a share of the measured burst."""
        burst = self.quota_burst
        if burst is None or self._growth:
            return 1.0
        if self.throttle_events == 0 and self._clock.active(trio.current_time()) < 1.0:
            # A run that starts from a remembered quota: in its first second each request
            # opens its connection, and requests let out together would arrive bunched.
            return 1.0
        # The measured burst may be a request over (arrival order blurs the first wave).
        return max(1.0, min(self.tuning.burst_share * self._burst_scale * (burst - 1.0), rate))

    async def acquire(self) -> None:
        """Wait for this request's sending slot."""
        self._clock.start(trio.current_time())
        if self.rate is not None:
            await self._pacer.wait(lambda: self.rate, self._allowance)

    # -- feedback ------------------------------------------------------------------

    def on_success(self, sent_at: float) -> None:
        """Record a successful send, made at ``sent_at``."""
        self._successes.add(sent_at)
        if self._empty_at is None or sent_at > self._empty_at:
            self._episode += 1
        wave_end = self._wave_end
        in_wave = (wave_end is None and self._empty_at is None) or (wave_end is not None and sent_at <= wave_end)
        if in_wave:
            self._wave.add(sent_at)
            if wave_end is not None and self.quota_rate is None and self._growth:
                # A late answer to the first wave: the bucket held more than it seemed.
                self._base = max(self._base or 0.0, self._ramp_start())
        if not self._growth and self._base is not None:
            now = trio.current_time()
            if self._clock.active(now) >= self._next_probe:
                # Probe for a raised quota; faster for a minute after it moved.
                held_for = self._held_for(now)
                if held_for >= self.tuning.proof:
                    self._proven = self._base
                self._probe_floor = self._base if held_for >= 1.0 else None
                fast = now < self._moved_until or self._lower_bound_only
                self._phase(self._base, self.tuning.probe_growth * (4.0 if fast else 1.0))

    def on_throttle(self, sent_at: float, retry_after: float | None = None) -> bool:
        """Record a throttled send (made at ``sent_at``) and the pause it asks for.

        Returns:
            True if this started a new throttle event (the limiter reacted to it).
        """
        now = trio.current_time()
        if not self.adaptive:
            # Counted, never learnt from.
            if sent_at > self._reacted_at:
                self.throttle_events += 1
                self._reacted_at = now
            return False
        if retry_after:
            self._clock.pause(now, retry_after)
        first_event = self._empty_at is None and self._base is None
        if first_event or (self._wave_end is not None and sent_at <= self._wave_end):
            self._wave_emptied = max(self._wave_emptied, sent_at)
        if sent_at <= self._reacted_at:
            return False  # sent before the last reaction: the same event
        resumed_after = self._last_pause  # the pause that the current episode began with
        self._last_pause = retry_after or 0.0
        self.throttle_events += 1
        self._reacted_at = now
        since = self._empty_at
        # Successes already in that were sent after this one belong to the next episode.
        tail = self._successes.times
        later = len(tail) - bisect.bisect_right(tail, sent_at)
        episode, self._episode = self._episode - later, later
        self._empty_at = sent_at
        if first_event:
            # The first wave, sent unlimited, ran the bucket dry: it held B + R*T0. Its
            # requests are all those sent before now: over a network their order of
            # arrival is not their order of sending (each opens its own connection).
            self._wave_end = self._empty_at = now
            self._episode = 0
            self._phase(self._ramp_start(), self.tuning.ramp_growth)
            return True
        held = None if self._growth else self.rate
        # Sent while what the limiter let out at once on resuming was still arriving.
        in_burst = held is not None and self._clock.active(sent_at) - self._phase_start <= self._allowance(held) / held
        if held is not None and self.quota_rate is not None and in_burst and resumed_after >= 0.5 and self._allowance(held) >= 2.0:
            # Throttled right after sending resumed: what the limiter lets out at once was
            # more than the bucket held. Let out half as much; the rate stands. (Once it
            # lets out one at a time, a throttle right after a pause is the rate's.)
            self._burst_scale /= 2.0
            self._phase(held, 0.0)
            return True
        measured = self._measure(since, sent_at, episode)
        if measured is None and held is not None and episode and self.quota_rate is not None:
            # One success, then a throttle while holding: too few to measure, but the
            # quota let one through; the hold was a little high (a strict spacing whose
            # requests arrive blurred). The measurement stands, under a wider margin.
            measured = (self.quota_rate, self.quota_burst or 1.0, 0.0, None)
        if measured is None:
            # Nothing got through to measure: the quota dropped hard. Search from half.
            current = held or self.rate or self._achieved() or self.tuning.min_rate
            self._moved_until = now + 60.0
            self._phase(current / 2.0, self.tuning.ramp_growth)
            return True
        rate, burst, overstated, upper = measured
        if self._growth and self._probe_floor is not None:
            # A probe's throttle: the rate held without one before it still stands.
            rate = max(rate, self._probe_floor / (1.0 - self.tuning.margin))
        self._probe_floor = None
        if held is not None:
            # Throttled while holding under the measured rate: it was a little high, or the
            # quota dropped during the episode (then its windows overstate the new rate,
            # and the next episode, all after the drop, measures it). Throttled again
            # within a minute: the margin is too thin (jitter against a strict spacing).
            rate = min(rate, held)
            if now - self._held_throttle_at < 60.0:
                self._margin = min(self.tuning.max_margin, 2.0 * self._margin)
            self._held_throttle_at = now
        first = self.quota_rate is None
        self._learnt(rate, burst, now=now, overstated=self.tuning.overstated_share * overstated)
        self._lower_bound_only = first and upper is not None and upper > rate
        if self._lower_bound_only:
            # Probe once the rate it may leave unused (up to the pace the bucket drained
            # at) has paid for the pause a probe costs.
            unused = 1.0 - rate / (upper or rate)
            wait = max(self.tuning.probe_after_lower_bound, self._last_pause / unused)
            self._next_probe = min(self._next_probe, self._clock.active(now) + wait)
        return True

    # -- measuring -----------------------------------------------------------------

    def _measure(self, since: float | None, empty_at: float, episode: int) -> tuple[float, float, float, float | None] | None:
        """Measure the quota from the ``episode`` successes sent between ``since`` and ``empty_at``."""
        tail = self._successes.times
        times = tail[bisect.bisect_right(tail, since) if since is not None else 0 : bisect.bisect_left(tail, empty_at)]
        if len(times) < self.tuning.min_episode:
            return None  # too few to tell a rate from how their arrivals blurred
        first_wave = None
        wave = self._wave
        if (wave.count or self._shared_wave) and self._wave_end is not None and (self.quota_rate is None or self._lower_bound_only):
            # The burst is measured with the rate, from the first wave, until a
            # measurement pins it down. (A first wave with no success found the bucket
            # emptied by another client: it tells nothing of the burst.)
            if self._shared_wave is not None:
                first_wave = (self._shared_wave, self._shared_wave)
            else:
                first_wave = (self.first_wave(), self._emptied_by())
        burst = self.quota_burst if self.quota_burst is not None else float(first_wave[0][0] if first_wave else len(times))
        return measure_quota(times, since=since, episode=episode, burst=burst, first_wave=first_wave, tuning=self.tuning)

    def first_wave(self) -> tuple[int, float]:
        """This limiter's first wave: its successes sent before its first throttle (all of
        them until one comes), and the seconds from the first of them to the last."""
        wave = self._wave
        return wave.count, (wave.times[-1] - wave.first) if wave.count else 0.0

    def share_first_wave(self, successes: int, spread: float) -> None:
        """Measure the burst from the first wave of every sender of the bucket, counted
        together: ``successes`` sent within ``spread`` seconds (shards that started
        together). A share of it alone reads as a burst of a few and, from there on, as a
        rate over the quota by the rest of the burst over each measurement's window."""
        if successes > self._wave.count:
            self._shared_wave = (successes, spread)

    def _emptied_by(self) -> tuple[int, float]:
        """The first wave's successes sent up to its latest throttled send (the bucket was
        empty when that one arrived), and the seconds from the first of them to that send."""
        count = self._wave.count_until(self._wave_emptied)
        return (count, self._wave_emptied - self._wave.first) if count else (0, 0.0)

    def _ramp_start(self) -> float:
        """Where the search for the rate starts: twice the first wave's successes per second."""
        return 2.0 * max(1, self._wave.count)

    def _learnt(self, rate: float, burst: float, *, now: float, overstated: float = 0.0) -> None:
        previous = self.quota_rate
        if previous is not None and abs(rate / previous - 1.0) > self.tuning.move:
            self._probe_every = self.tuning.probe_every
            # A quota that dropped (another client may have started sending) may come
            # back, which only a probe would see: probe often for a minute. One that rose
            # needs no such watch (should it drop back, a throttle tells at once), and
            # ends the watch of a drop.
            self._moved_until = now + 60.0 if rate < previous else -math.inf
        elif previous is not None and abs(rate / previous - 1.0) <= 2 * self.tuning.margin:
            # A probe found the same quota: wait twice as long before the next one.
            self._probe_every = min(self.tuning.max_probe_every, 2 * self._probe_every)
        self.quota_rate, self.quota_burst = rate, burst
        self._proven = None
        # Hold under the measurement by the margin, or by what it may overstate if more.
        margin = min(self.tuning.max_margin, max(self._margin, overstated))
        self._phase(rate * (1.0 - margin), 0.0)
        tuning = self.tuning
        if now < self._moved_until:
            every = tuning.probe_every_after_move
        else:
            # A coarse measurement is worth improving once the rate it leaves unused has
            # paid for the throttle a probe costs (its pause).
            # (Without a pause, a probe still costs its throttled requests' backoff.)
            every = max(self._last_pause, 0.5) / (margin - tuning.margin) if margin > tuning.margin else math.inf
        self._next_probe = self._clock.active(now) + min(self._probe_every, max(tuning.probe_every_after_move, every))

    def quota_to_remember(self) -> tuple[float, float] | None:
        """The quota to keep for the next run: (rate, burst), or None before a measurement.

        The next run holds ``remembered_margin`` under it: never above a rate this run
        held for ``proof`` seconds without a throttle. A measurement that a short run never
        put to the test is kept with ``unproven_margin`` off; one that is only a lower
        bound is not kept (held by the next run, it could leave most of the quota unused).
        """
        if self.quota_rate is None or self.quota_burst is None or self._lower_bound_only:
            return None
        tuning = self.tuning
        proven = self._base if self._held_for(trio.current_time()) >= tuning.proof else self._proven
        if proven is None:
            return self.quota_rate * (1.0 - tuning.unproven_margin), self.quota_burst
        return min(self.quota_rate, proven / (1.0 - tuning.remembered_margin)), self.quota_burst

    def _held_for(self, now: float) -> float:
        """Seconds of sending in the current hold (0 while searching or probing)."""
        if self._growth or self._base is None or self.quota_rate is None:
            return 0.0
        return self._clock.active(now) - self._phase_start

    def _phase(self, rate: float, growth: float) -> None:
        """Start holding ``rate`` (growth 0), or growing from it."""
        self._base = max(self.tuning.min_rate, rate)
        self._growth = growth
        self._phase_start = self._clock.active(max(trio.current_time(), self._clock.paused_until))

    def _achieved(self) -> float | None:
        """Successes per second over the last second of sending, or None before a second of it."""
        tail = self._successes.times
        now = trio.current_time()
        if self._clock.active(now) - self._phase_start < 1.0 or not tail:
            return None
        return float(len(tail) - bisect.bisect_left(tail, now - 1.0))

    async def aclose(self) -> None:
        """Nothing to leave: this limiter shares its quota with nobody."""

    def statistics(self) -> RateLimiterStatistics:
        """Return the current rate, the throttle events seen and the measured quota."""
        rate = self.rate
        return RateLimiterStatistics(
            rate=None if rate is None or math.isinf(rate) else round(rate, 2),
            throttle_events=self.throttle_events,
            quota_rate=None if self.quota_rate is None else round(self.quota_rate, 2),
            quota_burst=None if self.quota_burst is None else round(self.quota_burst, 1),
            holding=self.quota_rate is not None and not self._growth,
            lower_bound=self._lower_bound_only,
        )


class _SendingClock:
    """Sending time: time since the first send, with the pauses left out."""

    def __init__(self) -> None:
        self._first_send: float | None = None
        self._paused = 0.0  # seconds of pauses so far, counting the part still ahead
        self.paused_until = -math.inf

    def start(self, now: float) -> None:
        """Start counting at the first send (later calls do nothing)."""
        if self._first_send is None:
            self._first_send = now

    def pause(self, now: float, seconds: float) -> None:
        """Leave out a pause of ``seconds`` from ``now`` (pauses that overlap count once)."""
        start, end = max(now, self.paused_until), now + seconds
        if end > start:
            self._paused += end - start
            self.paused_until = end

    def active(self, now: float) -> float:
        """Seconds of sending up to ``now`` (0 before the first send)."""
        start = self._first_send if self._first_send is not None else now
        pending = max(0.0, self.paused_until - now)  # the part of the pauses still ahead
        return max(0.0, now - start - (self._paused - pending))


class _Pacer:
    """GCRA pacing: slots ``1/rate`` apart, up to ``allowance`` of them at once.

    Waiters queue, first come first served. Only the first sleeps on the clock, and at
    most 0.1 s at a time, so a new rate applies to the very next slot.
    """

    def __init__(self) -> None:
        self._last_slot = -math.inf
        self._gate = trio.Lock()

    async def wait(self, rate: Callable[[], float | None], allowance: Callable[[float], float]) -> None:
        """Wait for the next slot at the current ``rate()`` (None: unlimited)."""
        async with self._gate:
            while (current := rate()) is not None:
                now = trio.current_time()
                slot = max(self._last_slot + 1.0 / current, now - (allowance(current) - 1.0) / current)
                if slot <= now:
                    self._last_slot = slot
                    return
                await trio.sleep_until(min(slot, now + 0.1))
