"""Parsing of HTTP response headers that tell a client to slow down.

Pure functions, no I/O: sinks call them on every response, so they never raise;
a header that cannot be understood is treated as absent.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import time
from collections.abc import Mapping

from .base import RateLimitHint

# delay-seconds is a non-negative integer (RFC 9110 §10.2.3); decimals are tolerated.
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
# A ``Reset`` value above this is a unix timestamp rather than a number of seconds.
_EPOCH_THRESHOLD = 1e9


def parse_retry_after(
    value: str | None,
    *,
    date: str | None = None,
    now: float | None = None,
    maximum: float = 300.0,
) -> float | None:
    """Return the delay a ``Retry-After`` header asks for, in seconds.

    Both forms of RFC 9110 are understood: delay-seconds (``120``; decimals are
    tolerated) and an HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime
    forms). A date is measured against the response's own ``Date`` header when one
    is given, so a skewed client clock does not matter; otherwise against ``now``.

    Args:
        value: The ``Retry-After`` header value, or ``None`` when absent.
        date: The response's ``Date`` header, if any.
        now: The current unix time; defaults to :func:`time.time`.
        maximum: Upper bound of the result, so a hostile or broken server cannot
            stall a run for days.

    Returns:
        The delay, clamped to ``[0, maximum]``, or ``None`` when the header is
        absent or unparseable.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    try:
        if _DELAY_SECONDS.fullmatch(value):
            delay = float(value)
        else:
            target = _parse_http_date(value)
            if target is None:
                return None
            reference = _parse_http_date(date) if date else None
            if reference is None:
                reference = time.time() if now is None else now
            delay = target - reference
        return _clamp(delay, maximum)
    except Exception:  # noqa: BLE001 - a header must never break a send
        return None


def parse_rate_limit(headers: Mapping[str, str], *, now: float | None = None) -> RateLimitHint | None:
    """Read a server's rate-limit headers.

    Understands, in order of preference: the IETF ``RateLimit-Limit`` /
    ``RateLimit-Remaining`` / ``RateLimit-Reset`` fields; the combined
    ``RateLimit: limit=100, remaining=50, reset=5`` field (and the later draft's
    ``RateLimit: "default";r=50;t=5`` with ``RateLimit-Policy: "default";q=100``);
    and the common ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` fields.
    A reset above 1e9 is taken as a unix timestamp and converted to seconds from now.

    Args:
        headers: The response headers; names are matched case-insensitively.
        now: The current unix time, for timestamp resets; defaults to :func:`time.time`.

    Returns:
        The hint, or ``None`` when the response carries no usable rate-limit header.
    """
    try:
        fields = {str(name).lower(): str(text) for name, text in headers.items()}
        limit = _number(fields.get("ratelimit-limit"))
        remaining = _number(fields.get("ratelimit-remaining"))
        reset = _number(fields.get("ratelimit-reset"))
        if "ratelimit" in fields:
            params = _params(fields["ratelimit"])
            limit = limit if limit is not None else _number(params.get("limit"))
            remaining = remaining if remaining is not None else _number(params.get("remaining", params.get("r")))
            reset = reset if reset is not None else _number(params.get("reset", params.get("t")))
        if limit is None and "ratelimit-policy" in fields:
            limit = _number(_params(fields["ratelimit-policy"]).get("q"))
        limit = limit if limit is not None else _number(fields.get("x-ratelimit-limit"))
        remaining = remaining if remaining is not None else _number(fields.get("x-ratelimit-remaining"))
        reset = reset if reset is not None else _number(fields.get("x-ratelimit-reset"))
        if reset is not None and reset > _EPOCH_THRESHOLD:
            reset = max(0.0, reset - (time.time() if now is None else now))
        if limit is None and remaining is None and reset is None:
            return None
        return RateLimitHint(limit=limit, remaining=remaining, reset=reset)
    except Exception:  # noqa: BLE001 - a header must never break a send
        return None


def _parse_http_date(text: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text.strip())
    except Exception:  # noqa: BLE001 - email.utils raises several types on junk
        return None
    if parsed.tzinfo is None:
        # HTTP dates are always GMT; asctime and "-0000" dates parse as naive.
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _clamp(delay: float, maximum: float) -> float | None:
    if math.isnan(delay):
        return None
    return min(max(delay, 0.0), max(maximum, 0.0))


def _number(text: str | None) -> float | None:
    """Return the first item of a possibly list-valued numeric field (``100, 100;w=60``)."""
    if text is None:
        return None
    first = text.split(",", 1)[0].split(";", 1)[0].strip()
    if not _DELAY_SECONDS.fullmatch(first):
        return None
    number = float(first)
    return number if math.isfinite(number) else None


def _params(text: str) -> dict[str, str]:
    """Collect ``key=value`` pairs of a combined field, first occurrence winning."""
    params: dict[str, str] = {}
    for item in re.split(r"[,;]", text):
        key, sep, value = item.partition("=")
        if sep:
            params.setdefault(key.strip().lower(), value.strip().strip('"'))
    return params
