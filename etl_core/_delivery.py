"""Delivery: sends one record until it has an outcome, under the run's shared policy.

The sink sends and classifies; :class:`Delivery` decides what each classification
means for the run. Every worker shares one instance, so the pause (Retry-After), the
outage breaker, the rate limiter, the retry budget and the order of records with the
same key are pool-wide, not per worker.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import trio

from ._breaker import OutageBreaker
from ._concurrency import Concurrency
from ._errors import FatalError, RecordError, ThrottledError, TransientError
from ._log_stage import mark_stage
from ._outcome import Outcome, Result
from .base import RateLimitHint, Record, Sink
from .config import RunSettings
from .logging import get_logger
from .ratelimit import RateLimiter
from .retry import DestinationUnavailable, RetryBudget, SharedPause, backoff_delay

#: Dry runs log the first few requests at info level, the rest at debug.
_DRY_RUN_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class DeliveryStatistics:
    """What :class:`Delivery` has done so far (for progress snapshots and the report).

    Attributes:
        in_flight: Records being sent now.
        retrying: Of those, records waiting to be sent again now (a backoff, a pause).
        concurrency: Records that may be sent at once now.
        attempts: Send attempts, retries included.
        retries: Attempts that were retries.
        throttled: Attempts answered with a throttle (429/503).
        by_status: Attempts by the status of their answer.
        pauses: Shared pauses started (Retry-After, or a spent rate-limit window).
        paused_s: Seconds paused in all.
        pause_remaining_s: Seconds left in the current pause.
        budget_balance: The retry budget's balance.
        budget_capacity: The retry budget's capacity.
        budget_exhausted: Retries refused because the budget was spent.
        rate_limit_per_s: The client-side rate limit now, or None when unlimited.
        outages: Outages seen (the outage breaker opened).
        outage_s: Seconds the destination was down in all, the current outage included.
        outage_now_s: Seconds the current outage has lasted (0 when the destination is up).
        probes: Probes sent while the destination was down.
        batch_splits: Batches refused as a whole and sent again in halves.
    """

    in_flight: int
    retrying: int
    concurrency: int
    attempts: int
    retries: int
    throttled: int
    by_status: dict[str, int]
    pauses: int
    paused_s: float
    pause_remaining_s: float
    budget_balance: int
    budget_capacity: int
    budget_exhausted: int
    rate_limit_per_s: float | None
    outages: int
    outage_s: float
    outage_now_s: float
    probes: int
    batch_splits: int = 0

    def requests(self) -> dict[str, Any]:
        """The ``requests`` section of progress snapshots and of the report."""
        return {
            "attempts": self.attempts,
            "retries": self.retries,
            "throttled": self.throttled,
            "by_status": self.by_status,
            "pauses": self.pauses,
            "paused_s": self.paused_s,
            "retry_budget_exhausted": self.budget_exhausted,
            "rate_limit_per_s": self.rate_limit_per_s,
            "concurrency": self.concurrency,
            "outages": self.outages,
            "outage_s": self.outage_s,
            "probes": self.probes,
            "batch_splits": self.batch_splits,
        }


class Delivery:
    """Sends records through a sink with the run's pause, rate limit, retry budget and backoff.

    Args:
        sink: The opened sink.
        settings: The run settings (``retry``).
        limiter: The client-side rate limiter shared by every worker.
        dry_run: Describe each request instead of sending it.
        on_unavailable: Called once, with the reason, when the destination looks
            unavailable (it asked for more than ``run.retry.max_paused`` of pauses in
            all, or was down longer than ``run.max_outage``): the run must stop.
            Records not yet sent then stay without an outcome.
    """

    def __init__(
        self,
        sink: Sink,
        settings: RunSettings,
        *,
        limiter: RateLimiter,
        dry_run: bool = False,
        on_unavailable: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.sink = sink
        self.limiter = limiter
        self.pause = SharedPause(max_total=settings.retry.max_paused)
        self._on_unavailable = on_unavailable
        self.budget = RetryBudget(settings.retry.budget, settings.retry.success_refund)
        self.breaker = OutageBreaker(
            max_outage=settings.max_outage, probe_base=settings.retry.backoff_base, probe_cap=settings.retry.probe_cap,
            on_expired=on_unavailable,
        )
        self._retry = settings.retry
        self._dry_run, self._dry_run_shown = dry_run, 0
        self._dry_run_debug: bool | None = None  # whether dry_run_request is logged after the first few
        self._dry_run_result = Result(Outcome.DRY_RUN, "sink", sink.name)  # immutable: one for every record
        self._last_of_key: dict[str, trio.Event] = {}  # set when the last record with that key is done
        self._in_flight_count = 0
        self._retrying: set[int] = set()  # id() of the records waiting to be sent again
        self._attempts = self._retries = self._throttled = 0
        self._by_status: collections.Counter[str] = collections.Counter()
        self._reacted_at = -math.inf  # when the pool last reacted to a throttle
        self._log = get_logger()
        self.concurrency = Concurrency(settings.workers, settings.max_workers, limiter)

    async def deliver(self, record: Record) -> Result | None:
        """Send ``record`` (retrying as the policy allows) and return its final result.

        Two records with one key are sent one after the other, in input order, so the
        last one read is the last one applied.

        Returns:
            The result, or None when the record could not be sent because the
            destination looks unavailable (see ``on_unavailable``) or :meth:`stop` was
            called: it has no outcome in this run.

        Raises:
            FatalError: The sink says the run cannot go on.
        """
        if self._dry_run:
            return self.describe(record)
        key = record.key
        if key is None:
            return await self._send_counted(record)
        # A chain per key: each record waits for the one before it with that key.
        earlier = self._last_of_key.get(key)
        done = self._last_of_key[key] = trio.Event()
        try:
            if earlier is not None:
                await earlier.wait()
            return await self._send_counted(record)
        finally:
            done.set()
            if self._last_of_key.get(key) is done:
                del self._last_of_key[key]

    async def _send_counted(self, record: Record) -> Result | None:
        """Send ``record``, counted in flight (and retrying, between its attempts) meanwhile."""
        self._in_flight_count += 1
        try:
            return await self._send_with_retries(record)
        finally:
            self._in_flight_count -= 1
            self._retrying.discard(id(record))

    def describe(self, record: Record) -> Result:
        """Describe ``record`` instead of sending it (a dry run), logging the request.

        Returns:
            A dry-run result, or the failure of a record the sink cannot describe.

        Raises:
            FatalError: The sink says the run cannot go on.
        """
        try:
            request = self.sink.describe(record)
        except RecordError as exc:
            return self._failure(exc, attempts=0)
        except Exception as exc:  # FatalError, or a bug in the sink: the run stops, the sink's doing
            mark_stage(exc, "sink")
            raise
        self._dry_run_shown += 1
        if self._dry_run_shown <= _DRY_RUN_SHOWN:
            self._log.info("dry_run_request", line=record.line, key=record.key, request=request)
        else:
            if self._dry_run_debug is None:  # asked once, when the logging is set up: a filtered call still costs
                self._dry_run_debug = self._log.is_enabled_for(logging.DEBUG)
            if self._dry_run_debug:
                self._log.debug("dry_run_request", line=record.line, key=record.key, request=request)
        return self._dry_run_result

    async def _send_with_retries(self, record: Record) -> Result | None:
        retry = self._retry
        attempts = 0
        while True:
            try:
                probe = await self._wait_for_slot()
            except DestinationUnavailable:
                return None
            self._retrying.discard(id(record))
            sent_at = trio.current_time()
            attempts += 1
            self._attempts += 1
            try:
                try:
                    sent = await self.sink.send(record)
                finally:
                    self.concurrency.on_answer(trio.current_time() - sent_at)
            except ThrottledError as exc:
                self._count_status(exc.status)
                self._throttled += 1
                delay = exc.retry_after if exc.retry_after is None else min(exc.retry_after, retry.retry_after_max)
                if self._outage(record, exc, sent_at, probe, delay):
                    attempts -= 1
                    continue
                cost = self._learn_from_throttle(exc, sent_at, delay)
                if delay is not None:
                    self._pause(delay, "warning", status=exc.status, key=record.key)
                if (give_up := self._may_retry(record, exc, attempts, cost)) is not None:
                    return give_up
                if delay is None:
                    await self._backoff(record, exc, attempts)
                else:
                    self._log_retry(record, exc, attempts, delay)
            except TransientError as exc:
                self._count_status(exc.status)
                if self._outage(record, exc, sent_at, probe, None):
                    attempts -= 1
                    continue
                if (give_up := self._may_retry(record, exc, attempts, retry.transient_cost)) is not None:
                    return give_up
                await self._backoff(record, exc, attempts)
            except RecordError as exc:
                self._count_status(exc.status)
                self.breaker.on_alive(probe=probe)
                if exc.status is not None:  # answered: refused for its content, it still spent the quota
                    self.limiter.on_success(sent_at)
                return self._failure(exc, attempts)
            except FatalError as exc:
                mark_stage(exc, "sink")
                raise
            except Exception as exc:  # noqa: BLE001 - a sink bug: fail this record, keep the run going
                if probe:
                    self.breaker.abandon_probe()
                self._log.exception("sink_error", key=record.key, line=record.line)
                return self._failure(TransientError(f"unexpected error: {type(exc).__name__}: {exc}"), attempts)
            except BaseException:  # cancelled (a signal, the drain deadline): let another probe go
                if probe:
                    self.breaker.abandon_probe()
                raise
            else:
                status = sent.status if sent is not None else None
                self._count_status(status)
                self.breaker.on_alive(probe=probe)
                self.budget.refund()
                self.limiter.on_success(sent_at if sent is None or sent.sent_at is None else sent.sent_at)
                if sent is not None and sent.rate_limit is not None:
                    self._honour_rate_limit_headers(sent.rate_limit)
                return Result(Outcome.OK, "sink", self.sink.name, status=status, attempts=attempts)

    def _learn_from_throttle(self, exc: ThrottledError, sent_at: float, delay: float | None) -> int:
        """Let the limiter and the concurrency learn from a throttle; return what its retry costs."""
        if exc.status != 429 and delay is None:
            # A bare 503 is more likely an outage, which the breaker and the retry budget handle.
            return self._retry.throttled_cost
        holding = self.limiter.statistics().holding
        if self.limiter.on_throttle(sent_at if exc.sent_at is None else exc.sent_at, delay):
            self.concurrency.on_throttle(holding)
        # The budget pays once per rate-limit event: requests in flight when the pool reacted are its echo.
        cost = 0 if sent_at <= self._reacted_at else self._retry.throttled_cost
        self._reacted_at = max(self._reacted_at, trio.current_time())
        return cost

    def _outage(self, record: Record, exc: TransientError, sent_at: float, probe: bool, retry_after: float | None) -> bool:
        """Tell the breaker of a failure; True if it is the outage's (not charged to the record)."""
        if exc.status == 429:  # the destination is up, and only asks to slow down
            self.breaker.on_alive(probe=probe)
            return False
        return self.breaker.on_failure(
            record.line, sent_at, status=exc.status, reason=exc.reason, retry_after=retry_after, probe=probe
        )

    def _failure(self, exc: RecordError, attempts: int) -> Result:
        return Result(
            Outcome.FAILED, "sink", self.sink.name, status=exc.status, attempts=attempts, reason=exc.reason,
            detail=exc.detail, retryable=exc.retryable,
        )

    async def _wait_for_slot(self) -> bool:
        """Wait for the pause, the breaker and the rate limit; return True for the breaker's probe."""
        while True:
            await self.pause.wait()
            probe = await self.breaker.admit()
            try:
                await self.limiter.acquire()
            except BaseException:  # cancelled (a signal, the end of a batching sink's input): let another probe go
                if probe:
                    self.breaker.abandon_probe()
                raise
            pause = self.pause
            # Either may have started while the limiter held us: wait again, or stop.
            if not (pause.remaining() or pause.spent or (self.breaker.is_open and not probe)):
                return probe
            if probe:
                self.breaker.abandon_probe()

    def stop(self) -> None:
        """Send nothing more: records waiting for a pause or an outage to end return None."""
        self.pause.stop()
        self.breaker.stop()

    def _pause(self, seconds: float, level: str, **fields: Any) -> None:
        pause = self.pause
        already_paused, already_spent = pause.remaining() > 0, pause.spent
        if pause.pause_for(seconds):
            if not already_paused:
                getattr(self._log, level)("paused", seconds=round(seconds, 3), rate_limit=self.limiter.rate, **fields)
        elif pause.spent and not already_spent:
            reason = pause.spent_reason()
            self._log.error(
                "destination_unavailable", reason=reason, paused_s=round(pause.paused_seconds, 3), asked_s=round(seconds, 3)
            )
            self._on_unavailable(reason)

    def _honour_rate_limit_headers(self, hint: RateLimitHint) -> None:
        # The server says the window is spent: pause until it resets instead of
        # spending requests to learn the same thing from 429s.
        if hint.remaining is not None and hint.remaining <= 0 and hint.reset:
            self._pause(min(hint.reset, self._retry.retry_after_max), "info", reason="rate limit window spent")

    def _may_retry(self, record: Record, exc: TransientError, attempts: int, cost: int) -> Result | None:
        """None if ``record`` may be sent again; else its failure (attempts or budget spent)."""
        if attempts >= self._retry.max_attempts:
            reason = f"gave up after {attempts} attempts: {exc.reason}"
        elif not self.budget.withdraw(cost):
            reason = f"retry budget exhausted (last error: {exc.reason})"
        else:
            self._retries += 1
            self._retrying.add(id(record))
            return None
        self._log.warning("give_up", key=record.key, line=record.line, attempt=attempts, status=exc.status, reason=reason)
        return self._failure(TransientError(reason, status=exc.status, detail=exc.detail), attempts)

    async def _backoff(self, record: Record, exc: TransientError, attempts: int) -> None:
        delay = backoff_delay(attempts, base=self._retry.backoff_base, cap=self._retry.backoff_cap)
        self._log_retry(record, exc, attempts, delay)
        await trio.sleep(delay)

    def _log_retry(self, record: Record, exc: TransientError, attempts: int, delay: float) -> None:
        self._log.info(
            "retry", key=record.key, line=record.line, attempt=attempts, status=exc.status, delay=round(delay, 3),
            reason=exc.reason,
        )

    def _count_status(self, status: int | None) -> None:
        self._by_status.update([str(status)] if status is not None else [])

    def statistics(self) -> DeliveryStatistics:
        """Return what has been sent so far, and the state of the pause, budget and limiter."""
        pause, budget, breaker = self.pause, self.budget, self.breaker
        return DeliveryStatistics(
            in_flight=self._in_flight_count,
            retrying=len(self._retrying),
            concurrency=self.concurrency.limit,
            attempts=self._attempts,
            retries=self._retries,
            throttled=self._throttled,
            by_status=dict(sorted(self._by_status.items())),
            pauses=pause.pauses,
            paused_s=round(pause.paused_seconds, 3),
            pause_remaining_s=round(pause.remaining(), 3),
            budget_balance=budget.balance,
            budget_capacity=budget.capacity,
            budget_exhausted=budget.exhausted,
            rate_limit_per_s=self.limiter.statistics().rate,
            outages=breaker.outages,
            outage_s=round(breaker.outage_seconds + breaker.open_for(), 3),
            outage_now_s=round(breaker.open_for(), 3),
            probes=breaker.probes,
        )
