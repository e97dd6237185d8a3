"""The reader: source -> transforms -> keys -> duplicates and resume -> batches for the workers.

The source and the transforms run in a worker thread, a batch at a time, so reading
and mapping never block the event loop. Batches cross a bounded memory channel
(backpressure: a slow sink slows the reader, memory stays flat), and the workers share
the records of each batch from one queue, so every worker stays busy until the last one.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import trio

from ._errors import RecordRejected
from ._ledger import Ledger
from ._log_stage import bind_stage, staged
from ._outcome import Outcome, Result, Stage
from ._shard import Shard
from ._state_store import StateBackend
from .base import Record, Source, Transform
from .config import RunSettings
from .state import PreviousOutcome, SeenKeys, content_hash


@dataclasses.dataclass(slots=True)
class _Batch:
    """One batch as read: what to send, and the records already decided."""

    to_send: list[Record]
    decided: list[tuple[Record, Result]]
    read: int
    other_shards: int = 0  # read, but the keys of other shards: neither sent nor booked here


class Reader:
    """Reads, transforms and checks records, and hands them to the workers.

    Args:
        source: The source.
        transforms: The transforms, in order.
        settings: The run settings (``batch_size``, ``queue_batches``, ``duplicate_keys``).
        ledger: Books the records decided while reading (rejected, duplicate, skipped).
        key_field: The pipeline's ``key``, or None.
        state: The checkpoints of earlier runs, or None.
        resend_permanent: Send again records an earlier run saw refused for good.
        sink_name: The sink's name, for the records an earlier run saw it refuse.
        shard: Handle only this shard's records (see ``_shard.py``), or every record when None.
        hand_over: Records handed to the workers at once at least, ``batch_size`` when
            that is more: what one request of a sink that sends in batches carries, so
            that a batch taken as soon as records are ready is a full one.
    """

    def __init__(
        self,
        source: Source,
        transforms: list[Transform],
        settings: RunSettings,
        ledger: Ledger,
        *,
        key_field: str | None,
        state: StateBackend | None,
        resend_permanent: bool,
        sink_name: str,
        shard: Shard | None = None,
        hand_over: int = 1,
    ) -> None:
        self.source = source
        self.transforms = transforms
        self._settings = settings
        self._ledger = ledger
        self._key_field = key_field
        self._state = state
        self._resend_permanent = resend_permanent
        self._sink_name = sink_name
        self._shard = shard
        self._hand_over = max(settings.batch_size, hand_over)
        #: Records read that belong to other shards (only this shard's count as ``read``).
        self.other_shards = 0
        self._seen = SeenKeys() if key_field is not None else None
        self._records: Iterator[Record] | None = None
        self._send, self._receive = trio.open_memory_channel[list[Record]](settings.queue_batches)
        self._scope = trio.CancelScope()
        self._queue: collections.deque[Record] = collections.deque()
        self._refilling = False
        self._refilled = trio.lowlevel.ParkingLot()
        self._end_of_input = False
        self._until_exhausted: set[trio.CancelScope] = set()  # see until_exhausted()
        #: True once the source has yielded its last record (the records read are then all of them).
        self.all_read = False
        # Until a record passes the source and the transforms, every record read was
        # rejected (run.stop_if_first_rejected).
        self._passed_any = False

    # -- the reading task ----------------------------------------------------------

    async def run(self) -> None:
        """Read the whole source into the channel, booking the records decided on the way."""
        bind_stage("source")
        self._records = staged("source", self.source.read)  # its errors stop the run as the source's
        async with self._send:
            with self._scope:
                while True:
                    batch = await trio.to_thread.run_sync(self._next_batch)
                    self._ledger.counts.read += batch.read
                    self.other_shards += batch.other_shards
                    for record, result in batch.decided:
                        self._ledger.record(record, result)
                    first = self._settings.stop_if_first_rejected
                    if first is not None and not self._passed_any and self._ledger.counts.read >= first:
                        self._ledger.stop_for_rejections(first)  # the config does not fit the input
                        return
                    if not batch.read and not batch.other_shards:
                        self.all_read = True
                        return
                    if batch.to_send:
                        try:
                            await self._send.send(batch.to_send)
                        except trio.BrokenResourceError:
                            return  # the workers stopped (fatal error or shutdown)

    def stop(self) -> None:
        """Stop reading (records already handed over are still sent)."""
        self._scope.cancel()

    def _next_batch(self) -> _Batch:
        """Read, transform and check one batch against the state (runs in a worker thread)."""
        assert self._records is not None
        batch = _Batch([], [], 0)
        key_field = self._key_field
        records = self._records
        # A batch ends at batch_size records or batch_chars characters of input: wide
        # rows must not fill the memory (the queue holds queue_batches batches).
        chars_left = self._settings.batch_chars
        for _ in range(self._hand_over):
            if chars_left <= 0 or (record := next(records, None)) is None:
                break
            chars_left -= _chars(record)
            if record.error is not None:
                rejection: Result | None = _rejected("source", self.source.name, record.error)
                data = record.data
            else:
                data, rejection = apply_transforms(record.data, self.transforms)
            if rejection is None:
                self._passed_any = True
            # Before the duplicate and resume checks: another shard's keys are its own business.
            key = _key(data, key_field)
            if self._shard is not None and not self._shard.owns(key):
                batch.other_shards += 1
                continue
            batch.read += 1
            if rejection is not None:
                batch.decided.append((record, rejection))
                continue
            record.data = data
            record.key = key
            batch.to_send.append(record)
        if self._seen is not None:
            self._dedupe_and_resume(batch)
        return batch

    def _dedupe_and_resume(self, batch: _Batch) -> None:
        assert self._seen is not None
        candidates, batch.to_send = batch.to_send, []
        keyed = [(record.key, record.line) for record in candidates if record.key is not None]
        duplicates = self._seen.add(keyed) if keyed else {}
        previous = self._state.lookup([key for key, _ in keyed]) if self._state is not None else {}
        reject_duplicates = self._settings.duplicate_keys == "reject"
        for record in candidates:
            first_line = duplicates.get(record.line)
            if first_line is not None:
                if reject_duplicates:
                    batch.decided.append((record, duplicate_rejection(self._key_field, first_line)))
                else:
                    # The last one wins: send it (after the earlier one), whatever the state says.
                    batch.to_send.append(record)
                continue
            before = previous.get(record.key) if record.key is not None else None
            if before is not None and self._already_done(before, record):
                batch.decided.append((record, self._skipped(before)))
            else:
                batch.to_send.append(record)

    def _already_done(self, before: PreviousOutcome, record: Record) -> bool:
        refused_for_good = before.outcome is Outcome.FAILED and not before.retryable and not self._resend_permanent
        if before.outcome is Outcome.OK or refused_for_good:
            return before.hash == content_hash(record.data)
        return False

    def _skipped(self, before: PreviousOutcome) -> Result:
        if before.outcome is Outcome.FAILED:
            # Refused for good by an earlier run and unchanged since: not sent again, but
            # still a failure of this input, so it stays in the rejects and the exit code.
            reason = f"{before.error} (an earlier run; not sent again: use --retry-rejected to resend)"
            return Result(Outcome.FAILED, "sink", self._sink_name, status=before.status, reason=reason)
        return Result(Outcome.SKIPPED, "sink", self._sink_name, status=before.status)

    # -- the workers' side ---------------------------------------------------------

    async def take(self) -> Record | None:
        """Return the next record to send, or None at the end of the input."""
        queue = self._queue
        while not queue:
            if self._end_of_input:
                return None
            if self._refilling:
                # Another worker is fetching the next batch; it wakes us when it lands.
                await self._refilled.park()
                continue
            self._refilling = True
            try:
                queue.extend(await self._receive.receive())
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self._input_ended()
            finally:
                self._refilling = False
                self._refilled.unpark_all()
        return queue.popleft()

    def take_ready(self, accept: Callable[[Record], bool]) -> Record | None:
        """Return the next record if it is ready now and ``accept`` takes it, without waiting.

        For grouping records into one request: ``accept`` sees the next record (read but
        not yet taken); when it returns False the record stays next in line.

        Returns:
            The record, or None when none is ready now or ``accept`` refused it.
        """
        queue = self._queue
        if not queue and not self._refilling and not self._end_of_input:
            try:
                queue.extend(self._receive.receive_nowait())
            except trio.WouldBlock:
                pass
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self._input_ended()
        if queue and accept(queue[0]):
            return queue.popleft()
        return None

    async def take_batch(self) -> list[Record] | None:
        """Return every record ready to send at once, or None at the end of the input.

        For a single consumer that needs no per-record hand-over (a dry run); do not
        mix with :meth:`take` from other tasks.
        """
        if self._queue:
            records = list(self._queue)
            self._queue.clear()
            return records
        if self._end_of_input:
            return None
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self._input_ended()
            return None

    @contextlib.contextmanager
    def until_exhausted(self) -> Iterator[trio.CancelScope]:
        """A cancel scope for a wait before taking records, cancelled once none are left to take.

        A worker that waits for its request's sending slot before it takes the records
        then learns of the end of the input at once, instead of spending a slot of the
        rate limit to find nothing to send.
        """
        with trio.CancelScope() as scope:
            if self._end_of_input:
                scope.cancel()
            self._until_exhausted.add(scope)
            try:
                yield scope
            finally:
                self._until_exhausted.discard(scope)

    def _input_ended(self) -> None:
        """Mark the end of the input (the queue is empty then): nothing more to take."""
        self._end_of_input = True
        for scope in self._until_exhausted:
            scope.cancel()

    async def aclose(self) -> None:
        """Close the workers' end: a reader still sending stops."""
        await self._receive.aclose()

    def close(self) -> None:
        """Drop the duplicate-key index (blocks; call from a thread)."""
        if self._seen is not None:
            self._seen.close()


