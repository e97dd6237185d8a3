"""Tests of the Retry-After and rate-limit header parsers."""

from __future__ import annotations

import email.utils
import math
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl_core._headers import parse_rate_limit, parse_retry_after
from etl_core.base import RateLimitHint

NOW = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0300", 300.0),
        ("301", 300.0),
        ("99999999999999999999999999", 300.0),
    ],
)
def test_delay_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "  ", "soon", "-5", "+5", "1e3", "nan", "inf", "1,5", "٣", "12 s", "Sun, 06 Nov 1994"],
)
def test_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:50:07 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:50:07 GMT",  # RFC 850
        "Sun Nov  6 08:50:07 1994",  # asctime
    ],
)
def test_http_date_forms(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 30.0


def test_http_date_measured_against_server_date_not_local_clock() -> None:
    # The client clock is an hour fast; the server's own Date header is what counts.
    delay = parse_retry_after(
        "Sun, 06 Nov 1994 08:49:47 GMT", date="Sun, 06 Nov 1994 08:49:37 GMT", now=NOW + 3600
    )
    assert delay == 10.0


def test_unparseable_server_date_falls_back_to_now() -> None:
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", date="yesterday", now=NOW) == 10.0


def test_http_date_in_the_past_is_zero_and_far_future_is_clamped() -> None:
    assert parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=NOW, maximum=60) == 60.0


def test_http_date_defaults_to_current_time() -> None:
    future = email.utils.formatdate(timeval=time.time() + 100, usegmt=True)
    delay = parse_retry_after(future)
    assert delay is not None and 95 <= delay <= 100


@given(value=st.one_of(st.none(), st.text()), date=st.one_of(st.none(), st.text()))
def test_random_text_never_raises(value: str | None, date: str | None) -> None:
    result = parse_retry_after(value, date=date, now=NOW)
    assert result is None or 0.0 <= result <= 300.0


@given(
    delay=st.one_of(
        st.integers(min_value=0, max_value=10**30).map(str),
        st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda f: f"{f:.3f}"),
        st.datetimes(timezones=st.none()).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    ),
    maximum=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    now=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_valid_values_stay_within_bounds(delay: str, maximum: float, now: float) -> None:
    result = parse_retry_after(delay, now=now, maximum=maximum)
    assert result is not None
    assert 0.0 <= result <= maximum


# --- rate-limit headers ---------------------------------------------------------


def test_ietf_separate_fields() -> None:
    hint = parse_rate_limit({"RateLimit-Limit": "100", "RateLimit-Remaining": "50", "RateLimit-Reset": "5"})
    assert hint == RateLimitHint(limit=100, remaining=50, reset=5)


def test_ietf_limit_with_quota_policy_list() -> None:
    hint = parse_rate_limit({"ratelimit-limit": "100, 100;w=10", "ratelimit-remaining": "3"})
    assert hint == RateLimitHint(limit=100, remaining=3, reset=None)


def test_combined_field() -> None:
    assert parse_rate_limit({"RateLimit": "limit=100, remaining=50, reset=5"}) == RateLimitHint(100, 50, 5)


def test_structured_field_with_policy() -> None:
    hint = parse_rate_limit({"RateLimit": '"default";r=7;t=30', "RateLimit-Policy": '"default";q=100;w=60'})
    assert hint == RateLimitHint(limit=100, remaining=7, reset=30)


def test_x_ratelimit_with_delta_reset() -> None:
    hint = parse_rate_limit({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"})
    assert hint == RateLimitHint(limit=60, remaining=0, reset=12)


def test_x_ratelimit_with_epoch_reset() -> None:
    hint = parse_rate_limit({"X-RateLimit-Reset": str(int(1.7e9) + 42)}, now=1.7e9)
    assert hint == RateLimitHint(reset=42)
    past = parse_rate_limit({"X-RateLimit-Reset": str(int(1.7e9) - 42)}, now=1.7e9)
    assert past == RateLimitHint(reset=0)


def test_ietf_fields_win_over_x_fields() -> None:
    hint = parse_rate_limit({"RateLimit-Remaining": "5", "X-RateLimit-Remaining": "9", "X-RateLimit-Limit": "10"})
    assert hint == RateLimitHint(limit=10, remaining=5)


def test_httpx_headers_are_case_insensitive() -> None:
    hint = parse_rate_limit(httpx.Headers({"RATELIMIT-REMAINING": "4"}))
    assert hint == RateLimitHint(remaining=4)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/json"},
        {"RateLimit-Limit": "lots"},
        {"X-RateLimit-Remaining": "-1"},
        {"RateLimit": "garbage"},
        {"RateLimit-Reset": "inf"},
    ],
)
def test_no_usable_header_is_none(headers: dict[str, str]) -> None:
    assert parse_rate_limit(headers) is None


@given(st.dictionaries(st.sampled_from(
    ["RateLimit", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy",
     "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Other"]
) | st.text(), st.text()))
def test_random_rate_limit_headers_never_raise(headers: dict[str, str]) -> None:
    hint = parse_rate_limit(headers)
    if hint is not None:
        for value in (hint.limit, hint.remaining, hint.reset):
            assert value is None or (math.isfinite(value) and value >= 0)


def test_broken_mapping_never_raises() -> None:
    class Broken(dict):
        def items(self):  # type: ignore[override]
            raise RuntimeError("boom")

    assert parse_rate_limit(Broken()) is None
