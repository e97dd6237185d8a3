"""The runner with plugins defined here: retries, pauses, budget, backpressure, outcomes."""

from __future__ import annotations

import csv
from collections.abc import Callable

import pytest
import trio
from structlog.testing import capture_logs

from etl_core import (
    ConfigError,
    FatalError,
    PermanentError,
    PluginError,
    PluginOptions,
    RateLimitHint,
    Record,
    RecordRejected,
    SendResult,
    Sink,
    Source,
    ThrottledError,
    Transform,
    TransientError,
    hookimpl,
)
from etl_core.config import parse_config
from etl_core.pipeline import RunOptions, run_pipeline
from etl_core.registry import Registry, make_plugin_manager


@pytest.fixture
def autojump_clock():
    """Virtual time that waits for the run's threads (the reader, the state writer).

    While a thread works the event loop is idle: a clock that jumps at once would race
    ahead of it, firing every timer (the progress loop's among them) again and again.
    """
    return trio.testing.MockClock(autojump_threshold=0.005)


class CountSource(Source):
    name = "count"
    produced = 0

    class Options(PluginOptions):
        n: int
        bad_every: int = 0

    def read(self):
        for i in range(1, self.options.n + 1):
            CountSource.produced = i
            if self.options.bad_every and i % self.options.bad_every == 0:
                yield Record({}, line=i + 1, raw={"id": str(i)}, error="expected 2 fields, got 3")
            else:
                yield Record({"id": str(i)}, line=i + 1, raw={"id": str(i)})


class RejectOdd(Transform):
    name = "reject_odd"

    def apply(self, data):
        if int(data["id"]) % 2:
            raise RecordRejected("id: odd (rule: even)")
        return {**data, "even": True}


class ScriptedSink(Sink):
    """Answers each record according to `script`, a list of outcomes per attempt.

    Records without one get `answer(id, now)` when it is set, else `default`.
    """

    name = "scripted"
    script: dict[str, list[object]] = {}
    default: object = "ok"
    answer: Callable[[str, float], object] | None = None
    sent: list[tuple[float, str]] = []
    in_flight = 0
    max_in_flight = 0
    delay = 0.0

    async def send(self, record):
        cls = ScriptedSink
        cls.in_flight += 1
        cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        try:
            cls.sent.append((trio.current_time(), record.data["id"]))
            if cls.delay:
                await trio.sleep(cls.delay)
            steps = cls.script.get(record.data["id"])
            if steps:
                outcome = steps.pop(0)
            elif cls.answer is not None:
                outcome = cls.answer(record.data["id"], trio.current_time())
            else:
                outcome = cls.default
            if outcome == "hang":
                await trio.sleep_forever()
            if isinstance(outcome, BaseException):
                raise outcome
            if isinstance(outcome, SendResult):
                return outcome
            return SendResult(status=200)
        finally:
            cls.in_flight -= 1


class Plugin:
    @hookimpl
    def register_sources(self):
        return [CountSource]

    @hookimpl
    def register_transforms(self):
        return [RejectOdd]

    @hookimpl
    def register_sinks(self):
        return [ScriptedSink]


@pytest.fixture(autouse=True)
def reset_sink():
    ScriptedSink.script = {}
    ScriptedSink.default = "ok"
    ScriptedSink.answer = None
    ScriptedSink.sent = []
    ScriptedSink.in_flight = ScriptedSink.max_in_flight = 0
    ScriptedSink.delay = 0.0


async def run(tmp_path, n=10, *, run=None, transforms=(), bad_every=0, dry_run=False, workers=None, pm=None, fresh=False):
    pm = pm or make_plugin_manager(extra_plugins=(Plugin(),))
    data = {
        "pipeline": "test",
        "key": "id",
        "source": {"type": "count", "n": n, "bad_every": bad_every},
        "transforms": [{"type": t} for t in transforms],
        "sink": {"type": "scripted"},
        "output": {"dir": str(tmp_path)},
        "run": {"workers": 4, **(run or {})},
    }
    config = parse_config(data, {}, Registry(pm), env={}, source="<test>")
    return await run_pipeline(config, pm, RunOptions(dry_run=dry_run, workers=workers, handle_signals=False, fresh=fresh))


def rejects(tmp_path):
    with open(tmp_path / "rejects.csv", newline="") as f:
        return list(csv.DictReader(f))