def apply_transforms(data: dict[str, Any], transforms: Sequence[Transform]) -> tuple[dict[str, Any], Result | None]:
    """Apply ``transforms`` in order to a record's fields, as a run does.

    Args:
        data: The record's fields as read.
        transforms: The transforms, in order.

    Returns:
        The fields as the last transform that accepted them returned them, and the
        rejection of the transform that refused them (None when none did). A transform
        that raises anything other than :class:`RecordRejected` (a plugin bug) rejects
        the record too, with the error as its reason.
    """
    for transform in transforms:
        try:
            data = transform.apply(data)
        except RecordRejected as exc:
            return data, _rejected("transform", transform.name, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a plugin bug must not kill the run
            return data, _rejected("transform", transform.name, f"unexpected error: {type(exc).__name__}: {exc}")
    return data, None


def duplicate_rejection(key_field: str | None, first_line: int) -> Result:
    """The rejection of a record whose key an earlier one had (``run.duplicate_keys: reject``)."""
    return _rejected("pipeline", "duplicate_keys", f"duplicate key {key_field}: first seen at line {first_line}")


def _key(data: dict[str, Any], key_field: str | None) -> str | None:
    """A record's key as text (None without a ``key`` or a value for it)."""
    value = data.get(key_field) if key_field is not None else None
    return None if value is None else str(value)


def _rejected(stage: Stage, plugin: str, reason: str) -> Result:
    return Result(Outcome.REJECTED, stage, plugin, reason=reason)


def _chars(record: Record) -> int:
    """The characters of input ``record`` holds: its raw fields (or its data, without them)."""
    fields = record.raw if record.raw is not None else record.data
    try:
        return sum(map(len, fields.values()))
    except TypeError:  # a source of other values than text: counted one character each
        return len(fields)
