"""The trio runner: source -> transforms -> bounded channel -> worker pool -> sink.

The source and the transforms run in a worker thread, a batch at a time, so reading
and mapping never block the event loop; the batches cross a bounded memory channel
(backpressure: a slow sink slows the reader, memory stays flat); a pool of worker tasks
sends records one by one and the runner, not the sink, decides what each outcome means.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import itertools
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pluggy
import structlog
import trio

from ._errors import ConfigError, FatalError, RecordError, RecordRejected, ThrottledError, TransientError
from ._plugin import PluginOptions, Record, RunContext, Sink, Transform
from .config import PipelineConfig
from .logging import get_logger
from .progress import ProgressBar
from .report import RejectsWriter, RunCounters, SuccessWriter, write_report
from .retry import AdaptiveRateLimiter, RetryBudget, SharedPause, backoff_delay
from .state import FAILED, OK, Outcome, PreviousOutcome, SeenKeys, StateStore, content_hash

#: Exit codes, as documented in docs/exit-codes.md.
EXIT_OK, EXIT_FAILURES = 0, 1  # and EXIT_USAGE (2) in cli.py
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

#: Dry runs log the first few requests at info level, the rest at debug.
_DRY_RUN_SHOWN = 5
#: A worker yields to the event loop at least this often, even when the sink never waits.
_CHECKPOINT_EVERY = 64
#: Seconds between progress snapshots (progress bar, run_progress hook).
_PROGRESS_INTERVAL = 1.0
#: Seconds the sink may take to close at the end of a run.
_CLOSE_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`run_pipeline`.

    Attributes:
        exit_code: 0 all done, 1 some records rejected or failed (or the run was
            aborted), 130/143 interrupted by SIGINT/SIGTERM.
        report: The run report, as written to the report file.
    """

    exit_code: int
    report: dict[str, Any]


@dataclasses.dataclass(slots=True)
class _Rejection:
    record: Record
    stage: str
    plugin: str
    reason: str


async def run_pipeline(
    config: PipelineConfig,
    pm: pluggy.PluginManager,
    *,
    dry_run: bool = False,
    workers: int | None = None,
    sink_options: PluginOptions | None = None,
    handle_signals: bool = True,
    fresh: bool = False,
    retry_rejected: bool = False,
    show_progress: bool = False,
    output_dir: str | None = None,
) -> RunResult:
    """Run a validated pipeline to the end.

    Args:
        config: The validated configuration.
        pm: The plugin manager (for the run-lifecycle hooks).
        dry_run: Read, transform and validate, describe the requests, send nothing.
        workers: Override ``run.workers``.
        sink_options: Replace the sink's options.
        handle_signals: Stop gracefully on SIGINT/SIGTERM (only possible in the main thread).
        fresh: Forget the checkpoints of earlier runs (``--fresh``).
        retry_rejected: Send again records an earlier run saw refused for good (``--retry-rejected``).
        show_progress: Draw a progress bar on stderr when it is a terminal.
        output_dir: Write the report, rejects and state here instead of ``output.dir``.

    Returns:
        The exit code and the run report.

    Raises:
        ConfigError: A plugin's ``check()`` found a problem (nothing was read or sent).
    """
    runner = _Runner(
        config,
        pm,
        dry_run=dry_run,
        workers=workers,
        sink_options=sink_options,
        fresh=fresh,
        retry_rejected=retry_rejected,
        show_progress=show_progress,
        output_dir=output_dir,
    )
    return await runner.run(handle_signals=handle_signals)


