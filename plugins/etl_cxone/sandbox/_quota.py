"""The sandbox's rate limit in its shapes, the schedule that moves it, and the answer to a refusal."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Protocol

from ._http import Headers, Response, http_date, json_response
from ._settings import SandboxSettings

__all__ = ["FixedWindow", "Limiter", "Quota", "RateSchedule", "SlidingWindow", "TokenBucket", "throttled"]

# Float noise must neither refuse a request sent exactly when told nor make an exact wait
# (e.g. 0.01 s) one unit longer.
_EPSILON = 1e-9


def _ceil(value: float) -> int:
    return math.ceil(value - _EPSILON)


def _number_header(value: float) -> bytes:
    return (f"{value:.0f}" if value == int(value) else f"{value:g}").encode()


class Limiter(Protocol):
    """One shape of rate limit."""

    def take(self, now: float) -> float:
        """Admit one request; returns 0 when admitted, else the seconds until one would be."""
        ...

    def headers(self, now: float) -> Headers:
        """``X-RateLimit-*`` headers describing the limit after the last take()."""
        ...


class TokenBucket:
    """Token bucket: ``rate`` tokens per second, at most ``capacity``, starting full."""

    __slots__ = ("capacity", "limit_header", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.stamp = now
        self.limit_header = _number_header(rate)

    def take(self, now: float) -> float:
        elapsed = now - self.stamp
        tokens = self.tokens
        if elapsed > 0:
            tokens += elapsed * self.rate
            if tokens > self.capacity:
                tokens = self.capacity
            self.stamp = now
        if tokens >= 1.0 - _EPSILON:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate

    def headers(self, now: float) -> Headers:
        # Limit: requests per second; reset: seconds until the bucket is full again.
        return [
            (b"x-ratelimit-limit", self.limit_header),
            (b"x-ratelimit-remaining", b"%d" % int(self.tokens)),
            (b"x-ratelimit-reset", b"%d" % _ceil((self.capacity - self.tokens) / self.rate)),
        ]


def _window_limit(rate: float, window: float) -> int:
    """Requests a window admits: ``rate * window``, at least 1."""
    return max(1, int(rate * window + _EPSILON))


class FixedWindow:
    """``rate * window`` requests per window of ``window`` seconds; windows follow each other from ``now``."""

    __slots__ = ("count", "end", "limit", "window")

    def __init__(self, rate: float, window: float, now: float) -> None:
        self.limit = _window_limit(rate, window)
        self.window = window
        self.end = now + window
        self.count = 0

    def take(self, now: float) -> float:
        if now >= self.end - _EPSILON:
            self.end += (math.floor((now - self.end + _EPSILON) / self.window) + 1) * self.window
            self.count = 0
        if self.count < self.limit:
            self.count += 1
            return 0.0
        return self.end - now

    def headers(self, now: float) -> Headers:
        # Limit: requests per window; reset: seconds until the window ends.
        return [
            (b"x-ratelimit-limit", b"%d" % self.limit),
            (b"x-ratelimit-remaining", b"%d" % (self.limit - self.count)),
            (b"x-ratelimit-reset", b"%d" % _ceil(self.end - now)),
        ]


class SlidingWindow:
    """Sliding log: at most ``rate * window`` requests admitted in any trailing ``window`` seconds."""

    __slots__ = ("admitted", "limit", "window")

    def __init__(self, rate: float, window: float) -> None:
        self.limit = _window_limit(rate, window)
        self.window = window
        self.admitted: deque[float] = deque()

    def take(self, now: float) -> float:
        admitted = self.admitted
        cutoff = now - self.window + _EPSILON
        while admitted and admitted[0] <= cutoff:
            admitted.popleft()
        if len(admitted) < self.limit:
            admitted.append(now)
            return 0.0
        return admitted[0] + self.window - now

    def headers(self, now: float) -> Headers:
        # Limit: requests per window; reset: seconds until the oldest admitted request leaves it.
        admitted = self.admitted
        reset = _ceil(admitted[0] + self.window - now) if admitted else 0
        return [
            (b"x-ratelimit-limit", b"%d" % self.limit),
            (b"x-ratelimit-remaining", b"%d" % (self.limit - len(admitted))),
            (b"x-ratelimit-reset", b"%d" % reset),
        ]


class Quota:
    """The rate limit the settings describe, with the penalty for requests sent while refused.

    The limiter is built on first use and built afresh (full again) whenever ``rate_limit``,
    ``burst``, ``limit_shape`` or ``window`` changes.
    """

    __slots__ = ("_blocked_until", "_burst", "_limiter", "_rate", "_shape", "_window")

    def __init__(self) -> None:
        self._limiter: Limiter | None = None
        self._rate: float | None = None
        self._burst: float | None = None
        self._shape = ""
        self._window = 0.0
        self._blocked_until = 0.0

    def _build(self, settings: SandboxSettings, rate: float, now: float) -> Limiter:
        self._rate, self._burst, self._shape, self._window = rate, settings.burst, settings.limit_shape, settings.window
        self._blocked_until = 0.0
        if self._shape == "fixed_window":
            limiter: Limiter = FixedWindow(rate, self._window, now)
        elif self._shape == "sliding_window":
            limiter = SlidingWindow(rate, self._window)
        else:
            burst = self._burst
            limiter = TokenBucket(rate, burst if burst is not None else max(1.0, rate / 10.0), now)
        self._limiter = limiter
        return limiter

    def take(self, settings: SandboxSettings, rate: float, now: float) -> float:
        """Admit one API request.

        Args:
            settings: The live settings.
            rate: ``settings.rate_limit`` (not None).
            now: The sandbox clock.

        Returns:
            0 when admitted, else the seconds until a request would be.
        """
        limiter = self._limiter
        if (
            limiter is None
            or rate != self._rate
            or settings.burst != self._burst
            or settings.limit_shape != self._shape
            or settings.window != self._window
        ):
            limiter = self._build(settings, rate, now)
        if now < self._blocked_until:
            wait = self._blocked_until - now
        else:
            wait = limiter.take(now)
            if wait <= 0.0:
                return 0.0
        penalty = settings.throttle_penalty
        if penalty > 0.0:
            # Hammering extends the refusal: nothing is admitted before now + penalty.
            until = now + max(wait, penalty)
            if until > self._blocked_until:
                self._blocked_until = until
            wait = self._blocked_until - now
        return wait

    def headers(self, now: float) -> Headers:
        """``X-RateLimit-*`` headers after the last :meth:`take`."""
        assert self._limiter is not None
        return self._limiter.headers(now)


class RateSchedule:
    """Applies ``rate_schedule``: each ``(seconds, rate)`` entry sets ``rate_limit`` once, that long
    after the first API request. A new schedule, or a reset of the statistics, starts it over."""

    __slots__ = ("_entries", "_next")

    def __init__(self) -> None:
        self._entries: tuple[tuple[float, float], ...] | None = None
        self._next = 0

    def restart(self) -> None:
        """Start over at the next API request (the statistics were reset)."""
        self._entries = None

    def apply(self, settings: SandboxSettings, origin: float, now: float) -> None:
        """Set ``rate_limit`` from the entries whose time has come.

        Args:
            settings: The live settings.
            origin: The sandbox clock at the first API request.
            now: The sandbox clock.
        """
        entries = settings.rate_schedule
        if entries is not self._entries:
            self._entries, self._next = entries, 0
        index = self._next
        while index < len(entries) and now - origin >= entries[index][0] - _EPSILON:
            settings.rate_limit = entries[index][1]
            index += 1
        self._next = index


_BODIES = {
    429: {"error": "rate_limited", "message": "rate limit exceeded, retry later"},
    503: {"error": "service_unavailable", "message": "the service is overloaded, retry later"},
}


def throttled(form: str, status: int, wait: float, headers: Headers) -> Response:
    """The answer to a refused request: ``status`` (429 or 503) with a ``Retry-After`` of ``form``.

    Args:
        form: ``seconds`` (whole seconds, at least 1), ``http-date``, ``none``, ``milliseconds``
            (``retry-after-ms``, at least 1) or ``fractional`` (seconds with 3 decimals, at
            least ``0.001``). Every form rounds up, so a client that waits as told is admitted.
        status: 429 or 503.
        wait: Seconds until the request would be admitted.
        headers: Headers to send; the retry header is appended.

    Returns:
        The response.
    """
    wall = time.time()
    if form == "seconds":
        headers.append((b"retry-after", b"%d" % max(1, _ceil(wait))))
    elif form == "http-date":
        # The Date header is truncated to the second; count from there so that
        # Retry-After minus Date is never shorter than the real wait.
        second = int(wall)
        wall = float(second)
        at = second + max(1, _ceil((time.time() - second) + wait))
        headers.append((b"retry-after", http_date(at)))
    elif form == "milliseconds":
        headers.append((b"retry-after-ms", b"%d" % max(1, _ceil(wait * 1000))))
    elif form == "fractional":
        milliseconds = max(1, _ceil(wait * 1000))
        headers.append((b"retry-after", b"%d.%03d" % divmod(milliseconds, 1000)))
    return json_response(status, _BODIES[status], headers, date=wall)