async def test_all_ok(tmp_path):
    result = await run(tmp_path, 50)
    assert result.exit_code == 0
    assert result.report["records"] == {"read": 50, "ok": 50, "rejected": 0, "failed": 0, "skipped": 0, "not_processed": 0}
    assert sorted(int(i) for _, i in ScriptedSink.sent) == list(range(1, 51))
    assert not (tmp_path / "rejects.csv").exists()
    assert (tmp_path / "report.json").exists()


async def test_source_and_transform_rejections_go_to_rejects(tmp_path):
    result = await run(tmp_path, 20, transforms=["reject_odd"], bad_every=5)
    assert result.exit_code == 1
    records = result.report["records"]
    # 5, 10, 15, 20 unreadable; of the rest the odd ones (1,3,7,9,11,13,17,19) rejected.
    assert records["rejected"] == 4 + 8 and records["ok"] == 8
    rows = rejects(tmp_path)
    stages = {(r["_stage"], r["_plugin"]) for r in rows}
    assert stages == {("source", "count"), ("transform", "reject_odd")}
    reasons = {r["id"]: r["_reason"] for r in rows}
    assert reasons["5"] == "expected 2 fields, got 3"
    assert reasons["3"] == "id: odd (rule: even)"
    assert {r["_line"] for r in rows if r["id"] == "3"} == {"4"}
    assert sorted(int(i) for _, i in ScriptedSink.sent) == [2, 4, 6, 8, 12, 14, 16, 18]


async def test_permanent_error_not_retried(tmp_path):
    ScriptedSink.script = {"3": [PermanentError("HTTP 404: not found", status=404, detail='{"error":"not_found"}')]}
    result = await run(tmp_path, 5)
    assert result.exit_code == 1
    assert [i for _, i in ScriptedSink.sent].count("3") == 1
    (row,) = rejects(tmp_path)
    assert row["_status"] == "404" and row["_retryable"] == "no" and row["_attempts"] == "1"
    assert row["_detail"] == '{"error":"not_found"}'
    assert result.report["requests"]["by_status"] == {"200": 4, "404": 1}


async def test_transient_retried_then_ok(tmp_path, autojump_clock):
    ScriptedSink.script = {"2": [TransientError("HTTP 502", status=502), TransientError("timeout")]}
    result = await run(tmp_path, 3)
    assert result.exit_code == 0
    assert [i for _, i in ScriptedSink.sent].count("2") == 3
    assert result.report["requests"]["retries"] == 2


async def test_gives_up_after_max_attempts(tmp_path, autojump_clock):
    ScriptedSink.script = {"1": [TransientError("HTTP 500", status=500)] * 10}
    result = await run(tmp_path, 1, run={"retry": {"max_attempts": 3}})
    assert result.exit_code == 1
    (row,) = rejects(tmp_path)
    assert row["_reason"] == "gave up after 3 attempts: HTTP 500"
    assert row["_retryable"] == "yes" and row["_attempts"] == "3"


async def test_retry_after_pauses_the_whole_pool(tmp_path, autojump_clock):
    # Record 1 is throttled with Retry-After 10 s: no other send may start before the deadline.
    ScriptedSink.script = {"1": [ThrottledError("HTTP 429", status=429, retry_after=10.0)]}
    ScriptedSink.delay = 0.01
    start = trio.current_time()
    result = await run(tmp_path, 40, workers=8)
    assert result.exit_code == 0
    throttled_at = next(t for t, i in ScriptedSink.sent if i == "1")
    later = [t for t, _ in ScriptedSink.sent if t > throttled_at + 0.011]
    assert later and min(later) >= throttled_at + 10.0
    assert result.report["requests"]["pauses"] == 1
    assert result.report["requests"]["throttled"] == 1
    assert trio.current_time() - start >= 10


async def test_retry_after_is_capped_by_the_runner(tmp_path, autojump_clock):
    ScriptedSink.script = {"1": [ThrottledError("HTTP 429", status=429, retry_after=86_400.0)]}
    with capture_logs() as logs:
        result = await run(tmp_path, 5, run={"retry": {"retry_after_max": 7}})
    assert result.exit_code == 0
    assert [e["seconds"] for e in logs if e["event"] == "paused"] == [7]
    throttled_at, retried_at = (t for t, i in ScriptedSink.sent if i == "1")
    # (The clock jumps ahead while threads work, so only a wide upper bound holds.)
    assert 7 <= retried_at - throttled_at < 1000


