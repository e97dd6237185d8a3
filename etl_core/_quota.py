"""Measuring a token bucket's rate and burst from the send times of its successes.

The maths behind :class:`~etl_core.ratelimit.AdaptiveRateLimiter`'s measurements; the
model is described in :mod:`etl_core.ratelimit`.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ratelimit import LimiterTuning


def measure_quota(
    times: list[float],
    *,
    since: float | None,
    episode: int,
    burst: float,
    first_wave: tuple[tuple[int, float], tuple[int, float]] | None,
    tuning: LimiterTuning,
) -> tuple[float, float, float, float | None] | None:
    """Measure a token bucket's rate (and burst) from the send times of its successes.

    Args:
        times: The send times of the successes, sorted: the last ``len(times)`` of
            the episode's.
        since: When the bucket was last seen empty (the throttle that began the
            episode), or None.
        episode: Successes sent in the episode (some may no longer be in ``times``).
        burst: The burst as known so far.
        first_wave: For the first wave (sent unlimited until the first throttle), counted
            two ways: its successes, and those sent up to its latest throttled send;
            each with the seconds from the first of them to the last (or to that send).

    Returns:
        (R, B, overstated, upper): the rate, the burst, by how much of R the rate may be
        overstated (when the burst may be a request too small), and, when R is only a
        lower bound, the most R can be (else None). R is a lower bound only when it
        came from the successes since the bucket was last empty, across a pause during
        which the bucket may have filled and thrown tokens away, or when the first wave
        took as long as half the window (sent at the window's pace, it cannot tell B
        from R); the bucket then drained at the pace the successes were sent, so R was
        below that pace. None when nothing measures a rate.
    """
    rate, window, from_empty = _lower_bound(times, since, episode, burst, tuning)
    spread = 0.0
    if first_wave is not None:
        # The burst and the rate together: the first wave emptied a full bucket, and
        # the rate let more through while it was being sent: B >= N - R*T for both counts
        # (equal when the senders kept the bucket from filling up). The second holds the
        # burst down when the wave's last sends found the bucket refilled (a sender that
        # waited for answers): the first alone then settles on a burst of one and a rate
        # far above the quota. Solved by iterating from below (see ``burst_iterations``).
        (successes, spread), (emptied_by, emptied_in) = first_wave
        spread, emptied_in = max(0.0, spread), max(0.0, emptied_in)
        for _ in range(tuning.burst_iterations):
            burst = max(1.0, successes - rate * spread, emptied_by - rate * emptied_in)
            previous = rate
            rate, window, from_empty = _lower_bound(times, since, episode, burst, tuning)
            if rate - previous <= 1e-3 * rate:
                break
    if rate <= 0:
        return None
    # The measurement moves by 1/T per request of error in the burst. A first wave
    # that took a while (few workers) tells the burst to about a request; one sent
    # all at once tells it exactly, and so does an earlier measurement.
    burst_error = 1.0 if spread > 0.001 else 0.0
    idle = times[0] - since if since is not None else 0.0
    upper = None
    paced = len(times) > 1 and times[-1] > times[0]
    if paced and ((from_empty and idle > 0.25 * window) or (first_wave is not None and spread > 0.5 * window)):
        # A lower bound: the bucket filled during a pause, or the first wave took as long
        # as the window (few workers send both at one pace: they cannot tell B from R).
        upper = (len(times) - 1) / (times[-1] - times[0])  # the pace: the bucket drained at it
    return rate, burst, burst_error / (rate * window), upper


def _lower_bound(
    times: list[float], since: float | None, episode: int, burst: float, tuning: LimiterTuning
) -> tuple[float, float, bool]:
    """The largest lower bound of R that the successes ``times`` (the last of ``episode``) give.

    After the i-th success the bucket held at most ``burst - 1`` tokens, so the N
    successes sent after it, up to the j-th, show R >= (N - burst + 1) / T.
    From an empty bucket (``since``, a throttle) nothing was in hand: R >= N / T.

    Returns:
        The bound, the length T of the window that gave it, and whether that window
        starts at the empty bucket (``since``).
    """
    count = len(times)
    skipped = episode - count  # sent in the episode, no longer in the tail
    min_window = tuning.min_window
    best, best_window, from_empty = 0.0, min_window, False
    stride = 1 + count // tuning.windows
    for j in range(count - 1, max(-1, count - 4), -1):
        last = times[j]
        if since is not None:
            window = max(last - since, min_window)
            if (bound := (skipped + j + 1) / window) > best:
                best, best_window, from_empty = bound, window, True
        for i in range(0, j, stride):
            # Successes sent strictly after the i-th (requests sent at the same instant
            # reach the destination together: none of them is "after" another).
            after = j + 1 - bisect.bisect_right(times, times[i], i, j + 1)
            window = max(last - times[i], min_window)
            if (bound := (after - burst + 1) / window) > best:
                best, best_window, from_empty = bound, window, False
    return best, best_window, from_empty


class SendTimes:
    """Send times, sorted: the latest ``keep`` at least, with how many there were and the first."""

    def __init__(self, keep: int) -> None:
        self.times: list[float] = []
        self.count = 0
        self.first = math.inf
        self._keep = keep
        self._forgotten = -math.inf  # the latest send time no longer kept

    def add(self, sent_at: float) -> None:
        times = self.times
        if not times or sent_at >= times[-1]:
            times.append(sent_at)
        else:
            bisect.insort(times, sent_at)
        self.count += 1
        self.first = min(self.first, sent_at)
        if len(times) > 2 * self._keep:
            self._forgotten = times[self._keep - 1]
            del times[: self._keep]

    def count_until(self, moment: float) -> int | None:
        """How many were sent at ``moment`` or before, or None if some of those are no longer kept."""
        if moment < self._forgotten:
            return None
        return self.count - (len(self.times) - bisect.bisect_right(self.times, moment))
