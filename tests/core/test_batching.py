"""Batch delivery: grouping, per-record outcomes, splitting refused batches, retries, resume."""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from etl_core import (
    Batching,
    BatchRejected,
    FatalError,
    Outcome,
    PermanentError,
    PluginError,
    Record,
    RecordError,
    SendResult,
    Sink,
    ThrottledError,
    TransientError,
)
from etl_core._batching import BatchDelivery, make_delivery
from etl_core._delivery import Delivery
from etl_core._outcome import Result
from etl_core.config import RunSettings
from etl_core.pipeline import make_limiter
from etl_core.ratelimit import AdaptiveRateLimiter, RateLimiterStatistics
from etl_core.testing import ListSource, plugin_of, run_pipeline_from_dict

ROOT = Path(__file__).resolve().parents[2]


class BulkSink(Sink):
    """A bulk endpoint in process: one outcome per record, like an address book's ``entryResults``.

    Args:
        max_records: Records per request.
        max_bytes: Bound on a request's bytes (``batch_size_of``: the record's ``size``
            field when it has one).
        poison: Keys whose presence makes the server refuse a whole request (HTTP 400).
        bad: Keys the server refuses one by one (its per-entry error).
        flaky: Key -> times the server answers that entry "try again" first.
        throttles: Requests answered 429 (with ``Retry-After: 1``) before any is served.
        answers: Replace the answer to every request (to test malformed answers).
    """

    name = "bulk"

    def __init__(
        self,
        *,
        max_records: int = 8,
        max_bytes: int | None = None,
        poison: Sequence[str] = (),
        bad: Sequence[str] = (),
        flaky: dict[str, int] | None = None,
        throttles: int = 0,
        answers: Any = None,
    ) -> None:
        super().__init__(self.Options())
        self._batching = Batching(max_records, max_bytes)
        self.poison, self.bad = set(poison), set(bad)
        self.flaky = dict(flaky or {})
        self.throttles = throttles
        self.answers = answers
        self.requests: list[list[str]] = []  # the keys of every request, in order
        self.delivered: collections.Counter[str] = collections.Counter()

    def batching(self) -> Batching | None:
        return self._batching

    def batch_size_of(self, record: Record) -> int:
        return int(record.data.get("size", 1))

    async def send_batch(self, records: Sequence[Record]) -> Sequence[SendResult | RecordError | None]:
        keys = [str(record.key) for record in records]
        self.requests.append(keys)
        await trio.sleep(0.01)
        if self.throttles:
            self.throttles -= 1
            raise ThrottledError("HTTP 429", status=429, retry_after=1.0)
        poisoned = [key for key in keys if key in self.poison]
        if poisoned:
            raise BatchRejected(f"HTTP 400: entry {poisoned[0]} is malformed", status=400, detail=f'{{"bad": "{poisoned[0]}"}}')
        if self.answers is not None:
            return self.answers
        outcomes: list[SendResult | RecordError | None] = []
        for key in keys:
            if key in self.bad:
                outcomes.append(PermanentError(f"entry {key}: invalid phone", status=422))
            elif self.flaky.get(key):
                self.flaky[key] -= 1
                outcomes.append(TransientError(f"entry {key}: busy", status=503))
            else:
                self.delivered[key] += 1
                outcomes.append(SendResult(status=200))
        return outcomes


def records(count: int, **data: Any) -> list[Record]:
    return [Record({"id": f"k{i}", **data}, line=i + 2, key=f"k{i}") for i in range(count)]


def batch_delivery(sink: Sink, **run: Any) -> BatchDelivery:
    settings = RunSettings.model_validate({"workers": 4, **run})
    delivery = make_delivery(sink, settings, limiter=make_limiter(settings), dry_run=False, on_unavailable=lambda reason: None)
    assert isinstance(delivery, BatchDelivery)
    return delivery


async def deliver(delivery: BatchDelivery, batch: list[Record]) -> dict[str, Result]:
    booked: dict[str, Result] = {}

    def book(record: Record, result: Result) -> None:
        assert record.key not in booked, f"{record.key} booked twice"
        booked[str(record.key)] = result

    assert await delivery.deliver_batch(batch, book)
    assert set(booked) == {record.key for record in batch}
    return booked


# -- one batch, through BatchDelivery --------------------------------------------------


