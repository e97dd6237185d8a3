"""Delivery: what the runner does with each classified outcome of a send."""

from __future__ import annotations

import io
import json

import pytest
import trio

from etl_core import Outcome, PermanentError, Record, SendResult, ThrottledError, TransientError
from etl_core._delivery import Delivery
from etl_core.config import RunSettings
from etl_core.logging import configure_logging
from etl_core.pipeline import make_limiter
from etl_core.ratelimit import RateLimiterStatistics
from etl_core.testing import RecordingSink


def delivery(sink: RecordingSink, **run: object) -> Delivery:
    settings = RunSettings.model_validate({"workers": 8, **run})
    return Delivery(sink, settings, limiter=make_limiter(settings))


def record(key: str, line: int = 1) -> Record:
    return Record({"id": key}, line=line, key=key)


async def test_a_success_refunds_the_budget_and_reports_its_status(autojump_clock):
    sink = RecordingSink(failures={"a": [TransientError("blip", status=502), SendResult(status=204)]})
    send = delivery(sink, retry={"backoff_base": 0.01})
    balance = send.budget.balance
    result = await send.deliver(record("a"))
    assert (result.outcome, result.status, result.attempts) == (Outcome.OK, 204, 2)
    stats = send.statistics()
    assert stats.retries == 1 and stats.by_status == {"204": 1, "502": 1}
    assert send.budget.balance == balance - 10 + 1  # the transient retry's cost, then a refund


async def test_a_permanent_error_fails_at_once_with_its_detail(autojump_clock):
    sink = RecordingSink(failures={"a": PermanentError("HTTP 404: contact not found", status=404, detail="{}")})
    result = await delivery(sink).deliver(record("a"))
    assert result.outcome is Outcome.FAILED and not result.retryable
    assert (result.status, result.attempts, result.detail, result.stage) == (404, 1, "{}", "sink")


async def test_retry_after_pauses_every_worker(autojump_clock):
    sink = RecordingSink(failures={"a": [ThrottledError("slow down", status=429, retry_after=2.0)]})
    send = delivery(sink)
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send.deliver, record("a"))
        await trio.sleep(0.5)  # "a" was throttled: "b" waits for the pause too
        nursery.start_soon(send.deliver, record("b", 2))
    assert send.statistics().pauses == 1
    assert trio.current_time() - started >= 2.0
    assert sink.attempts == {"a": 2, "b": 1}


async def test_the_budget_pays_once_per_throttle_event(autojump_clock):
    # Forty requests in flight when the destination throttles: one event, not forty retries' worth.
    throttled = ThrottledError("slow down", status=429, retry_after=1.0)
    sink = RecordingSink(
        RecordingSink.Options(delay=0.05), failures={str(i): [throttled] for i in range(40)}
    )
    send = delivery(sink, workers=40, retry={"budget": 20, "throttled_cost": 5})
    async with trio.open_nursery() as nursery:
        for i in range(40):
            nursery.start_soon(send.deliver, record(str(i), i))
    assert len(sink.received) == 40 and send.budget.exhausted == 0


async def test_records_with_one_key_are_sent_in_input_order(autojump_clock):
    sink = RecordingSink(RecordingSink.Options(delay=0.01))
    send = delivery(sink)
    async with trio.open_nursery() as nursery:
        for line in range(1, 6):
            nursery.start_soon(send.deliver, Record({"id": "k", "n": line}, line=line, key="k"))
            await trio.sleep(0)
    assert [r.data["n"] for r in sink.received] == [1, 2, 3, 4, 5]


async def test_a_dry_run_describes_instead_of_sending(autojump_clock):
    sink = RecordingSink()
    settings = RunSettings()
    result = await Delivery(sink, settings, limiter=make_limiter(settings), dry_run=True).deliver(record("a"))
    assert result.outcome is Outcome.DRY_RUN and result.attempts == 0 and sink.attempts == {}


@pytest.mark.parametrize(("level", "logged"), [("info", [1, 2, 3, 4, 5]), ("debug", list(range(1, 9)))])
def test_a_dry_run_logs_the_first_five_requests_at_info_and_the_rest_at_debug(level: str, logged: list[int]) -> None:
    stream = io.StringIO()
    configure_logging(level=level, fmt="json", stream=stream)
    settings = RunSettings()
    describe = Delivery(RecordingSink(), settings, limiter=make_limiter(settings), dry_run=True).describe
    assert all(describe(record(str(line), line)).outcome is Outcome.DRY_RUN for line in range(1, 9))
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [(line["line"], line["level"]) for line in lines if line["event"] == "dry_run_request"] == [
        (n, "info" if n <= 5 else "debug") for n in logged
    ]


