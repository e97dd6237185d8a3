"""The sandbox's rate limit, and the answer to a request it refuses."""

from __future__ import annotations

import math
import time

from ._http import Response, http_date, json_response

__all__ = ["TokenBucket", "too_many_requests"]


class TokenBucket:
    """Token bucket: ``rate`` tokens per second, at most ``capacity``, starting full."""

    __slots__ = ("capacity", "limit_header", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.stamp = now
        self.limit_header = (f"{rate:.0f}" if rate == int(rate) else f"{rate:g}").encode()

    def take(self, now: float) -> float:
        """Take one token; returns 0 on success, else the seconds until one is available."""
        elapsed = now - self.stamp
        tokens = self.tokens
        if elapsed > 0:
            tokens += elapsed * self.rate
            if tokens > self.capacity:
                tokens = self.capacity
            self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``X-RateLimit-*`` headers describing the bucket after the last take()."""
        reset = math.ceil((self.capacity - self.tokens) / self.rate)
        return [
            (b"x-ratelimit-limit", self.limit_header),
            (b"x-ratelimit-remaining", b"%d" % int(self.tokens)),
            (b"x-ratelimit-reset", b"%d" % reset),
        ]


def too_many_requests(form: str, wait: float, headers: list[tuple[bytes, bytes]]) -> Response:
    """The ``429`` answer to a refused request.

    Args:
        form: Form of the ``Retry-After`` header: ``seconds``, ``http-date`` or ``none``.
        wait: Seconds until the request would be admitted.
        headers: Headers to send; ``Retry-After`` is appended.

    Returns:
        The response.
    """
    wall = time.time()
    if form == "seconds":
        headers.append((b"retry-after", b"%d" % max(1, math.ceil(wait))))
    elif form == "http-date":
        # The Date header is truncated to the second; count from there so that
        # Retry-After minus Date is never shorter than the real wait.
        second = int(wall)
        wall = float(second)
        at = second + max(1, math.ceil((time.time() - second) + wait))
        headers.append((b"retry-after", http_date(at)))
    return json_response(
        429,
        {"error": "rate_limited", "message": "rate limit exceeded, retry later"},
        headers,
        date=wall,
    )