async def test_budget_exhaustion_fails_fast(tmp_path, autojump_clock):
    # Every odd record fails for good while the even ones go through: not an outage (the
    # destination answers), so the records spend the retry budget and fail.
    ScriptedSink.answer = lambda id_, now: TransientError("HTTP 500", status=500) if int(id_) % 2 else "ok"
    with capture_logs() as logs:
        result = await run(tmp_path, 200, run={"retry": {"budget": 50, "transient_cost": 10, "max_attempts": 5}})
    assert result.exit_code == 1
    assert result.report["records"]["failed"] == 100 and result.report["records"]["ok"] == 100
    # One attempt each, and the retries the budget pays for: 5, and one per 10 successes.
    assert 200 + 5 <= result.report["requests"]["attempts"] <= 200 + 5 + 100 // 10 + 1
    rows = rejects(tmp_path)
    assert sum(r["_reason"].startswith("retry budget exhausted") for r in rows) >= 80
    assert all(r["_retryable"] == "yes" for r in rows)
    assert result.report["requests"]["outages"] == 0 and not [e for e in logs if e["event"] == "outage_started"]


async def test_fatal_error_aborts_run(tmp_path):
    ScriptedSink.script = {"5": [FatalError("token refused: check credentials")]}
    ScriptedSink.delay = 0.001
    result = await run(tmp_path, 10_000, workers=2)
    assert result.exit_code == 1
    assert result.report["aborted"] == "token refused: check credentials"
    assert result.report["records"]["ok"] < 10_000


async def test_rate_limit_headers_pause_when_window_spent(tmp_path, autojump_clock):
    ScriptedSink.script = {"1": [SendResult(status=200, rate_limit=RateLimitHint(limit=10, remaining=0, reset=5))]}
    ScriptedSink.delay = 0.01
    result = await run(tmp_path, 10, workers=1)
    assert result.exit_code == 0
    times = [t for t, _ in ScriptedSink.sent]
    assert times[1] - times[0] >= 5


async def test_workers_bound_concurrency(tmp_path, autojump_clock):
    ScriptedSink.delay = 0.1
    await run(tmp_path, 100, workers=7)
    assert ScriptedSink.max_in_flight == 7