class SendTimes:
    """A rate limiter that only records the send times Delivery reports to it."""

    rate = None

    def __init__(self) -> None:
        self.successes: list[float] = []
        self.throttles: list[float] = []

    async def acquire(self) -> None:
        pass

    def on_success(self, sent_at: float) -> None:
        self.successes.append(sent_at)

    def on_throttle(self, sent_at: float, retry_after: float | None) -> bool:
        self.throttles.append(sent_at)
        return False

    def statistics(self) -> RateLimiterStatistics:
        return RateLimiterStatistics(rate=None, throttle_events=0)


async def test_a_request_refused_for_its_content_still_counts_against_the_quota(autojump_clock):
    # A 400 or a 404 went through the destination's rate limit like a 200: the limiter that
    # measures the quota from the requests that got through must see it. A record the sink
    # refused without sending anything (no status) spent nothing.
    sink = RecordingSink(
        failures={
            "a": PermanentError("HTTP 400: bad email", status=400),
            "b": PermanentError("HTTP 404: contact not found", status=404),
            "c": PermanentError("nothing to update"),
        }
    )
    limiter = SendTimes()
    settings = RunSettings.model_validate({"workers": 8})
    send = Delivery(sink, settings, limiter=limiter)
    for line, key in enumerate("abc", start=1):
        assert (await send.deliver(record(key, line))).outcome is Outcome.FAILED
    assert len(limiter.successes) == 2 and not limiter.throttles


async def test_the_limiter_learns_when_the_sink_says_a_request_left(autojump_clock):
    # A request may leave well after send() was called (a token, a new connection): the
    # quota is measured from when it left, when the sink knows it.
    sink = RecordingSink(
        failures={
            "a": [ThrottledError("slow down", status=429, retry_after=1.0, sent_at=7.0), SendResult(status=200, sent_at=9.0)],
            "b": [SendResult(status=200)],
        }
    )
    limiter = SendTimes()
    send = Delivery(sink, RunSettings.model_validate({"workers": 8}), limiter=limiter)
    await send.deliver(record("a"))
    handed_over = trio.current_time()
    await send.deliver(record("b", 2))
    assert limiter.throttles == [7.0]
    assert limiter.successes[0] == 9.0 and limiter.successes[1] == handed_over


async def test_retrying_counts_the_records_waiting_to_be_sent_again_now(autojump_clock):
    throttled = ThrottledError("slow down", status=429, retry_after=2.0)
    sink = RecordingSink(failures={"a": [throttled], "b": [throttled, throttled]})
    send = delivery(sink)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send.deliver, record("a"))
        await trio.sleep(1.0)  # "a" waits out the pause its 429 asked for
        waiting = send.statistics()
    assert (waiting.in_flight, waiting.retrying, waiting.retries) == (1, 1, 1)
    done = send.statistics()
    assert (done.in_flight, done.retrying, done.retries) == (0, 0, 1)  # retries add up; retrying is now
    with trio.move_on_after(3.0):  # cancelled while waiting for its retry (a stop, the drain deadline)
        await send.deliver(record("b", 2))
    assert send.statistics().retrying == 0


async def test_a_probe_cancelled_while_it_waits_for_the_rate_limit_lets_another_go(autojump_clock):
    gate = trio.Event()

    class GatedLimiter:
        rate = None

        async def acquire(self) -> None:
            await gate.wait()

    send = Delivery(RecordingSink(), RunSettings(), limiter=GatedLimiter())  # type: ignore[arg-type]
    sent_at = trio.current_time()
    await trio.sleep(1)
    for line in range(5):  # the destination is down: one probe at a time
        send.breaker.on_failure(line, sent_at + line, status=503, reason="down", retry_after=None)
    assert send.breaker.is_open
    with trio.move_on_after(30):  # the probe waits for the rate limit, and is cancelled there
        await send._wait_for_slot()
    gate.set()
    with trio.fail_after(30):
        assert await send._wait_for_slot() is True  # the next send is the probe
