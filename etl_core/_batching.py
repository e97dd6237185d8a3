"""Batch delivery: several records in one request, for sinks with a bulk endpoint.

A sink whose :meth:`~etl_core.Sink.batching` returns a :class:`~etl_core.Batching` is
sent to by :class:`BatchDelivery`: the policy of :class:`~etl_core._delivery.Delivery`
(pause, outage breaker, rate limiter, concurrency, retry budget, backoff), applied to
requests that carry several records.

* A worker waits for a sending slot, then takes a batch (:meth:`BatchDelivery.take`): the
  records ready by then, up to ``max_records`` and ``max_bytes``, never two with one key.
  Taking them only once the rate limit lets a request go fills the batch from the records
  read meanwhile: under a rate limit, requests are what is scarce.
* A batch is one request: one rate-limiter slot, one concurrency slot. A throttle or a
  transient error of the request as a whole retries the whole batch, as it would one record.
* The answer gives each record its own outcome, booked at once as if the record had been
  sent alone; records that failed for now are sent again together.
* A batch refused as a whole for its content (:class:`~etl_core.BatchRejected`) is split
  in halves, down to single records, so that one bad record never fails its neighbours.
  When a sending slot is free (no worker waits for one, e.g. at the end of the input), the
  second half goes out at once from a task of its own, in that slot, rather than after
  the first (see :meth:`BatchDelivery.send_halves_in`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import trio

from ._delivery import Delivery, DeliveryStatistics
from ._errors import BatchRejected, FatalError, PluginError, RecordError, ThrottledError, TransientError
from ._ledger import Ledger
from ._log_stage import bind_stage, mark_stage
from ._outcome import Outcome, Result
from ._reader import Reader
from .base import Batching, RateLimitHint, Record, SendResult, Sink
from .config import RunSettings
from .ratelimit import RateLimiter
from .retry import DestinationUnavailable, backoff_delay

#: Books one record's final outcome (:meth:`~etl_core._ledger.Ledger.record`).
Book = Callable[[Record, Result], None]
#: What ``send_batch`` says of one record.
ItemOutcome = SendResult | RecordError | None


@dataclasses.dataclass(slots=True, eq=False)
class _Halves:
    """The halves of one batch sent by tasks of their own: how many are out, whether one was stopped."""

    out: int = 0
    stopped: bool = False
    landed: trio.lowlevel.ParkingLot = dataclasses.field(default_factory=trio.lowlevel.ParkingLot)


class MalformedAnswer(Exception):
    """``send_batch`` returned something other than one outcome per record (a bug in the sink)."""


@dataclasses.dataclass(slots=True, eq=False)
class _Item:
    """A record of a batch being delivered, and how its sends went."""

    record: Record
    attempts: int = 0  # requests that carried it, splits included
    failures: int = 0  # of those, failed for now (held against run.retry.max_attempts)


def batching_of(sink: Sink) -> Batching | None:
    """Return how ``sink`` groups records into requests, checking that it can.

    Raises:
        PluginError: ``batching()`` failed or returned something else than a Batching or
            None, or the sink batches without implementing ``send_batch``.
    """
    try:
        batching = sink.batching()
    except Exception as exc:
        raise PluginError(f"sink {sink.name!r}: batching() failed: {type(exc).__name__}: {exc}") from exc
    if batching is None:
        return None
    if not isinstance(batching, Batching):
        raise PluginError(f"sink {sink.name!r}: batching() returned {batching!r}, not an etl_core.Batching or None")
    if type(sink).send_batch is Sink.send_batch:
        raise PluginError(f"sink {sink.name!r} sends in batches (batching() is not None) but does not implement send_batch()")
    return batching


def make_delivery(
    sink: Sink, settings: RunSettings, *, limiter: RateLimiter, dry_run: bool, on_unavailable: Callable[[str], None]
) -> Delivery:
    """The delivery a run needs: a :class:`BatchDelivery` for a batching sink, else a :class:`Delivery`.

    A dry run describes one record at a time whatever the sink's batching.
    """
    batching = None if dry_run else batching_of(sink)
    if batching is None:
        return Delivery(sink, settings, limiter=limiter, dry_run=dry_run, on_unavailable=on_unavailable)
    return BatchDelivery(sink, settings, batching, limiter=limiter, on_unavailable=on_unavailable)


async def send_batches(reader: Reader, delivery: BatchDelivery, ledger: Ledger, stopping: Callable[[], bool]) -> None:
    """One worker of a batching sink: take a batch, deliver it, book its records, wait for their checkpoints.

    A crash then re-sends at most the batches in flight, as it would the records in flight.
    """
    bind_stage("sink")
    slots = delivery.concurrency.slots
    while not stopping():
        async with slots:
            if stopping() or (taken := await delivery.take(reader)) is None:
                return
            records, probe = taken
            complete = await delivery.deliver_batch(records, ledger.record, probe=probe)
        if not complete:  # not all sent: the run stops (see Delivery's on_unavailable)
            return
        await ledger.wait_for_commit()


class BatchDelivery(Delivery):
    """Sends batches of records through a sink with the run's shared policy (see the module docstring).

    Args:
        sink: The opened sink, which implements ``send_batch``.
        settings: The run settings (``retry``).
        batching: How many records a request carries.
        limiter: The client-side rate limiter shared by every worker.
        on_unavailable: As for :class:`~etl_core._delivery.Delivery`.
    """

    def __init__(
        self,
        sink: Sink,
        settings: RunSettings,
        batching: Batching,
        *,
        limiter: RateLimiter,
        on_unavailable: Callable[[str], None] = lambda reason: None,
    ) -> None:
        super().__init__(sink, settings, limiter=limiter, on_unavailable=on_unavailable)
        self.batching = batching
        self._splits = 0
        self._halves_nursery: trio.Nursery | None = None

    def send_halves_in(self, nursery: trio.Nursery) -> None:
        """Send a split batch's second half at once, as a task of ``nursery``, when a sending slot is free.

        Without it (or without a free slot) the halves go one after the other. The batch
        still ends (:meth:`deliver_batch` returns) only once both halves have.
        """
        self._halves_nursery = nursery

    async def take(self, reader: Reader) -> tuple[list[Record], bool] | None:
        """Wait for a sending slot, then take the next batch: the next record, and those ready after it that fit.

        A batch ends at ``max_records`` records, before the record that would take it over
        ``max_bytes``, and before a record whose key it already holds (two updates of one
        key in one request could be applied in either order).

        Returns:
            The records, in input order, and whether their request is the outage breaker's
            probe (pass it on to :meth:`deliver_batch`); None at the end of the input, or
            when nothing more may be sent (see :meth:`stop`).
        """
        with reader.until_exhausted() as waiting:
            try:
                probe = await self._wait_for_slot()
            except DestinationUnavailable:
                return None
        if waiting.cancelled_caught:  # another worker took the last records meanwhile
            return None
        try:
            first = await reader.take()
        except BaseException:  # cancelled: let another probe go
            if probe:
                self.breaker.abandon_probe()
            raise
        if first is None:
            if probe:
                self.breaker.abandon_probe()
            return None
        max_records, max_bytes, size_of = self.batching.max_records, self.batching.max_bytes, self.sink.batch_size_of
        records, keys = [first], {first.key}
        size = size_of(first) if max_bytes is not None else 0

        def fits(record: Record) -> bool:
            nonlocal size
            if record.key is not None and record.key in keys:
                return False
            if max_bytes is not None:
                added = size_of(record)
                if size + added > max_bytes:
                    return False
                size += added
            keys.add(record.key)
            return True

        while len(records) < max_records and (record := reader.take_ready(fits)) is not None:
            records.append(record)
        return records, probe

    async def deliver_batch(self, records: list[Record], book: Book, *, probe: bool | None = None) -> bool:
        """Send ``records`` until each has an outcome, booking each one as soon as it has it.

        A batch waits for the records sent before it with one of its keys, so the last
        record read with a key is the last one applied.

        Args:
            records: The batch.
            book: Books a record's final outcome.
            probe: The sending slot :meth:`take` waited for (whether it is the breaker's
                probe), for the first request; None to wait for one.

        Returns:
            True when every record was booked; False when some could not be sent because
            the destination looks unavailable or :meth:`stop` was called (they have no
            outcome in this run).

        Raises:
            FatalError: The sink says the run cannot go on.
        """
        keys = [record.key for record in records if record.key is not None]
        earlier = list({id(event): event for key in keys if (event := self._last_of_key.get(key)) is not None}.values())
        done = trio.Event()
        for key in keys:
            self._last_of_key[key] = done
        self._in_flight_count += len(records)
        booked = 0

        def settle(item: _Item, result: Result) -> None:
            nonlocal booked
            booked += 1
            self._in_flight_count -= 1
            self._retrying.discard(id(item.record))
            book(item.record, result)

        try:
            for event in earlier:
                await event.wait()
            return await self._send_all([_Item(record) for record in records], settle, probe)
        finally:
            self._in_flight_count -= len(records) - booked
            self._retrying.difference_update(id(record) for record in records)
            done.set()
            for key in keys:
                if self._last_of_key.get(key) is done:
                    del self._last_of_key[key]

    async def _send_all(self, items: list[_Item], settle: Callable[[_Item, Result], None], held: bool | None) -> bool:
        """Send ``items`` in requests (retrying and splitting) until each is settled; False if stopped.

        ``held`` is a sending slot already taken for the first request (see :meth:`deliver_batch`).
        """
        halves = _Halves()
        sent = await self._send_groups(items, settle, held, halves)
        while halves.out:  # the halves sent by other tasks are part of this batch
            await halves.landed.park()
        return sent and not halves.stopped

    async def _send_half(
        self, items: list[_Item], settle: Callable[[_Item, Result], None], halves: _Halves, holder: object
    ) -> None:
        """Send a split batch's half in the free sending slot ``holder`` took (a task of its own)."""
        bind_stage("sink")
        try:
            if not await self._send_groups(items, settle, None, halves):
                halves.stopped = True
        finally:
            self.concurrency.slots.release_on_behalf_of(holder)
            halves.out -= 1
            halves.landed.unpark_all()

    def _free_slot(self) -> object | None:
        """Take a sending slot no worker waits for, on behalf of a new holder; None if there is none."""
        holder = object()
        try:
            self.concurrency.slots.acquire_on_behalf_of_nowait(holder)
        except trio.WouldBlock:  # none free, or a worker waits for one: it comes first
            return None
        return holder

    async def _send_groups(
        self, items: list[_Item], settle: Callable[[_Item, Result], None], held: bool | None, halves: _Halves
    ) -> bool:
        """Send ``items`` until each is settled or handed to a task of its own (a half in a free slot)."""
        groups = [items]  # a stack: a split's first half goes first
        while groups:
            group = groups.pop()
            try:
                probe = await self._slot(held)
            except DestinationUnavailable:
                return False
            held = None
            for item in group:
                item.attempts += 1
                self._retrying.discard(id(item.record))
            self._attempts += 1
            sent_at = trio.current_time()
            try:
                try:
                    answers = await self.sink.send_batch([item.record for item in group])
                finally:
                    self.concurrency.on_answer(trio.current_time() - sent_at, len(group))
                outcomes = _outcomes(answers, len(group))
            except BatchRejected as exc:
                self._count_status(exc.status)
                self.breaker.on_alive(probe=probe)
                self.limiter.on_success(sent_at)  # refused for its content, not for the rate: it spent quota
                if len(group) == 1:
                    settle(group[0], self._failure(exc, group[0].attempts))
                else:
                    first, second = self._split(group, exc)
                    if self._halves_nursery is not None and (holder := self._free_slot()) is not None:
                        halves.out += 1
                        self._halves_nursery.start_soon(self._send_half, second, settle, halves, holder)
                        groups.append(first)
                    else:
                        groups += [second, first]
            except ThrottledError as exc:
                self._count_status(exc.status)
                self._throttled += 1
                delay = exc.retry_after if exc.retry_after is None else min(exc.retry_after, self._retry.retry_after_max)
                if self._outage(group[0].record, exc, sent_at, probe, delay):
                    groups.append(_uncharged(group))
                    continue
                cost = self._learn_from_throttle(exc, sent_at, delay)
                if delay is not None:
                    self._pause(delay, "warning", status=exc.status)
                if again := self._may_retry_items([(item, exc) for item in group], cost, settle):
                    await self._wait_to_retry(again, exc, delay)
                    groups.append(again)
            except TransientError as exc:
                self._count_status(exc.status)
                if self._outage(group[0].record, exc, sent_at, probe, None):
                    groups.append(_uncharged(group))
                    continue
                if again := self._may_retry_items([(item, exc) for item in group], self._retry.transient_cost, settle):
                    await self._wait_to_retry(again, exc, None)
                    groups.append(again)
            except RecordError as exc:  # the request as a whole refused for good (e.g. an unknown list)
                self._count_status(exc.status)
                self.breaker.on_alive(probe=probe)
                self.limiter.on_success(sent_at)
                for item in group:
                    settle(item, self._failure(exc, item.attempts))
            except FatalError as exc:
                mark_stage(exc, "sink")
                raise
            except Exception as exc:  # noqa: BLE001 - a sink bug (or an answer that does not fit): fail, go on
                if probe:
                    self.breaker.abandon_probe()
                self._log.exception("sink_error", line=group[0].record.line, records=len(group))
                problem = str(exc) if isinstance(exc, MalformedAnswer) else f"unexpected error: {type(exc).__name__}: {exc}"
                for item in group:
                    settle(item, self._failure(TransientError(problem), item.attempts))
            except BaseException:  # cancelled (a signal, the drain deadline): let another probe go
                if probe:
                    self.breaker.abandon_probe()
                raise
            else:
                self.breaker.on_alive(probe=probe)
                self.budget.refund()
                if failed := self._settle_answers(group, outcomes, sent_at, settle):
                    if again := self._may_retry_items(failed, self._retry.transient_cost, settle):
                        await self._wait_to_retry(again, failed[0][1], None)
                        groups.append(again)
        return True

    async def _slot(self, held: bool | None) -> bool:
        """The slot ``held`` when it is still good, else wait for one; True for the breaker's probe.

        A pause or an outage may have started while the batch waited for an earlier one
        with one of its keys.
        """
        if held is not None:
            pause = self.pause
            if not (pause.remaining() or pause.spent or (self.breaker.is_open and not held)):
                return held
            if held:
                self.breaker.abandon_probe()
        return await self._wait_for_slot()

    def _settle_answers(
        self, group: list[_Item], outcomes: list[ItemOutcome], sent_at: float, settle: Callable[[_Item, Result], None]
    ) -> list[tuple[_Item, TransientError]]:
        """Book each record's outcome from a request's answer; return those that failed for now."""
        failed: list[tuple[_Item, TransientError]] = []
        left_at: float | None = None
        hint: RateLimitHint | None = None
        for item, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, RecordError):
                self._count_status(outcome.status)
                if isinstance(outcome, TransientError):
                    failed.append((item, outcome))
                else:
                    settle(item, self._failure(outcome, item.attempts))
                continue
            status = None if outcome is None else outcome.status
            self._count_status(status)
            if outcome is not None:
                left_at = outcome.sent_at if left_at is None else left_at
                hint = outcome.rate_limit or hint
            settle(item, Result(Outcome.OK, "sink", self.sink.name, status=status, attempts=item.attempts))
        self.limiter.on_success(sent_at if left_at is None else left_at)
        if hint is not None:
            self._honour_rate_limit_headers(hint)
        return failed

    def _split(self, group: list[_Item], exc: BatchRejected) -> tuple[list[_Item], list[_Item]]:
        """Split a batch refused as a whole: its first half and its second."""
        self._splits += 1
        self._log.info("batch_split", line=group[0].record.line, records=len(group), status=exc.status, reason=exc.reason)
        half = len(group) // 2
        return group[:half], group[half:]

    def _may_retry_items(
        self, failed: list[tuple[_Item, TransientError]], cost: int, settle: Callable[[_Item, Result], None]
    ) -> list[_Item]:
        """Return the records that may be sent again; settle the others (attempts or budget spent).

        Sending them again is one request: the retry budget pays ``cost`` once for it.
        """
        max_attempts = self._retry.max_attempts
        again: list[_Item] = []
        spent: list[tuple[_Item, str, TransientError]] = []
        for item, exc in failed:
            item.failures += 1
            if item.failures >= max_attempts:
                spent.append((item, f"gave up after {item.attempts} attempts: {exc.reason}", exc))
            else:
                again.append(item)
        if again and not self.budget.withdraw(cost):
            errors = dict(failed)
            spent += [(item, f"retry budget exhausted (last error: {errors[item].reason})", errors[item]) for item in again]
            again = []
        if spent:
            item, reason, exc = spent[0]
            self._log.warning(
                "give_up", line=item.record.line, records=len(spent), attempt=item.attempts, status=exc.status, reason=reason
            )
            for item, reason, exc in spent:
                settle(item, self._failure(TransientError(reason, status=exc.status, detail=exc.detail), item.attempts))
        if again:
            self._retries += 1
            self._retrying.update(id(item.record) for item in again)
        return again

    async def _wait_to_retry(self, again: list[_Item], exc: TransientError, pause: float | None) -> None:
        """Back off before sending ``again`` (unless a shared pause of ``pause`` seconds does the waiting)."""
        failures = max(item.failures for item in again)
        delay = backoff_delay(failures, base=self._retry.backoff_base, cap=self._retry.backoff_cap) if pause is None else pause
        self._log.info(
            "retry", line=again[0].record.line, records=len(again), attempt=failures, status=exc.status,
            delay=round(delay, 3), reason=exc.reason,
        )
        if pause is None:
            await trio.sleep(delay)

    def statistics(self) -> DeliveryStatistics:
        """Return what has been sent so far, the batches split included."""
        return dataclasses.replace(super().statistics(), batch_splits=self._splits)


def _uncharged(group: list[_Item]) -> list[_Item]:
    """``group``, its last send not charged to its records (it failed with an outage)."""
    for item in group:
        item.attempts -= 1
    return group


def _outcomes(answers: object, count: int) -> list[ItemOutcome]:
    """Check that ``send_batch`` answered one outcome per record, and return them.

    Raises:
        MalformedAnswer: It did not (a bug in the sink: the records fail, a rerun sends them).
    """
    if not isinstance(answers, Sequence) or isinstance(answers, str | bytes):
        raise MalformedAnswer(f"the sink answered a batch with {type(answers).__name__}, not a list of outcomes")
    if len(answers) != count:
        raise MalformedAnswer(f"the sink answered {len(answers)} outcomes for a batch of {count} records")
    for answer in answers:
        if answer is not None and not isinstance(answer, SendResult | RecordError):
            raise MalformedAnswer(f"the sink answered {answer!r} for a record of a batch, not a SendResult or a RecordError")
    return list(answers)
