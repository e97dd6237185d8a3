"""The measuring helpers of the rate limiter."""

from __future__ import annotations

from etl_core._quota import SendTimes


def test_send_times_stay_bounded_and_still_count_what_they_forgot() -> None:
    times = SendTimes(keep=100)
    for i in range(10_000):
        times.add(i * 0.001)
    assert len(times.times) <= 200 and times.count == 10_000 and times.first == 0.0
    assert times.count_until(9.9995) == 10_000  # counted from the kept ones and the total
    assert times.count_until(9.9) == 9_901
    assert times.count_until(1.0) is None  # long forgotten: no count rather than a wrong one