async def test_each_record_gets_its_own_outcome_from_one_request(autojump_clock):
    sink = BulkSink(bad=["k2", "k5"])
    delivery = batch_delivery(sink)
    booked = await deliver(delivery, records(8))
    assert sink.requests == [[f"k{i}" for i in range(8)]]
    assert {key for key, result in booked.items() if result.outcome is Outcome.OK} == {"k0", "k1", "k3", "k4", "k6", "k7"}
    bad = booked["k5"]
    assert (bad.outcome, bad.status, bad.reason, bad.retryable, bad.attempts) == (
        Outcome.FAILED, 422, "entry k5: invalid phone", False, 1,
    )
    stats = delivery.statistics()
    assert (stats.attempts, stats.by_status, stats.batch_splits) == (1, {"200": 6, "422": 2}, 0)
    assert stats.requests()["batch_splits"] == 0
    assert (stats.in_flight, stats.retrying) == (0, 0)


class CountingLimiter:
    """A rate limiter that counts the sending slots taken and the answers reported."""

    rate = None

    def __init__(self) -> None:
        self.acquired = 0
        self.successes: list[float] = []

    async def acquire(self) -> None:
        self.acquired += 1

    def on_success(self, sent_at: float) -> None:
        self.successes.append(sent_at)

    def on_throttle(self, sent_at: float, retry_after: float | None) -> bool:
        return True

    def statistics(self) -> RateLimiterStatistics:
        return RateLimiterStatistics(rate=None, throttle_events=0)


async def test_a_batch_is_one_request_to_the_limiter_and_the_concurrency(autojump_clock):
    sink = BulkSink(max_records=8, bad=["k1"])
    limiter = CountingLimiter()
    delivery = BatchDelivery(sink, RunSettings.model_validate({"workers": "auto"}), Batching(8), limiter=limiter)
    answers: list[int] = []
    on_answer = delivery.concurrency.on_answer

    def spy(rtt: float, records: int = 1) -> None:
        answers.append(records)
        on_answer(rtt, records)

    delivery.concurrency.on_answer = spy  # type: ignore[method-assign]
    for start in (0, 8, 16):
        await deliver(delivery, records(24)[start : start + 8])
    assert limiter.acquired == len(limiter.successes) == len(answers) == 3 == len(sink.requests)
    assert answers == [8, 8, 8]  # the concurrency knows how many records each request carried


class ReadyRecords:
    """The reader's side the workers see: records ready to take, in order."""

    def __init__(self, ready: list[Record]) -> None:
        self.queue = collections.deque(ready)

    async def take(self) -> Record | None:
        await trio.lowlevel.checkpoint()
        return self.queue.popleft() if self.queue else None

    def take_ready(self, accept: Any) -> Record | None:
        return self.queue.popleft() if self.queue and accept(self.queue[0]) else None

    @contextlib.contextmanager
    def until_exhausted(self) -> Iterator[trio.CancelScope]:
        with trio.CancelScope() as scope:
            yield scope


async def test_a_batch_is_taken_once_the_rate_limit_lets_its_request_go(autojump_clock):
    gate = trio.Event()

    class GatedLimiter(CountingLimiter):
        async def acquire(self) -> None:
            await gate.wait()
            self.acquired += 1

    delivery = BatchDelivery(BulkSink(), RunSettings(), Batching(8), limiter=GatedLimiter())
    reader = ReadyRecords(records(3))
    taken: list[Any] = []

    async def take() -> None:
        taken.append(await delivery.take(reader))  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take)
        await trio.sleep(1.0)
        reader.queue.extend(records(10)[3:])  # read while the request waited for its slot
        gate.set()
    [(batch, probe)] = taken
    assert [record.key for record in batch] == [f"k{i}" for i in range(8)] and probe is False
    assert [record.key for record in reader.queue] == ["k8", "k9"]