def _iso(moment: datetime.datetime) -> str:
    """ISO-8601 UTC with a Z, like the log timestamps."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _leaves(group: BaseExceptionGroup[Any]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


class _Runner:
    def __init__(
        self,
        config: PipelineConfig,
        pm: pluggy.PluginManager,
        *,
        dry_run: bool,
        workers: int | None,
        sink_options: PluginOptions | None,
        fresh: bool = False,
        retry_rejected: bool = False,
        show_progress: bool = False,
        output_dir: str | None = None,
    ) -> None:
        model = config.model
        self.config = config
        self.pm = pm
        self.dry_run = dry_run
        self.settings = model.run
        self.workers = workers or model.run.workers
        self.key_field = model.key
        self.run_id = uuid.uuid4().hex
        base_dir = os.path.abspath(output_dir or model.output.dir)
        # A dry run keeps its report and rejects apart from the real runs' (it reads
        # their checkpoints, though, to show what a real run would skip).
        self.output_dir = os.path.join(base_dir, "dry-run") if dry_run else base_dir
        self.report_path = os.path.join(self.output_dir, model.output.report)
        self.rejects = RejectsWriter(os.path.join(self.output_dir, model.output.rejects), columns=self._source_fields)
        self.successes = SuccessWriter(os.path.join(self.output_dir, model.output.success)) if model.output.success else None
        self.fresh = fresh
        self.resend_permanent = retry_rejected or model.state.resend_permanent_failures
        self.state_path = os.path.join(base_dir, model.state.path)
        self.state: StateStore | None = None
        self.seen: SeenKeys | None = None
        self._in_flight: dict[str, trio.Event] = {}
        self._committed = trio.lowlevel.ParkingLot()

        source_cls, source_options = config.source
        self.source = source_cls(source_options)
        self.transforms: list[Transform] = [cls(options) for cls, options in config.transforms]
        sink_cls, default_sink_options = config.sink
        self.sink: Sink = sink_cls(sink_options or default_sink_options)

        self.counters = RunCounters()
        self.log = get_logger()
        self.budget = RetryBudget(model.run.retry.budget, model.run.retry.success_refund)
        self.pause = SharedPause()
        self.limiter: AdaptiveRateLimiter | None = None  # needs a running trio loop
        self._buffer: collections.deque[Record] = collections.deque()
        self._refilling = False
        self._refilled = trio.lowlevel.ParkingLot()
        self._end_of_input = False
        self._records: Iterator[Record] | None = None
        self._stopping = False
        self._signal: signal.Signals | None = None
        self._workers_scope = trio.CancelScope()
        self._open_scope = trio.CancelScope()
        self._reader_scope = trio.CancelScope()
        self._hook_record_done = bool(pm.hook.record_done.get_hookimpls())
        self._hook_run_progress = bool(pm.hook.run_progress.get_hookimpls())
        self.progress_bar = ProgressBar.for_terminal(dry_run=dry_run) if show_progress else None
        self._dry_run_shown = 0
        self._stop_reason: str | None = None

    def _source_fields(self) -> list[str]:
        return self.source.fields()

    # -- the run -------------------------------------------------------------------

    async def run(self, *, handle_signals: bool) -> RunResult:
        for plugin in (self.source, *self.transforms, self.sink):
            plugin.check()
        structlog.contextvars.bind_contextvars(run_id=self.run_id, pipeline=self.config.model.pipeline)
        started_at = datetime.datetime.now(datetime.timezone.utc)
        self.limiter = AdaptiveRateLimiter(
            max_rate=self.settings.rate.max_rate, adaptive=self.settings.rate.adaptive
        )
        self.log.info(
            "run_started",
            config=self.config.path,
            source=self.config.model.source.type,
            sink=self.config.model.sink.type,
            workers=self.workers,
            dry_run=self.dry_run,
        )
        self.pm.hook.run_started(run_id=self.run_id, pipeline=self.config.model.pipeline, config=self.config.masked())
        aborted: str | None = None
        self._prepare_output_dir()
        self._open_state()
        self._remove_previous_results()
        try:
            async with trio.open_nursery() as nursery:
                if handle_signals:
                    nursery.start_soon(self._watch_signals)
                if not self.dry_run:
                    structlog.contextvars.bind_contextvars(stage="sink")
                    with self._open_scope:  # a signal cancels a slow open (e.g. token retries)
                        await self.sink.open(
                            RunContext(self.run_id, self.config.model.pipeline, self.output_dir, self.dry_run)
                        )
                nursery.start_soon(self._report_progress)
                if not self._stopping:
                    await self._pump()
                nursery.cancel_scope.cancel()
        except* FatalError as group:
            aborted = "; ".join(dict.fromkeys(str(exc) for exc in _leaves(group)))
            self.log.error("run_aborted", reason=aborted)
        except* Exception as group:
            # A bug in a plugin or in the core: still write the report and keep the state
            # consistent, so that nothing done so far is lost and a rerun resumes.
            first = next(_leaves(group))
            aborted = f"internal error: {type(first).__name__}: {first}"
            self.log.error("run_crashed", reason=aborted, exc_info=first)
        finally:
            # Shielded from a second Ctrl-C, but bounded: a peer that never answers the
            # close must not keep the report and the checkpoints from being written.
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                try:
                    await self.sink.aclose()
                except Exception:
                    self.log.exception("sink_close_failed")
            with trio.CancelScope(shield=True):
                state_error = await trio.to_thread.run_sync(self._close_files)
            if state_error is not None and aborted is None:
                aborted = f"the state file could not be written: {state_error}"
            structlog.contextvars.unbind_contextvars("stage")
        return self._finish(started_at, aborted or self._stop_reason)

    def _prepare_output_dir(self) -> None:
        try:
            os.makedirs(self.output_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output directory {self.output_dir}: {exc.strerror}", path="output.dir") from None
        if not os.access(self.output_dir, os.W_OK):
            raise ConfigError(f"the output directory {self.output_dir} is not writable", path="output.dir")

    def _open_state(self) -> None:
        if self.key_field is not None:
            self.seen = SeenKeys()
        if self.key_field is None or not self.config.model.state.enabled:
            return
        if self.dry_run and not os.path.exists(self.state_path):
            return  # a dry run reads earlier checkpoints but never creates them
        try:
            self.state = StateStore(self.state_path, self.config.model.pipeline, self.run_id)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot use the state file {self.state_path}: {exc}", path="state.path") from None
        if self.fresh and not self.dry_run:
            forgotten = self.state.forget()
            self.log.info("state_reset", records=forgotten, path=self.state_path)
        elif self.state.has_history:
            self.log.info("resuming", path=self.state_path)
        if not self.dry_run:
            token = trio.lowlevel.current_trio_token()

            def wake_waiting_workers() -> None:  # runs in the writer thread
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(self._after_commit)

            self.state.on_commit = wake_waiting_workers
            self.state.start()

    def _after_commit(self) -> None:
        self._committed.unpark_all()
        if self.state is not None and self.state.failed and not self._stopping:
            # Without checkpoints a crash would lose track of what was sent: stop now.
            self._stop_reason = "the state file could not be written; stopped to keep reruns safe"
            self.log.error("state_write_failed", path=self.state_path)
            self._stop_gracefully()

    def _remove_previous_results(self) -> None:
        # Rejects and success files are created on their first row: a file left by an
        # earlier run would otherwise pass for this run's.
        for writer in (self.rejects, self.successes):
            if writer is not None and os.path.exists(writer.path):
                os.remove(writer.path)

    def _close_files(self) -> BaseException | None:
        """Close every file (runs in a thread); return the state store's write error, if any."""
        self.rejects.close()
        if self.successes is not None:
            self.successes.close()
        if self.seen is not None:
            self.seen.close()
        if self.state is not None:
            try:
                self.state.close()
            except Exception as exc:  # reported in the run report, never a traceback
                self.log.error("state_write_failed", path=self.state_path, reason=f"{type(exc).__name__}: {exc}")
                return exc
        return None

    async def _pump(self) -> None:
        self._records = iter(self.source.read())
        send, receive = trio.open_memory_channel[list[Record]](self.settings.queue_batches)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, send)
            with self._workers_scope:
                async with receive, trio.open_nursery() as workers:
                    for _ in range(self.workers):
                        workers.start_soon(self._work, receive)

    # -- reading -------------------------------------------------------------------

    async def _read(self, send: trio.MemorySendChannel[list[Record]]) -> None:
        structlog.contextvars.bind_contextvars(stage="source")
        async with send:
            with self._reader_scope:
                while True:
                    batch, rejections, skipped, read = await trio.to_thread.run_sync(self._next_batch)
                    self.counters.read += read
                    for rejection in rejections:
                        self._reject(rejection)
                    for record, before in skipped:
                        self._skip(record, before)
                    if not read:
                        return
                    if batch:
                        try:
                            await send.send(batch)
                        except trio.BrokenResourceError:
                            return  # the workers stopped (fatal error or shutdown)

    def _next_batch(self) -> tuple[list[Record], list[_Rejection], list[tuple[Record, PreviousOutcome]], int]:
        """Read, transform and check one batch against the state (runs in a worker thread)."""
        assert self._records is not None
        batch: list[Record] = []
        rejections: list[_Rejection] = []
        read = 0
        source_name = self.source.name
        key_field = self.key_field
        for record in itertools.islice(self._records, self.settings.batch_size):
            read += 1
            if record.error is not None:
                rejections.append(_Rejection(record, "source", source_name, record.error))
                continue
            data = record.data
            for transform in self.transforms:
                try:
                    data = transform.apply(data)
                except RecordRejected as exc:
                    rejections.append(_Rejection(record, "transform", transform.name, exc.reason))
                    break
                except Exception as exc:  # a plugin bug must not kill the run
                    reason = f"unexpected error: {type(exc).__name__}: {exc}"
                    rejections.append(_Rejection(record, "transform", transform.name, reason))
                    break
            else:
                record.data = data
                if key_field is not None:
                    value = data.get(key_field)
                    record.key = None if value is None else str(value)
                batch.append(record)
        if self.seen is None:
            return batch, rejections, [], read
        return (*self._dedupe_and_resume(batch, rejections), read)

    def _dedupe_and_resume(
        self, batch: list[Record], rejections: list[_Rejection]
    ) -> tuple[list[Record], list[_Rejection], list[tuple[Record, PreviousOutcome]]]:
        assert self.seen is not None
        keyed = [(record.key, record.line) for record in batch if record.key is not None]
        duplicates = self.seen.add(keyed) if keyed else {}
        previous = self.state.lookup([key for key, _ in keyed]) if self.state is not None else {}
        to_send: list[Record] = []
        skipped: list[tuple[Record, PreviousOutcome]] = []
        reject_duplicates = self.settings.duplicate_keys == "reject"
        for record in batch:
            first_line = duplicates.get(record.line)
            if first_line is not None:
                if reject_duplicates:
                    reason = f"duplicate key {self.key_field}: first seen at line {first_line}"
                    rejections.append(_Rejection(record, "pipeline", "duplicate_keys", reason))
                    continue
                # The last one wins: send it (after the earlier one), whatever the state says.
                to_send.append(record)
                continue
            before = previous.get(record.key) if record.key is not None else None
            if before is not None and self._already_done(before, record):
                skipped.append((record, before))
            else:
                to_send.append(record)
        return to_send, rejections, skipped

    def _already_done(self, before: PreviousOutcome, record: Record) -> bool:
        if before.outcome == OK or (before.outcome == FAILED and not before.retryable and not self.resend_permanent):
            return before.hash == content_hash(record.data)
        return False

    # -- sending -------------------------------------------------------------------

    async def _work(self, receive: trio.MemoryReceiveChannel[list[Record]]) -> None:
        structlog.contextvars.bind_contextvars(stage="sink")
        buffer = self._buffer
        since_checkpoint = 0
        while not self._stopping:
            if buffer:
                record = buffer.popleft()
            elif self._end_of_input:
                return
            elif self._refilling:
                # Another worker is fetching the next batch; it wakes us when it lands.
                await self._refilled.park()
                continue
            else:
                await self._refill(receive)
                continue
            if self.dry_run:
                self._describe(record)
            else:
                await self._deliver(record)
                await self._wait_for_checkpoint()
            since_checkpoint += 1
            if since_checkpoint >= _CHECKPOINT_EVERY:
                since_checkpoint = 0
                await trio.lowlevel.checkpoint()

    async def _wait_for_checkpoint(self) -> None:
        # A worker takes its next record only once its last outcome is on disk (a group
        # commit, shared with every other worker), so a crash re-sends at most the
        # records that were in flight.
        state = self.state
        if state is not None:
            target = state.recorded
            while state.committed < target:
                await self._committed.park()

    async def _refill(self, receive: trio.MemoryReceiveChannel[list[Record]]) -> None:
        # Batches cross the channel (cheap per record); records are shared from one
        # deque so that every worker stays busy until the very last record.
        self._refilling = True
        try:
            self._buffer.extend(await receive.receive())
        except trio.EndOfChannel:
            self._end_of_input = True
        finally:
            self._refilling = False
            self._refilled.unpark_all()

    def _describe(self, record: Record) -> None:
        try:
            request = self.sink.describe(record)
        except RecordError as exc:
            self._fail(record, exc, attempts=0)
            return
        self._dry_run_shown += 1
        level = "info" if self._dry_run_shown <= _DRY_RUN_SHOWN else "debug"
        getattr(self.log, level)("dry_run_request", line=record.line, key=record.key, request=request)
        self._succeed(record, status=None, attempts=0)

    async def _deliver(self, record: Record) -> None:
        key = record.key
        if key is None:
            await self._send_with_retries(record)
            return
        # Two records with one key are sent one after the other, in input order, so the
        # last one read is the last one applied.
        while (earlier := self._in_flight.get(key)) is not None:
            await earlier.wait()
        done = self._in_flight[key] = trio.Event()
        try:
            await self._send_with_retries(record)
        finally:
            del self._in_flight[key]
            done.set()

    async def _send_with_retries(self, record: Record) -> None:
        assert self.limiter is not None
        retry = self.settings.retry
        attempts = 0
        while True:
            await self._wait_for_slot()
            sent_at = trio.current_time()
            attempts += 1
            self.counters.attempts += 1
            try:
                result = await self.sink.send(record)
            except ThrottledError as exc:
                self._count_status(exc.status)
                self.counters.throttled += 1
                delay = exc.retry_after if exc.retry_after is None else min(exc.retry_after, retry.retry_after_max)
                if exc.status == 429 or delay is not None:
                    # A rate limit: learn from it. A bare 503 is more likely an outage,
                    # which the retry budget handles; slowing first attempts would only
                    # make the run crawl instead of failing fast.
                    self.limiter.on_throttle()
                if delay is not None:
                    already_paused = self.pause.remaining() > 0
                    if self.pause.pause_for(delay) and not already_paused:
                        self.log.warning(
                            "paused", seconds=round(delay, 3), status=exc.status, key=record.key, rate_limit=self.limiter.rate
                        )
                if not self._may_retry(record, exc, attempts, retry.throttled_cost):
                    return
                if delay is None:
                    await self._backoff(record, exc, attempts)
                else:
                    self._log_retry(record, exc, attempts, delay)
            except TransientError as exc:
                self._count_status(exc.status)
                if not self._may_retry(record, exc, attempts, retry.transient_cost):
                    return
                await self._backoff(record, exc, attempts)
            except RecordError as exc:
                self._count_status(exc.status)
                self._fail(record, exc, attempts)
                return
            except FatalError:
                raise
            except Exception as exc:  # a sink bug: fail this record, keep the run going
                self.log.exception("sink_error", key=record.key, line=record.line)
                self._fail(record, TransientError(f"unexpected error: {type(exc).__name__}: {exc}"), attempts)
                return
            else:
                status = result.status if result is not None else None
                self._count_status(status)
                self.budget.refund()
                self.limiter.on_success(sent_at)
                if result is not None and result.rate_limit is not None:
                    self._honour_rate_limit_headers(result.rate_limit)
                self._succeed(record, status, attempts)
                return

    async def _wait_for_slot(self) -> None:
        assert self.limiter is not None
        while True:
            await self.pause.wait()
            await self.limiter.acquire()
            if not self.pause.remaining():
                return

    def _honour_rate_limit_headers(self, hint: Any) -> None:
        # The server says the window is spent: pause until it resets instead of
        # spending requests to learn the same thing from 429s.
        if hint.remaining is not None and hint.remaining <= 0 and hint.reset:
            seconds = min(hint.reset, self.settings.retry.retry_after_max)
            already_paused = self.pause.remaining() > 0
            if self.pause.pause_for(seconds) and not already_paused:
                self.log.info("paused", seconds=round(seconds, 3), reason="rate limit window spent")

    def _may_retry(self, record: Record, exc: TransientError, attempts: int, cost: int) -> bool:
        if attempts >= self.settings.retry.max_attempts:
            reason = f"gave up after {attempts} attempts: {exc.reason}"
        elif not self.budget.withdraw(cost):
            reason = f"retry budget exhausted (last error: {exc.reason})"
        else:
            self.counters.retries += 1
            return True
        self.log.warning("give_up", key=record.key, line=record.line, attempt=attempts, status=exc.status, reason=reason)
        self._fail(record, TransientError(reason, status=exc.status, detail=exc.detail), attempts)
        return False

    async def _backoff(self, record: Record, exc: TransientError, attempts: int) -> None:
        retry = self.settings.retry
        delay = backoff_delay(attempts, base=retry.backoff_base, cap=retry.backoff_cap)
        self._log_retry(record, exc, attempts, delay)
        await trio.sleep(delay)

    def _log_retry(self, record: Record, exc: TransientError, attempts: int, delay: float) -> None:
        self.log.info(
            "retry", key=record.key, line=record.line, attempt=attempts, status=exc.status, delay=round(delay, 3), reason=exc.reason
        )

    def _count_status(self, status: int | None) -> None:
        if status is not None:
            self.counters.by_status[str(status)] += 1

    # -- outcomes ------------------------------------------------------------------

    def _succeed(self, record: Record, status: int | None, attempts: int) -> None:
        self.counters.ok += 1
        if not self.dry_run:
            self._checkpoint(record, OK, status, attempts, retryable=False, error=None)
            if self.successes is not None:
                self.successes.write(key=record.key, line=record.line, status=status, attempts=attempts)
        if self._hook_record_done:
            outcome = "dry_run" if self.dry_run else "ok"
            self.pm.hook.record_done(run_id=self.run_id, line=record.line, key=record.key, outcome=outcome, status=status, attempts=attempts)
        self._check_failure_rate()

    def _fail(self, record: Record, exc: RecordError, attempts: int) -> None:
        self.counters.failed += 1
        if not self.dry_run:
            self._checkpoint(record, FAILED, exc.status, attempts, retryable=exc.retryable, error=exc.reason)
        self.rejects.write(
            line=record.line,
            key=record.key,
            stage="sink",
            plugin=self.sink.name,
            reason=exc.reason,
            raw=record.raw,
            status=exc.status,
            detail=exc.detail,
            attempts=attempts,
            retryable=exc.retryable,
        )
        self.log.warning(
            "record_failed", key=record.key, line=record.line, status=exc.status, reason=exc.reason, attempts=attempts, retryable=exc.retryable
        )
        if self._hook_record_done:
            self.pm.hook.record_done(run_id=self.run_id, line=record.line, key=record.key, outcome="failed", status=exc.status, attempts=attempts)
        self._check_failure_rate()

    def _checkpoint(self, record: Record, outcome: str, status: int | None, attempts: int, *, retryable: bool, error: str | None) -> None:
        if self.state is not None and record.key is not None:
            self.state.record(
                Outcome(record.key, content_hash(record.data), outcome, retryable, status, attempts, error, record.line)
            )

    def _skip(self, record: Record, before: PreviousOutcome) -> None:
        if before.outcome == FAILED:
            # Refused for good by an earlier run and unchanged since: not sent again, but
            # still a failure of this input, so it stays in the rejects and the exit code.
            self.counters.failed += 1
            reason = f"{before.error} (an earlier run; not sent again: use --retry-rejected to resend)"
            self.log.warning("record_failed", key=record.key, line=record.line, status=before.status, reason=reason, attempts=0, retryable=False)
            self.rejects.write(
                line=record.line, key=record.key, stage="sink", plugin=self.sink.name, reason=reason,
                raw=record.raw, status=before.status, attempts=0, retryable=False,
            )
            outcome = "failed"
        else:
            self.counters.skipped += 1
            outcome = "skipped"
        if self._hook_record_done:
            self.pm.hook.record_done(run_id=self.run_id, line=record.line, key=record.key, outcome=outcome, status=before.status, attempts=0)

    def _check_failure_rate(self) -> None:
        limit = self.settings.max_failure_rate
        counters = self.counters
        if limit is None or self._stopping or counters.done < self.settings.min_records_for_failure_rate:
            return
        share = (counters.failed + counters.rejected) / counters.done
        if share > limit:
            self._stop_reason = (
                f"{share:.0%} of the first {counters.done} records were rejected or failed "
                f"(run.max_failure_rate is {limit:.0%}): check the mapping and the credentials"
            )
            self.log.error("failure_rate_exceeded", share=round(share, 4), records=counters.done, max_failure_rate=limit)
            self._stop_gracefully()

    def _stop_gracefully(self) -> None:
        """Stop reading; let in-flight sends finish within the drain deadline."""
        self._stopping = True
        self._open_scope.cancel()  # nothing was sent yet if the sink is still opening
        self._reader_scope.cancel()
        self._workers_scope.deadline = trio.current_time() + self.settings.drain_timeout

    def _reject(self, rejection: _Rejection) -> None:
        record = rejection.record
        self.counters.rejected += 1
        self.rejects.write(
            line=record.line, key=record.key, stage=rejection.stage, plugin=rejection.plugin, reason=rejection.reason, raw=record.raw
        )
        self.log.info("record_rejected", line=record.line, stage=rejection.stage, plugin=rejection.plugin, reason=rejection.reason)
        if self._hook_record_done:
            self.pm.hook.record_done(run_id=self.run_id, line=record.line, key=record.key, outcome="rejected", status=None, attempts=0)
        self._check_failure_rate()

    # -- progress, signals and the end ---------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return the run's statistics now (see the ``run_progress`` hook)."""
        counters = self.counters
        assert self.limiter is not None
        done, total = self.source.progress()
        return {
            "records": {
                "read": counters.read,
                "ok": counters.ok,
                "rejected": counters.rejected,
                "failed": counters.failed,
                "skipped": counters.skipped,
                "in_flight": len(self._in_flight),
            },
            "requests": {
                "attempts": counters.attempts,
                "retries": counters.retries,
                "throttled": counters.throttled,
                "by_status": dict(counters.by_status),
            },
            "retry_budget": {"balance": self.budget.balance, "capacity": self.budget.capacity},
            "rate_limit_per_s": self.limiter.statistics().rate,
            "paused_s": round(self.pause.remaining(), 3),
            "paused_total_s": round(self.pause.paused_seconds, 3),
            "progress": {"done": done, "total": total},
            "elapsed_s": round(time.monotonic() - counters.started, 3),
        }

    async def _report_progress(self) -> None:
        if self.progress_bar is None and not self._hook_run_progress:
            return
        with self.progress_bar if self.progress_bar is not None else contextlib.nullcontext():
            try:
                while True:
                    self._publish_progress()
                    await trio.sleep(_PROGRESS_INTERVAL)
            finally:
                self._publish_progress()  # the final figures, when the run ends

    def _publish_progress(self) -> None:
        snapshot = self.snapshot()
        if self.progress_bar is not None:
            self.progress_bar.update(snapshot)
        if self._hook_run_progress:
            self.pm.hook.run_progress(run_id=self.run_id, snapshot=snapshot)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self._signal is None:
                    self._signal = signal.Signals(signum)
                    self._stop_gracefully()
                    self.log.warning(
                        "stopping", signal=self._signal.name, in_flight_deadline_s=self.settings.drain_timeout,
                        hint="press Ctrl-C again to stop at once",
                    )
                else:
                    self.log.warning("stopping_now", signal=signal.Signals(signum).name)
                    self._workers_scope.cancel()

    def _finish(self, started_at: datetime.datetime, aborted: str | None) -> RunResult:
        counters = self.counters
        finished_at = datetime.datetime.now(datetime.timezone.utc)
        duration = (finished_at - started_at).total_seconds()
        assert self.limiter is not None
        if self._signal is not None:
            exit_code = EXIT_SIGNAL[self._signal]
        elif aborted or counters.rejected or counters.failed:
            exit_code = EXIT_FAILURES
        else:
            exit_code = EXIT_OK
        report: dict[str, Any] = {
            "run_id": self.run_id,
            "pipeline": self.config.model.pipeline,
            "config": self.config.path,
            "dry_run": self.dry_run,
            "started_at": _iso(started_at),
            "finished_at": _iso(finished_at),
            "duration_s": round(duration, 3),
            "exit_code": exit_code,
            "interrupted_by": self._signal.name if self._signal else None,
            "aborted": aborted,
            "records": {
                "read": counters.read,
                "ok": counters.ok,
                "rejected": counters.rejected,
                "failed": counters.failed,
                "skipped": counters.skipped,
                "not_processed": max(0, counters.read - counters.done - counters.skipped),
            },
            "requests": {
                "attempts": counters.attempts,
                "retries": counters.retries,
                "throttled": counters.throttled,
                "by_status": dict(sorted(counters.by_status.items())),
                "pauses": self.pause.pauses,
                "paused_s": round(self.pause.paused_seconds, 3),
                "retry_budget_exhausted": self.budget.exhausted,
                "rate_limit_per_s": self.limiter.statistics().rate,
            },
            "rate_per_s": round(counters.ok / duration, 1) if duration > 0 else None,
            "files": {
                "report": self.report_path,
                "rejects": self.rejects.path if self.rejects.count else None,
                "success": self.successes.path if self.successes is not None else None,
                "state": self.state.path if self.state is not None else None,
            },
        }
        write_report(self.report_path, report)
        self.pm.hook.run_finished(run_id=self.run_id, report=report)
        self.log.info(
            "run_finished",
            exit_code=exit_code,
            duration_s=report["duration_s"],
            **{f"records_{k}": v for k, v in report["records"].items()},
            retries=counters.retries,
            throttled=counters.throttled,
            rate_per_s=report["rate_per_s"],
            rejects=report["files"]["rejects"],
            report=self.report_path,
        )
        return RunResult(exit_code, report)
