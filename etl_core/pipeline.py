"""The run, one stage per module, following the data:

    source -> transforms -> Reader -> Delivery -> sink -> Ledger
              (_reader.py: batches,    (_delivery.py: pause,      (_ledger.py: counts,
               duplicates, resume)      rate limiter, retry        rejects, state, logs,
                                        budget, backoff)           hooks, report)

:func:`run_pipeline` opens the sink and the state, starts the reader and a pool of
workers, and writes the report at the end however the run ends (done, Ctrl-C, a fatal
error, a bug). Each worker is the loop in :meth:`_Run._work`: take a record, deliver
it, book the result, wait for its checkpoint (for a sink that sends in batches,
:func:`~etl_core._batching.send_batches` does the same a batch at a time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import pluggy
import structlog
import trio

from ._batching import BatchDelivery, make_delivery, send_batches
from ._delivery import Delivery
from ._errors import ConfigError, FatalError, PluginError
from ._files import RunFiles
from ._input_check import check_before_sending
from ._ledger import Ledger, RecordCounts
from ._log_stage import bind_stage, in_stage, stage_of
from ._reader import Reader
from ._shard import SHARD_NEEDS_KEY, Shard, shard_report
from ._shared_limiter import SharedRateLimiter, share_quota
from .base import RunContext, Sink, Source, Transform
from .config import PipelineConfig, RunSettings
from .logging import get_logger, redact_data
from .progress import InputCount, ProgressBar
from .ratelimit import AdaptiveRateLimiter
from .report import run_report, save_report

#: Exit codes, as documented in docs/exit-codes.md.
EXIT_OK, EXIT_FAILURES = 0, 1  # and EXIT_USAGE (2) in cli.py
#: The destination looks unavailable: the run stopped early, a rerun later sends the rest
#: (EX_TEMPFAIL of sysexits.h).
EXIT_UNAVAILABLE = 75
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

#: A worker yields to the event loop at least this often, even when the sink never waits.
_YIELD_EVERY = 64
#: Seconds between progress snapshots (progress bar, run_progress hook).
_PROGRESS_INTERVAL = 1.0
#: Seconds the sink may take to close at the end of a run.
_CLOSE_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run a pipeline, beyond its config file (the command line's flags).

    Attributes:
        dry_run: Read, transform and validate, describe the requests, send nothing.
        workers: Override ``run.workers``.
        fresh: Forget the checkpoints of earlier runs (``--fresh``).
        retry_rejected: Send again records an earlier run saw refused for good (``--retry-rejected``).
        show_progress: Draw a progress bar on stderr when it is a terminal.
        output_dir: Write the report, rejects and state here instead of ``output.dir``.
        handle_signals: Stop gracefully on SIGINT/SIGTERM (only possible in the main thread).
        shard: Handle only this shard's records (``--shard K/N``), with its own lease,
            report and rejects file; every record when None.
    """

    dry_run: bool = False
    workers: int | Literal["auto"] | None = None
    fresh: bool = False
    retry_rejected: bool = False
    show_progress: bool = False
    output_dir: str | None = None
    handle_signals: bool = True
    shard: Shard | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`run_pipeline`.

    Attributes:
        exit_code: 0 all done, 1 some records rejected or failed (or the run was
            aborted, or its report could not be written), 75 stopped because the
            destination looks unavailable, 130/143 interrupted by SIGINT/SIGTERM.
        report: The run report, as written to the report file.
        report_error: Why the report file could not be written (then ``report`` is
            the only copy), or None.
    """

    exit_code: int
    report: dict[str, Any]
    report_error: str | None = None


async def run_pipeline(
    config: PipelineConfig,
    pm: pluggy.PluginManager,
    options: RunOptions | None = None,
    *,
    source: Source | None = None,
    transforms: Sequence[Transform] | None = None,
    sink: Sink | None = None,
) -> RunResult:
    """Run a validated pipeline to the end.

    Args:
        config: The validated configuration.
        pm: The plugin manager (for the run-lifecycle hooks).
        options: How to run it (default: :class:`RunOptions` defaults).
        source: A source instance to use instead of the one the config describes.
        transforms: Transform instances to use instead of the config's.
        sink: A sink instance to use instead of the one the config describes.

    Returns:
        The exit code and the run report.

    Raises:
        ConfigError: A plugin's ``check()`` found a problem (nothing was read or sent).
    """
    source = source or config.source[0](config.source[1])
    transforms = list(transforms) if transforms is not None else [cls(opts) for cls, opts in config.transforms]
    sink = sink or config.sink[0](config.sink[1])
    run = _Run(config, pm, options or RunOptions(), source, transforms, sink)
    return await run.run()


def make_limiter(settings: RunSettings, quota: tuple[float, float] | None = None) -> AdaptiveRateLimiter:
    """The client-side rate limiter that ``run.rate`` describes.

    Args:
        settings: The run settings.
        quota: A quota (rate, burst) an earlier run measured, to start just under.
    """
    return AdaptiveRateLimiter(max_rate=settings.rate.max_rate, adaptive=settings.rate.adaptive, quota=quota)


def _open_limiter(
    settings: RunSettings, files: RunFiles, sink: Sink, options: RunOptions
) -> tuple[AdaptiveRateLimiter | SharedRateLimiter, str | None, bool]:
    """The run's rate limiter, the destination whose quota it remembers (if any), and
    whether it starts from a remembered quota."""
    rate, destination, quota = settings.rate, None, None
    if rate.remember and rate.adaptive and files.state is not None and not options.dry_run:
        destination = sink.destination() or None
        quota = files.remembered_quota(destination) if destination else None
    limiter = make_limiter(settings, quota)
    shard = options.shard
    if shard is not None and shard.count > 1 and rate.adaptive and not options.dry_run:
        # Shards sending to one destination keep together to its one quota.
        return share_quota(limiter, files.quota_board, sink.destination(), str(shard), shard.count), destination, quota is not None
    return limiter, destination, quota is not None


class _Run:
    """One run of a pipeline: its lifecycle, from the plugins' checks to the report."""

    def __init__(
        self,
        config: PipelineConfig,
        pm: pluggy.PluginManager,
        options: RunOptions,
        source: Source,
        transforms: list[Transform],
        sink: Sink,
    ) -> None:
        self.config, self.pm, self.options = config, pm, options
        self.source, self.transforms, self.sink = source, transforms, sink
        self.settings = config.model.run
        if options.workers is not None:
            self.settings = self.settings.model_copy(update={"workers": options.workers})
        self.run_id = uuid.uuid4().hex
        self.files = RunFiles(
            config, self.run_id, output_dir=options.output_dir, dry_run=options.dry_run, fresh=options.fresh, shard=options.shard
        )
        self.log = get_logger()
        self.progress_bar = ProgressBar.for_terminal(dry_run=options.dry_run) if options.show_progress else None
        self._hook_run_progress = bool(pm.hook.run_progress.get_hookimpls())
        self._input_count = InputCount(source)
        self._workers_scope = trio.CancelScope()
        self._open_scope = trio.CancelScope()
        self._stopping = False
        self._stop_reason: str | None = None
        self._stop_exit_code = EXIT_FAILURES
        self._signal: signal.Signals | None = None
        self._destination: str | None = None  # whose quota is remembered
        self._quota_remembered = False
        # Made in run(), where a trio loop runs.
        self.ledger: Ledger
        self.reader: Reader
        self.delivery: Delivery
        self.limiter: AdaptiveRateLimiter | SharedRateLimiter

    # -- the run -------------------------------------------------------------------

    async def run(self) -> RunResult:
        if self.options.shard is not None and self.config.model.key is None:
            raise ConfigError(SHARD_NEEDS_KEY, path="key", source=self.config.path)
        check_before_sending(self.config, self.source, self.transforms, self.sink)  # a wrong file: nothing is sent
        # Before anything is logged, written or sent: a second run at once changes nothing.
        self.files.take_lease()
        try:
            return await self._run_leased()
        finally:
            self.files.release_lease()

    async def _run_leased(self) -> RunResult:
        model = self.config.model
        structlog.contextvars.bind_contextvars(run_id=self.run_id, pipeline=model.pipeline, stage="run")
        if self.options.shard is not None:
            structlog.contextvars.bind_contextvars(shard=str(self.options.shard))
        started_at = datetime.datetime.now(datetime.UTC)
        self._started = trio.current_time()
        self.log.info(
            "run_started", config=self.config.path, source=model.source.type, sink=model.sink.type,
            workers=self.settings.workers, dry_run=self.options.dry_run,
        )
        try:
            self.pm.hook.run_started(run_id=self.run_id, pipeline=model.pipeline, config=self.config.masked())
        except Exception as exc:  # a plugin's bug: nothing was opened or sent yet
            raise PluginError(f"a run_started hook failed: {type(exc).__name__}: {exc}") from exc
        self._open_stages()
        aborted: str | None = None
        try:
            async with trio.open_nursery() as nursery:
                if self.options.handle_signals:
                    nursery.start_soon(self._watch_signals)
                if not self.options.dry_run:
                    with self._open_scope, in_stage("sink"):  # a signal cancels a slow open (e.g. token retries)
                        await self.sink.open(
                            RunContext(self.run_id, model.pipeline, self.files.output_dir, False, self.delivery.concurrency.pool_size)
                        )
                nursery.start_soon(self._report_progress)
                if not self._stopping:
                    await self._pump()
                nursery.cancel_scope.cancel()
        except* FatalError as group:
            aborted = "; ".join(dict.fromkeys(str(exc) for exc in _leaves(group)))
            self.log.error("run_aborted", reason=aborted, stage=stage_of(next(_leaves(group))))
        except* Exception as group:
            # A bug in a plugin or in the core: still write the report and keep the state
            # consistent, so that nothing done so far is lost and a rerun resumes.
            first = next(_leaves(group))
            aborted = f"internal error: {type(first).__name__}: {first}"
            self.log.error("run_crashed", reason=aborted, stage=stage_of(first), exc_info=first)
        finally:
            # Shielded from a second Ctrl-C, but bounded: a peer that never answers the
            # close must not keep the report and the checkpoints from being written.
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True), in_stage("sink"):
                try:
                    await self.sink.aclose()
                except Exception:
                    self.log.exception("sink_close_failed")
            with trio.CancelScope(shield=True):
                await self.limiter.aclose()
                quota = self.limiter.quota_to_remember()  # read here: it needs the event loop's clock
                close_error = await trio.to_thread.run_sync(self._close_files, quota)
            if close_error is not None and aborted is None:
                aborted = str(close_error)
        return self._finish(started_at, aborted)

    async def _pump(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.reader.run)
            with self._workers_scope:
                try:
                    async with trio.open_nursery() as workers:
                        if self.options.dry_run:
                            workers.start_soon(_describe_all, self.reader, self.delivery, self.ledger, lambda: self._stopping)
                        elif isinstance(self.delivery, BatchDelivery):
                            self.delivery.send_halves_in(workers)
                            for _ in range(self.delivery.concurrency.pool_size):
                                workers.start_soon(send_batches, self.reader, self.delivery, self.ledger, lambda: self._stopping)
                        else:
                            for _ in range(self.delivery.concurrency.pool_size):
                                workers.start_soon(self._work)
                finally:
                    await self.reader.aclose()

    async def _work(self) -> None:
        """One worker: take a record, deliver it, book the result, wait for its checkpoint."""
        bind_stage("sink")
        slots = self.delivery.concurrency.slots
        sent = 0
        while not self._stopping:
            async with slots:
                if self._stopping or (record := await self.reader.take()) is None:
                    return
                result = await self.delivery.deliver(record)
            if result is None:  # not sent: the run stops (see Delivery's on_unavailable)
                return
            self.ledger.record(record, result)
            await self.ledger.wait_for_commit()
            sent += 1
            if sent % _YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()

    # -- opening and closing -------------------------------------------------------

    def _open_stages(self) -> None:
        files = self.files
        files.open(self.source.fields)
        model = self.config.model
        self.ledger = Ledger(
            self.pm, self.run_id, self.settings, rejects=files.rejects, successes=files.successes, state=files.state,
            on_limit=self._stop_for,
        )
        self.limiter, self._destination, self._quota_remembered = _open_limiter(self.settings, files, self.sink, self.options)
        self.delivery = make_delivery(
            self.sink, self.settings, limiter=self.limiter, dry_run=self.options.dry_run,
            on_unavailable=lambda reason: self._stop_for(reason, exit_code=EXIT_UNAVAILABLE),
        )
        self.reader = Reader(
            self.source, self.transforms, self.settings, self.ledger, key_field=model.key, state=files.state,
            resend_permanent=self.options.retry_rejected or model.state.resend_permanent_failures,
            sink_name=self.sink.name, shard=self.options.shard,
            # A batch taken as soon as records are ready is then a full one.
            hand_over=self.delivery.batching.max_records if isinstance(self.delivery, BatchDelivery) else 1,
        )
        if not self.options.dry_run:
            self.ledger.start_commits()

    def _close_files(self, quota: tuple[float, float] | None) -> FatalError | None:
        """Close the source and every file, keeping ``quota`` (runs in a thread); return the first write error."""
        self.reader.close()
        return self.files.close(quota=quota, destination=self._destination)

    # -- stopping ------------------------------------------------------------------

    def _stop_for(self, reason: str, *, exit_code: int = EXIT_FAILURES) -> None:
        """Stop gracefully for ``reason``, which the report and the exit code then give."""
        if self._stop_reason is None:
            self._stop_reason, self._stop_exit_code = reason, exit_code
        self._stop_gracefully()

    def _stop_gracefully(self) -> None:
        """Stop reading; let in-flight sends finish within the drain deadline."""
        self._stopping = True
        self._open_scope.cancel()  # nothing was sent yet if the sink is still opening
        self.reader.stop()
        self.delivery.stop()  # records waiting out a pause or an outage are not sent
        self._workers_scope.deadline = trio.current_time() + self.settings.drain_timeout

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

    # -- progress and the report ---------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return the run's statistics now (see the ``run_progress`` hook)."""
        sent = self.delivery.statistics()
        done, total = self.source.progress()
        records, all_read = self.ledger.summary(), self.reader.all_read
        total_records = self._input_count.total(records["read"], all_read)
        if self.options.shard is not None and total_records is not None and not all_read:
            # The input's count is every shard's records: this shard's share of them so far.
            seen = records["read"] + self.reader.other_shards
            total_records = max(records["read"], round(total_records * records["read"] / seen)) if seen else None
        return {
            "records": {**records, "in_flight": sent.in_flight, "retrying": sent.retrying, "total": total_records},
            "requests": sent.requests(),
            "retry_budget": {"balance": sent.budget_balance, "capacity": sent.budget_capacity},
            "rate_limit_per_s": sent.rate_limit_per_s,
            "paused_s": sent.pause_remaining_s,
            "paused_total_s": sent.paused_s,
            "outage_s": sent.outage_now_s,
            "progress": {"done": done, "total": total, "end_of_input": all_read},
            "elapsed_s": round(trio.current_time() - self._started, 3),
        }

    async def _report_progress(self) -> None:
        if self.progress_bar is None and not self._hook_run_progress:
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._input_count.run)  # the total, for the bar's percentage
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

    def _finish(self, started_at: datetime.datetime, aborted: str | None) -> RunResult:
        finished_at = datetime.datetime.now(datetime.UTC)
        stopped_with = self._stop_exit_code if self._stop_reason is not None else None
        exit_code = _exit_code(self._signal, aborted, stopped_with, self.ledger.counts)
        sent = self.delivery.statistics()
        limiter = self.limiter.statistics()
        ledger = self.ledger
        report = run_report(
            run_id=self.run_id,
            config=self.config,
            dry_run=self.options.dry_run,
            started_at=started_at,
            finished_at=finished_at,
            exit_code=exit_code,
            interrupted_by=self._signal.name if self._signal else None,
            aborted=aborted or self._stop_reason,
            records=ledger.summary(),
            requests={**sent.requests(), "throttle_events": limiter.throttle_events},
            quota={
                "rate_per_s": limiter.quota_rate,
                "burst": limiter.quota_burst,
                "remembered": self._quota_remembered,
                "shared": limiter.shared,
            },
            files={
                "report": self.files.report_path,
                "rejects": ledger.rejects.path if ledger.rejects.count else None,
                "success": ledger.successes.path if ledger.successes is not None else None,
                "state": ledger.state.path if ledger.state is not None else None,
            },
            shard=shard_report(self.options.shard, self.reader.other_shards),
        )
        report = redact_data(report)  # a plugin's message may quote a credential: masked for the hook as for the file
        report_error = save_report(report, self.files.report_path, self.log)
        if report_error is not None and report["exit_code"] == EXIT_OK:
            report["exit_code"] = EXIT_FAILURES
        try:
            self.pm.hook.run_finished(run_id=self.run_id, report=report)
        except Exception:  # a plugin's bug: the run's outcome and its files stand
            self.log.exception("hook_failed", hook="run_finished")
        self.log.info(
            "run_finished",
            exit_code=report["exit_code"],
            duration_s=report["duration_s"],
            **{f"records_{k}": v for k, v in report["records"].items()},
            retries=sent.retries,
            throttled=sent.throttled,
            outages=sent.outages,
            rate_per_s=report["rate_per_s"],
            rejects=report["files"]["rejects"],
            report=report["files"]["report"],
        )
        return RunResult(report["exit_code"], report, report_error)


async def _describe_all(reader: Reader, delivery: Delivery, ledger: Ledger, stopping: Callable[[], bool]) -> None:
    """A dry run's one worker: describe and book the records, a batch at a time.

    Describing waits on nothing, so a pool of workers would only add a hand-over per
    record; a checkpoint per batch keeps signals and progress going.
    """
    bind_stage("sink")
    describe, book = delivery.describe, ledger.record
    while not stopping() and (records := await reader.take_batch()) is not None:
        for record in records:
            book(record, describe(record))
            if stopping():  # a guard tripped: the rest are not processed
                return
        await trio.lowlevel.checkpoint()


def _exit_code(signum: signal.Signals | None, aborted: str | None, stopped_with: int | None, counts: RecordCounts) -> int:
    """The run's exit code: a signal's, a crash's, a stop's, then whether any record was lost."""
    if signum is not None:
        return EXIT_SIGNAL[signum]
    if aborted:
        return EXIT_FAILURES
    if stopped_with is not None:
        return stopped_with
    return EXIT_FAILURES if counts.rejected or counts.failed else EXIT_OK


def _leaves(group: BaseExceptionGroup[Any]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