async def test_a_poison_record_is_split_out_and_fails_no_neighbour(autojump_clock):
    sink = BulkSink(max_records=16, poison=["k3", "k12"])
    delivery = batch_delivery(sink)
    booked = await deliver(delivery, records(16))
    failed = {key: result for key, result in booked.items() if result.outcome is not Outcome.OK}
    assert set(failed) == {"k3", "k12"}
    assert failed["k3"].reason == "HTTP 400: entry k3 is malformed" and failed["k3"].status == 400
    assert failed["k12"].detail == '{"bad": "k12"}' and not failed["k12"].retryable
    assert sink.delivered == {f"k{i}": 1 for i in range(16) if i not in (3, 12)}  # each good one once
    # 16 -> 8 + 8 -> 4 + 4 in each -> 2 + 2 -> 1 + 1: a split for every batch that held a poison record.
    assert delivery.statistics().batch_splits == 2 * 4 - 1 == sum(
        1 for keys in sink.requests if len(keys) > 1 and {"k3", "k12"} & set(keys)
    )
    assert ["k3"] in sink.requests and ["k12"] in sink.requests
    assert booked["k0"].attempts == 4  # the whole batch, its half, its quarter, its eighth


class CountingConcurrency(BulkSink):
    """A bulk endpoint that counts the requests it serves at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_flight = self.most_in_flight = 0

    async def send_batch(self, records: Sequence[Record]) -> Sequence[SendResult | RecordError | None]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await super().send_batch(records)
        finally:
            self.in_flight -= 1


async def test_split_halves_are_in_flight_at_once_when_slots_allow(autojump_clock):
    sink = CountingConcurrency(max_records=16, poison=["k3", "k12"])
    delivery = batch_delivery(sink, workers=4)
    async with trio.open_nursery() as nursery:
        delivery.send_halves_in(nursery)
        booked = await deliver(delivery, records(16))  # returns once every half has landed
        assert sink.in_flight == 0
    assert sink.most_in_flight > 1
    assert {key for key, result in booked.items() if result.outcome is not Outcome.OK} == {"k3", "k12"}
    assert sink.delivered == {f"k{i}": 1 for i in range(16) if i not in (3, 12)}
    assert delivery.concurrency.slots.borrowed_tokens == 0  # the halves gave their slots back


async def test_split_halves_go_one_after_the_other_without_a_free_slot(autojump_clock):
    sink = CountingConcurrency(max_records=16, poison=["k3", "k12"])
    delivery = batch_delivery(sink, workers=1)
    async with trio.open_nursery() as nursery:
        delivery.send_halves_in(nursery)
        async with delivery.concurrency.slots:  # the only slot, held by the worker sending the batch
            await deliver(delivery, records(16))
    assert sink.most_in_flight == 1  # no free slot: one half after the other
    assert sink.delivered == {f"k{i}": 1 for i in range(16) if i not in (3, 12)}


async def test_a_throttled_batch_is_sent_again_whole_after_the_pause(autojump_clock):
    sink = BulkSink(throttles=1)
    limiter_throttles: list[float] = []
    delivery = batch_delivery(sink)
    on_throttle = delivery.limiter.on_throttle

    def spy(sent_at: float, retry_after: float | None) -> bool:
        limiter_throttles.append(sent_at)
        return on_throttle(sent_at, retry_after)

    delivery.limiter.on_throttle = spy  # type: ignore[method-assign]
    started = trio.current_time()
    booked = await deliver(delivery, records(5))
    assert trio.current_time() - started >= 1.0
    assert len(sink.requests) == 2 and sink.requests[0] == sink.requests[1]
    assert all(result.outcome is Outcome.OK and result.attempts == 2 for result in booked.values())
    stats = delivery.statistics()
    assert (stats.attempts, stats.retries, stats.throttled, stats.pauses) == (2, 1, 1, 1)
    assert len(limiter_throttles) == 1  # one request throttled: one lesson for the limiter


async def test_records_that_failed_for_now_are_sent_again_without_the_others(autojump_clock):
    sink = BulkSink(flaky={"k1": 2, "k4": 1})
    delivery = batch_delivery(sink, retry={"backoff_base": 0.01})
    booked = await deliver(delivery, records(6))
    assert sink.requests == [["k0", "k1", "k2", "k3", "k4", "k5"], ["k1", "k4"], ["k1"]]
    assert {key: result.attempts for key, result in booked.items()} == {"k0": 1, "k1": 3, "k2": 1, "k3": 1, "k4": 2, "k5": 1}
    assert all(result.outcome is Outcome.OK for result in booked.values())
    assert delivery.statistics().retries == 2


async def test_a_record_that_keeps_failing_for_now_gives_up_alone(autojump_clock):
    sink = BulkSink(flaky={"k1": 99})
    delivery = batch_delivery(sink, retry={"backoff_base": 0.01, "max_attempts": 3})
    booked = await deliver(delivery, records(3))
    assert booked["k1"].outcome is Outcome.FAILED and booked["k1"].retryable
    assert booked["k1"].reason == "gave up after 3 attempts: entry k1: busy" and booked["k1"].status == 503
    assert booked["k0"].outcome is booked["k2"].outcome is Outcome.OK


async def test_an_empty_retry_budget_fails_the_records_for_now(autojump_clock):
    sink = BulkSink(flaky={"k0": 99, "k1": 99})
    delivery = batch_delivery(sink, retry={"backoff_base": 0.01, "budget": 0})
    booked = await deliver(delivery, records(3))
    assert [booked[key].reason for key in ("k0", "k1")] == [
        "retry budget exhausted (last error: entry k0: busy)", "retry budget exhausted (last error: entry k1: busy)",
    ]
    assert booked["k2"].outcome is Outcome.OK


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ([SendResult(status=200)], "the sink answered 1 outcomes for a batch of 3 records"),
        ({"ok": True}, "the sink answered a batch with dict, not a list of outcomes"),
        ([SendResult(), "ok", None], "the sink answered 'ok' for a record of a batch, not a SendResult or a RecordError"),
    ],
)
async def test_an_answer_that_does_not_fit_the_batch_fails_it(autojump_clock, answers: Any, problem: str):
    sink = BulkSink(answers=answers)
    booked = await deliver(batch_delivery(sink), records(3))
    assert {(result.outcome, result.reason, result.retryable) for result in booked.values()} == {(Outcome.FAILED, problem, True)}
    assert len(sink.requests) == 1  # a bug in the sink: not sent again in this run


async def test_a_request_refused_for_good_fails_every_record_of_it(autojump_clock):
    class GoneSink(BulkSink):
        async def send_batch(self, records: Sequence[Record]) -> Sequence[SendResult | RecordError | None]:
            raise PermanentError("HTTP 404: no such address book", status=404)

    booked = await deliver(batch_delivery(GoneSink()), records(3))
    assert {(result.outcome, result.status, result.attempts) for result in booked.values()} == {(Outcome.FAILED, 404, 1)}


async def test_a_fatal_error_stops_the_batch(autojump_clock):
    class FatalSink(BulkSink):
        async def send_batch(self, records: Sequence[Record]) -> Sequence[SendResult | RecordError | None]:
            raise FatalError("HTTP 401: credentials refused")

    with pytest.raises(FatalError):
        await batch_delivery(FatalSink()).deliver_batch(records(2), lambda record, result: None)


async def test_batches_with_one_key_are_sent_in_input_order(autojump_clock):
    sink = BulkSink()
    delivery = batch_delivery(sink)
    first = [Record({"id": "a", "n": 1}, line=2, key="a"), Record({"id": "b"}, line=3, key="b")]
    second = [Record({"id": "a", "n": 2}, line=4, key="a")]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(delivery.deliver_batch, first, lambda record, result: None)
        await trio.sleep(0)  # the first batch takes its keys' turn before the second is taken
        nursery.start_soon(delivery.deliver_batch, second, lambda record, result: None)
    assert sink.requests == [["a", "b"], ["a"]]


def test_a_sink_that_batches_needs_send_batch():
    class HalfSink(Sink):
        name = "half"

        def batching(self) -> Batching | None:
            return Batching(10)

    settings = RunSettings()
    with pytest.raises(PluginError, match="does not implement send_batch"):
        make_delivery(HalfSink(HalfSink.Options()), settings, limiter=make_limiter(settings), dry_run=False, on_unavailable=print)
    # A dry run describes record by record: it never calls send_batch.
    dry = make_delivery(HalfSink(HalfSink.Options()), settings, limiter=make_limiter(settings), dry_run=True, on_unavailable=print)
    assert type(dry) is Delivery


def test_batching_bounds_are_checked():
    with pytest.raises(ValueError, match="max_records"):
        Batching(0)
    with pytest.raises(ValueError, match="max_bytes"):
        Batching(5, 0)


def test_the_default_size_of_a_record_is_its_json():
    sink = BulkSink()
    assert Sink.batch_size_of(sink, Record({"name": "Zoë", "n": 1}, line=2)) == len('{"name":"Zoë","n":1}'.encode())


# -- whole runs ------------------------------------------------------------------------


LIST = plugin_of(ListSource)


def config(items: list[dict[str, Any]], **run: Any) -> dict[str, Any]:
    return {
        "pipeline": "bulk",
        "key": "id",
        "source": {"type": "list", "items": items},
        "sink": {"type": "bulk"},
        "run": {"workers": 3, "retry": {"backoff_base": 0.01}, **run},
    }


def rejects(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    with open(report["files"]["rejects"], newline="", encoding="utf-8") as f:
        return {row["id"]: (row["_reason"], row["_status"]) for row in csv.DictReader(f)}


async def test_a_run_delivers_every_good_record_once_and_rejects_each_bad_one_with_its_reason(tmp_path: Path):
    items = [{"id": f"k{i}"} for i in range(400)]
    poison = [f"k{i}" for i in range(7, 400, 53)]  # 8 malformed entries: whole requests refused
    bad = [f"k{i}" for i in range(30, 400, 61)]  # 7 entries refused one by one
    sink = BulkSink(max_records=25, poison=poison, bad=bad, flaky={"k100": 1, "k200": 2}, throttles=2)
    result = await run_pipeline_from_dict(config(items), sink=sink, tmp_dir=tmp_path, plugins=[LIST])
    report = result.report
    good = {item["id"] for item in items} - set(poison) - set(bad)
    assert sink.delivered == dict.fromkeys(good, 1)  # every good record delivered once
    assert report["records"] == {**report["records"], "read": 400, "ok": len(good), "failed": 15, "not_processed": 0}
    expected = {key: (f"HTTP 400: entry {key} is malformed", "400") for key in poison}
    expected |= {key: (f"entry {key}: invalid phone", "422") for key in bad}
    assert rejects(report) == expected  # no good record failed because of a bad neighbour
    assert report["requests"]["batch_splits"] >= len(poison)
    assert report["requests"]["attempts"] == len(sink.requests) < 400
    assert max(len(keys) for keys in sink.requests) == 25
    assert result.exit_code == 1


async def test_a_full_batch_is_sent_as_one_request_when_its_records_are_ready(tmp_path: Path):
    # The reader hands the workers batch_size (200) records at once, unless a request carries more.
    items = [{"id": f"k{i}"} for i in range(1000)]
    sink = BulkSink(max_records=500)
    result = await run_pipeline_from_dict(config(items, workers="auto"), sink=sink, tmp_dir=tmp_path, plugins=[LIST])
    assert result.exit_code == 0
    assert [len(keys) for keys in sink.requests] == [500, 500]


async def test_workers_learn_of_the_end_of_the_input_without_a_rate_limit_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    acquired: list[float] = []
    acquire = AdaptiveRateLimiter.acquire

    async def counted(limiter: AdaptiveRateLimiter) -> None:
        await acquire(limiter)
        acquired.append(trio.current_time())

    monkeypatch.setattr(AdaptiveRateLimiter, "acquire", counted)
    items = [{"id": f"k{i}"} for i in range(30)]
    sink = BulkSink(max_records=10)
    run = {"workers": 8, "rate": {"max_rate": 20}}
    result = await run_pipeline_from_dict(config(items, **run), sink=sink, tmp_dir=tmp_path, plugins=[LIST])
    assert result.exit_code == 0 and len(sink.requests) == 3
    # Eight workers wait for a slot of the rate limit before they take records; those still
    # waiting when the last records are taken stop there (one may find the end first).
    assert len(acquired) <= len(sink.requests) + 1


async def test_batches_end_at_max_bytes_and_a_large_record_goes_alone(tmp_path: Path):
    sizes = [40, 40, 30, 500, 10, 10, 10]
    items = [{"id": f"k{i}", "size": size} for i, size in enumerate(sizes)]
    sink = BulkSink(max_records=10, max_bytes=100)
    result = await run_pipeline_from_dict(config(items, workers=1, batch_size=100), sink=sink, tmp_dir=tmp_path, plugins=[LIST])
    assert result.exit_code == 0
    assert sink.requests == [["k0", "k1"], ["k2"], ["k3"], ["k4", "k5", "k6"]]


async def test_a_batch_never_holds_two_records_with_one_key(tmp_path: Path):
    items: list[dict[str, Any]] = [{"id": "a", "n": 1}, {"id": "b"}, {"id": "a", "n": 2}, {"id": "c"}]
    sink = BulkSink()
    result = await run_pipeline_from_dict(config(items, workers=2), sink=sink, tmp_dir=tmp_path, plugins=[LIST])
    assert result.exit_code == 0
    assert sink.requests == [["a", "b"], ["a", "c"]]


async def test_a_dry_run_describes_each_record(tmp_path: Path):
    sink = BulkSink()
    result = await run_pipeline_from_dict(config([{"id": "a"}, {"id": "b"}]), sink=sink, tmp_dir=tmp_path, plugins=[LIST], dry_run=True)
    assert result.report["records"]["ok"] == 2 and sink.requests == []


async def test_a_run_with_a_sink_that_cannot_batch_stops_before_reading(tmp_path: Path):
    class Unready(BulkSink):
        def batching(self) -> Batching | None:
            return 500  # type: ignore[return-value]

    with pytest.raises(PluginError, match="batching\\(\\) returned 500, not an etl_core.Batching or None"):
        await run_pipeline_from_dict(config([{"id": "a"}]), sink=Unready(), tmp_dir=tmp_path, plugins=[LIST])
    assert not (tmp_path / "report.json").exists()


# -- a crash in the middle of a batch --------------------------------------------------

#: A run of 60 records in batches of 10 against a bulk endpoint that keeps what it applied
#: in a file; with ``crash_after`` it applies that many requests, then the process is killed
#: (SIGKILL) while the next request's answer is on its way.
CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import trio
    from etl_core import Batching, SendResult, Sink
    from etl_core.testing import ListSource, plugin_of, run_pipeline_sync

    applied_file, out, crash_after = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Endpoint(Sink):
        name = "endpoint"

        def batching(self):
            return Batching(10)

        async def send_batch(self, records):
            await trio.sleep(0.01)
            with open(applied_file, "a") as f:
                f.write("".join(record.key + "\\n" for record in records))
            with open(applied_file + ".requests", "a+") as f:
                f.write("x")
                f.seek(0)
                requests = len(f.read())
            if requests > crash_after:
                os.kill(os.getpid(), signal.SIGKILL)  # applied, and killed before the answer is booked
            return [SendResult(status=200) for _ in records]

    result = run_pipeline_sync(
        {
            "pipeline": "crash",
            "key": "id",
            "source": {"type": "list", "items": [{"id": f"r{i:02d}"} for i in range(60)]},
            "run": {"workers": 2},
            "output": {"dir": out},
        },
        sink=Endpoint(Endpoint.Options()),
        plugins=[plugin_of(ListSource)],
    )
    print(result.exit_code)
    """
)


