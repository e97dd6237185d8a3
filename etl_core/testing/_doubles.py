"""A source and a sink for tests: ListSource and RecordingSink."""

from __future__ import annotations

import collections
import copy
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pydantic
import trio

from .._errors import (
    FatalError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from ..base import PluginOptions, Record, RunContext, SendResult, Sink, Source

# -- a source and a sink for tests -----------------------------------------------------


class ListSource(Source):
    """Yield one record per item of the ``items`` option (test source).

    Record ``n`` (1-based) has ``line`` n, ``data`` a copy of the item and ``raw`` the
    item itself, so the rejects file shows the item's fields.
    """

    name = "list"

    class Options(PluginOptions):
        """Options of the list source."""

        items: list[dict[str, Any]] = pydantic.Field(description="The records' fields, in order.")

    options: Options

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self._done = 0

    def read(self) -> Iterator[Record]:
        for line, item in enumerate(self.options.items, start=1):
            self._done = line
            yield Record(dict(item), line=line, raw=item)

    def progress(self) -> tuple[int, int | None]:
        """Return (items read, number of items)."""
        return (self._done, len(self.options.items))


FailureKind = Literal["permanent", "transient", "throttled", "fatal"]

#: One scripted outcome: an exception to raise, a result to return (or None for success).
Scripted = BaseException | SendResult | None


class RecordingSink(Sink):
    """Keep every record it receives; fail chosen records on demand (test sink).

    Create one and hand it to the run, then read what it received::

        sink = RecordingSink(failures={"3": PermanentError("no", status=404)})
        result = await run_pipeline_from_dict(config, sink=sink)
        assert sink.data() == [...]

    * ``sink.received``: the records delivered (not failed), in delivery order;
      ``sink.data()`` is their ``data`` dicts;
    * ``sink.attempts``: a :class:`collections.Counter` of ``send`` calls per record id
      (the record's key, else its line number as a string), failures included;
    * ``sink.context``: the :class:`~etl_core.RunContext` it was opened with, and
      ``sink.closed``.

    Failures can come from the config (``fail: {id: kind}``) or from Python
    (``failures={id: outcome}``): an exception to raise on every attempt, or a list of
    outcomes (exceptions, :class:`~etl_core.SendResult` or ``None``) used one per
    attempt, after which sends succeed. Config ``fail`` kinds raise:

    * ``permanent``: PermanentError, status 400 (not retried);
    * ``transient``: TransientError, status 503 (retried, with backoff);
    * ``throttled``: ThrottledError, status 429, retry_after 0 (retried at once);
    * ``fatal``: FatalError (stops the run).

    Args:
        options: The options (default: every option's default).
        failures: Record id -> an exception raised on every attempt, or a list of
            outcomes used one per attempt (then sends succeed).
    """

    name = "recording"

    class Options(PluginOptions):
        """Options of the recording sink."""

        fail: dict[str, FailureKind] = pydantic.Field(
            {},
            description="Record id (key, or line number when the pipeline has no key) -> error raised on every attempt.",
        )
        delay: float = pydantic.Field(0.0, ge=0, description="Seconds each send takes (to test concurrency).")
        status: int | None = pydantic.Field(200, description="Status reported for a delivered record.")

    options: Options

    def __init__(self, options: Options | None = None, *, failures: Mapping[str, Scripted | list[Scripted]] | None = None) -> None:
        super().__init__(options if options is not None else self.Options())
        self.received: list[Record] = []
        self.attempts: collections.Counter[str] = collections.Counter()
        self.context: RunContext | None = None
        self.closed = False
        self._scripts = {
            key: list(outcomes) if isinstance(outcomes, list) else outcomes for key, outcomes in (failures or {}).items()
        }

    def data(self) -> list[dict[str, Any]]:
        """Return the ``data`` of every delivered record, in delivery order."""
        return [record.data for record in self.received]

    async def open(self, context: RunContext) -> None:
        self.context = context

    async def send(self, record: Record) -> SendResult | None:
        record_id = record.key if record.key is not None else str(record.line)
        self.attempts[record_id] += 1
        if self.options.delay:
            await trio.sleep(self.options.delay)
        else:
            await trio.lowlevel.checkpoint()
        kind = self.options.fail.get(record_id)
        if kind is not None:
            raise _configured_failure(kind, record_id)
        outcome: Scripted = SendResult(status=self.options.status)
        script = self._scripts.get(record_id)
        if isinstance(script, list):
            if script:
                outcome = script.pop(0)
        elif script is not None:
            outcome = script
        if isinstance(outcome, BaseException):
            raise _fresh(outcome)
        self.received.append(record)
        return outcome

    async def aclose(self) -> None:
        self.closed = True


def _fresh(exc: BaseException) -> BaseException:
    """A copy of a scripted exception, so raising it again does not chain tracebacks."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is raised as it is
        return exc


def _configured_failure(kind: FailureKind, record_id: str) -> BaseException:
    reason = f"recording sink: {kind} failure of {record_id}"
    if kind == "permanent":
        return PermanentError(reason, status=400)
    if kind == "transient":
        return TransientError(reason, status=503)
    if kind == "throttled":
        return ThrottledError(reason, status=429, retry_after=0.0)
    return FatalError(reason)