async def test_backpressure_bounds_read_ahead(tmp_path, autojump_clock):
    # A slow sink must slow the reader: it may only be a few batches ahead.
    ScriptedSink.delay = 1.0
    CountSource.produced = 0
    observed = []

    async def watch():
        await trio.sleep(5)
        observed.append((CountSource.produced, len(ScriptedSink.sent)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await run(tmp_path, 500, workers=2, run={"batch_size": 10, "queue_batches": 2})
    produced, sent = observed[0]
    assert produced - sent <= 10 * (2 + 2) + 10 + 2


async def test_dry_run_sends_nothing(tmp_path):
    result = await run(tmp_path, 10, transforms=["reject_odd"], dry_run=True)
    assert ScriptedSink.sent == []
    assert result.report["dry_run"] is True
    assert result.report["records"]["ok"] == 5 and result.report["records"]["rejected"] == 5


async def test_a_failing_run_started_hook_stops_the_run_before_anything_is_sent(tmp_path):
    class Broken:
        @hookimpl
        def run_started(self, run_id, pipeline, config):
            raise RuntimeError("metrics backend down")

    pm = make_plugin_manager(extra_plugins=(Plugin(), Broken()))
    with pytest.raises(PluginError, match="a run_started hook failed: RuntimeError: metrics backend down"):
        await run(tmp_path, 5, pm=pm)
    assert ScriptedSink.sent == []
    assert not (tmp_path / "report.json").exists()


async def test_a_failing_run_finished_hook_leaves_the_outcome_as_it_was(tmp_path):
    class Broken:
        @hookimpl
        def run_finished(self, run_id, report):
            raise RuntimeError("dashboard down")

    pm = make_plugin_manager(extra_plugins=(Plugin(), Broken()))
    with capture_logs() as logs:
        result = await run(tmp_path, 5, pm=pm)
    assert result.exit_code == 0 and result.report["records"]["ok"] == 5
    assert (tmp_path / "report.json").exists()
    assert any(e["event"] == "hook_failed" and e["hook"] == "run_finished" for e in logs)


async def test_lifecycle_hooks(tmp_path):
    seen = {"started": [], "done": [], "finished": []}

    class Metrics:
        @hookimpl
        def run_started(self, run_id, pipeline, config):
            seen["started"].append((pipeline, config["sink"]["type"]))

        @hookimpl
        def record_done(self, run_id, line, key, outcome, status, attempts):
            seen["done"].append((key, outcome))

        @hookimpl
        def run_finished(self, run_id, report):
            seen["finished"].append(report["records"]["ok"])

    ScriptedSink.script = {"2": [PermanentError("HTTP 400", status=400)]}
    pm = make_plugin_manager(extra_plugins=(Plugin(), Metrics()))
    await run(tmp_path, 3, pm=pm)
    assert seen["started"] == [("test", "scripted")]
    assert sorted(seen["done"]) == [("1", "ok"), ("2", "failed"), ("3", "ok")]
    assert seen["finished"] == [2]


async def test_drain_timeout_cuts_sends_that_do_not_finish(tmp_path):
    # The failure-rate stop drains in-flight sends; ones that hang are cut at drain_timeout
    # and left unprocessed (not marked done), so a rerun sends them again. (A real clock:
    # an autojump clock could jump to the hang guard's deadline while a thread works.)
    ScriptedSink.default = PermanentError("HTTP 400: validation failed", status=400)
    ScriptedSink.script = {"1": ["hang"], "2": ["hang"]}
    start = trio.current_time()
    with trio.fail_after(120):  # a hang fails the test instead of stalling it
        result = await run(
            tmp_path, 200, workers=4, run={"max_failure_rate": 0.1, "min_records_for_failure_rate": 10, "drain_timeout": 1}
        )
    elapsed = trio.current_time() - start
    assert result.exit_code == 1
    assert "run.max_failure_rate" in result.report["aborted"]
    # Two sends never finish, so the run ended only because the drain deadline cut them.
    assert elapsed >= 1
    assert result.report["records"]["ok"] == 0 and result.report["records"]["not_processed"] >= 2
    assert not {"1", "2"} & {row["id"] for row in rejects(tmp_path)}


async def test_unusable_output_dir_is_a_config_error_and_sends_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as caught:
        await run(blocker / "out", 5)
    assert caught.value.path == "output.dir"
    assert ScriptedSink.sent == []


# -- outages: the breaker ------------------------------------------------------------


class DownBetween:
    """An answer for ScriptedSink: `failure()` from `start` to `end` seconds (trio clock), else ok."""

    def __init__(self, start: float, end: float, failure: Callable[[], Exception]) -> None:
        self.start, self.end, self.failure = start, end, failure
        self.failed = 0

    def __call__(self, id_: str, now: float) -> object:
        if self.start <= now < self.end:
            self.failed += 1
            return self.failure()
        return "ok"


@pytest.mark.parametrize(
    "failure",
    [
        lambda: TransientError("HTTP 503", status=503),
        lambda: ThrottledError("HTTP 503", status=503, retry_after=2.0),
        lambda: TransientError("connection error (ConnectError)"),
    ],
    ids=["503", "503-retry-after", "refused"],
)
async def test_an_outage_is_waited_out_without_charging_records(tmp_path, autojump_clock, failure):
    ScriptedSink.delay = 0.01
    begin = trio.current_time()
    ScriptedSink.answer = down = DownBetween(begin + 0.5, begin + 10.5, failure)
    with capture_logs() as logs:
        result = await run(tmp_path, 1000, workers=8)
    assert result.exit_code == 0
    report = result.report
    assert report["records"]["ok"] == 1000 and report["records"]["failed"] == 0
    requests = report["requests"]
    assert requests["outages"] == 1 and requests["probes"] >= 1
    # Nothing was sent while the destination was down but the probes; the failures before
    # the breaker opened and the sends in flight then are the only other extra requests.
    assert down.failed <= requests["probes"] + 5 + 8
    assert requests["attempts"] == 1000 + down.failed
    events = [e["event"] for e in logs]
    assert events.count("outage_started") == 1 and events.count("outage_ended") == 1
    ended = next(e for e in logs if e["event"] == "outage_ended")
    # It opens within a Retry-After of the start, and ends with the first probe after the
    # destination is back (probes at most 10 s apart).
    assert 10 - 2 - 1 <= ended["duration_s"] <= 10 + 10 + 0.5
    assert ended["probes"] == requests["probes"] == events.count("outage_probe") + 1


async def test_an_outage_longer_than_max_outage_stops_the_run_with_the_rest_unsent(tmp_path, autojump_clock):
    ScriptedSink.delay = 0.01
    down_since: list[float] = []

    def down_after_150_sends(id_: str, now: float) -> object:
        # Counted in sends, not seconds: the mock clock jumps ahead whenever the reader's
        # thread is slow to hand over records, and the first records must get through.
        if len(ScriptedSink.sent) <= 150:
            return "ok"
        down_since.append(now)
        return TransientError("HTTP 502", status=502)

    ScriptedSink.answer = down_after_150_sends
    with capture_logs() as logs:
        result = await run(tmp_path, 1000, workers=8, run={"max_outage": 30})
    assert result.exit_code == 75
    records = result.report["records"]
    assert records["failed"] == 0 and records["ok"] >= 100
    assert records["ok"] + records["not_processed"] == records["read"]
    stop = next(e for e in logs if e["event"] == "destination_unavailable")
    assert "run.max_outage" in stop["reason"] and stop["outage_s"] == pytest.approx(30, abs=0.1)
    assert "run.max_outage" in result.report["aborted"]
    # Gave up at max_outage: nothing was sent after it.
    opened = next(e for e in logs if e["event"] == "outage_started")
    assert opened and max(t for t, _ in ScriptedSink.sent) < down_since[0] + 30 + 1


@pytest.mark.parametrize("workers", [1, 8])
async def test_one_record_that_always_fails_never_opens_the_breaker(tmp_path, autojump_clock, workers):
    ScriptedSink.answer = lambda id_, now: TransientError("HTTP 500", status=500) if id_ == "17" else "ok"
    with capture_logs() as logs:
        result = await run(tmp_path, 300, workers=workers)
    assert result.exit_code == 1
    assert result.report["records"]["failed"] == 1 and result.report["records"]["ok"] == 299
    assert [r["id"] for r in rejects(tmp_path)] == ["17"]
    assert rejects(tmp_path)[0]["_attempts"] == "6"
    assert result.report["requests"]["outages"] == 0
    assert not [e for e in logs if e["event"].startswith("outage")]


async def test_a_rate_limit_answered_with_503_and_retry_after_is_no_outage(tmp_path, autojump_clock):
    # A first wave (32 workers: records 1-32) over the quota is refused at once, with a
    # pause: these refusals were all sent before the first came back, so they do not show
    # that waiting did not help.
    ScriptedSink.delay = 0.01
    ScriptedSink.script = {
        str(i): [ThrottledError("HTTP 503", status=503, retry_after=1.0)] for i in range(5, 33)
    }
    with capture_logs() as logs:
        result = await run(tmp_path, 200, workers=32)
    assert result.exit_code == 0 and result.report["records"]["ok"] == 200
    assert result.report["requests"]["outages"] == 0
    assert result.report["requests"]["pauses"] >= 1
    assert not [e for e in logs if e["event"].startswith("outage")]


# -- a config that does not fit the input ------------------------------------------------


async def test_a_run_whose_first_records_are_all_rejected_stops(tmp_path):
    with capture_logs() as logs:
        result = await run(tmp_path, 5000, bad_every=1, run={"stop_if_first_rejected": 100, "batch_size": 10})
    assert result.exit_code == 1
    assert "run.stop_if_first_rejected" in result.report["aborted"]
    records = result.report["records"]
    assert records["rejected"] >= 100 and records["ok"] == 0 and records["read"] < 5000
    assert [e["records"] for e in logs if e["event"] == "all_rejected"] == [100]
    assert ScriptedSink.sent == []


async def test_records_that_are_not_all_rejected_keep_the_run_going(tmp_path):
    # Half the records are rejected by a transform, half are sent: the config fits.
    result = await run(tmp_path, 500, transforms=("reject_odd",), run={"stop_if_first_rejected": 10})
    assert result.report["aborted"] is None and result.report["records"]["rejected"] == 250


async def test_the_guard_can_be_turned_off(tmp_path):
    result = await run(tmp_path, 1500, bad_every=1, run={"stop_if_first_rejected": None})
    assert result.report["aborted"] is None and result.report["records"]["rejected"] == 1500


async def test_a_dry_run_after_a_real_run_shows_what_is_left_and_with_fresh_everything(tmp_path):
    assert (await run(tmp_path, 20)).report["records"]["ok"] == 20
    resumed = await run(tmp_path, 20, dry_run=True)
    assert resumed.report["records"]["skipped"] == 20 and resumed.report["records"]["ok"] == 0
    fresh = await run(tmp_path, 20, dry_run=True, fresh=True)
    assert fresh.report["records"]["ok"] == 20 and fresh.report["records"]["skipped"] == 0
    # The checkpoints are untouched: a real run still skips every record.
    assert (await run(tmp_path, 20)).report["records"]["skipped"] == 20