def test_a_crash_in_the_middle_of_a_batch_resends_at_most_the_batches_in_flight(tmp_path: Path):
    script = tmp_path / "crashing_run.py"
    script.write_text(CRASHING_RUN, encoding="utf-8")
    applied, out = tmp_path / "applied.txt", tmp_path / "out"

    def run(crash_after: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), str(applied), str(out), str(crash_after)], capture_output=True, text=True,
            cwd=ROOT, timeout=120,
        )

    killed = run(crash_after=3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = applied.read_text().split()
    assert 30 <= len(before) <= 50  # three requests answered, the fourth applied, maybe a fifth in flight
    (tmp_path / "applied.txt.requests").unlink()
    finished = run(crash_after=10_000)
    assert finished.returncode == 0 and finished.stdout.split()[-1] == "0", finished.stderr
    times = collections.Counter(applied.read_text().split())
    assert set(times) == {f"r{i:02d}" for i in range(60)}  # nothing lost
    resent = [key for key, count in times.items() if count > 1]
    # The request the crash cut off was applied but never booked: sent again. At most the
    # batches in flight are (two workers, ten records each).
    assert 10 <= len(resent) <= 2 * 10
    assert all(count == 2 for count in times.values() if count > 1)
    report = json.loads((out / "report.json").read_text())
    assert report["records"]["skipped"] == 60 - len(set(times) - set(before)) - len(resent)
