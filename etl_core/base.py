"""The classes a plugin subclasses: :class:`Source`, :class:`Transform` and :class:`Sink`.

Each plugin class names itself (``name``, the value of ``type:`` in the YAML config)
and declares its options as a pydantic model (``Options``); the core validates the
config section against that model before anything runs, so plugin code only ever
sees valid options.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

if TYPE_CHECKING:
    from ._errors import RecordError


@dataclasses.dataclass(frozen=True)
class InputSample:
    """The start of a source's input, read by :meth:`Source.sample`.

    Attributes:
        fields: The input's field names (e.g. the CSV header); empty when unknown.
        records: The first records, as :meth:`Source.read` yields them.
    """

    fields: list[str]
    records: list[Record]


class PluginOptions(pydantic.BaseModel):
    """Base class of every plugin's options model.

    Unknown keys are errors, so a typo in the config is caught before the run starts.
    Use :class:`pydantic.SecretStr` for credentials: they are masked in ``repr``
    and never echoed in error messages.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclasses.dataclass(slots=True)
class Record:
    """One record flowing through a pipeline.

    Attributes:
        data: The fields, as transforms see and change them.
        line: Where the record starts in the input (e.g. the CSV line number).
        raw: The original fields as read, written to the rejects file.
        error: Set by a source for an unreadable row (the row is rejected, never sent).
        key: The value of the pipeline's ``key`` field, set by the runner.
    """

    data: dict[str, Any]
    line: int
    raw: Mapping[str, Any] | None = None
    error: str | None = None
    key: str | None = None


@dataclasses.dataclass(slots=True, frozen=True)
class RateLimitHint:
    """What a server said about its rate limit (``RateLimit-*`` / ``X-RateLimit-*``).

    Attributes:
        limit: Requests allowed per window.
        remaining: Requests left in the current window.
        reset: Seconds until the window resets.
    """

    limit: float | None = None
    remaining: float | None = None
    reset: float | None = None


@dataclasses.dataclass(slots=True, frozen=True)
class SendResult:
    """What a sink reports for a record it delivered.

    Attributes:
        status: The protocol status (e.g. HTTP 200 or 204), if any.
        rate_limit: Rate-limit headers the server sent, for the adaptive limiter.
        sent_at: When the request actually left (``trio.current_time()``), if the sink
            knows it later than the call to ``send`` (after a token refresh or a new
            connection); the rate limiter measures the destination's quota from it.
    """

    status: int | None = None
    rate_limit: RateLimitHint | None = None
    sent_at: float | None = None


@dataclasses.dataclass(slots=True, frozen=True)
class Batching:
    """How a sink groups records into one request, as :meth:`Sink.batching` says.

    Attributes:
        max_records: Most records in one request (at least 1).
        max_bytes: Most bytes in one request, as the sum of :meth:`Sink.batch_size_of`
            over its records, or None for no bound. A record larger than this alone is
            sent in a request of its own, and the destination decides.

    Raises:
        ValueError: ``max_records`` or ``max_bytes`` is below 1.
    """

    max_records: int
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_records < 1:
            raise ValueError(f"Batching.max_records must be at least 1, not {self.max_records}")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ValueError(f"Batching.max_bytes must be at least 1 or None, not {self.max_bytes}")


@dataclasses.dataclass(slots=True, frozen=True)
class SinkField:
    """A field a sink takes, as :meth:`Sink.guess_fields` describes it for ``etl guess``.

    Attributes:
        name: The field's name in the records the sink receives.
        rules: Rules of the ``validate`` transform its values should pass (``"uuid"``,
            ``"email"``, ``"e164"``, ``"integer"``); ``etl guess`` proposes each one the
            input's sample passes.
        key: Whether the field identifies the record: ``etl guess`` makes it the
            pipeline's ``key`` and ``required``.
    """

    name: str
    rules: tuple[str, ...] = ()
    key: bool = False


@dataclasses.dataclass(slots=True, frozen=True)
class RunContext:
    """Facts about the current run, handed to sinks when they open.

    Attributes:
        run_id: Unique id of this run (also bound to every log line).
        pipeline: The pipeline's name from the config.
        output_dir: Where the run writes its report, rejects and other files.
        dry_run: True when nothing may be sent.
        concurrency: The most records the runner sends at once (``workers``, or
            ``max_workers`` with ``workers: auto``), e.g. for the size of a connection
            pool; None when not known.
    """

    run_id: str
    pipeline: str
    output_dir: str
    dry_run: bool = False
    concurrency: int | None = None


class Plugin:
    """Common base of sources, transforms and sinks."""

    #: The name used as ``type:`` in the config. Must be unique per kind.
    name: ClassVar[str]
    #: The pydantic model of this plugin's options.
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, options: PluginOptions) -> None:
        self.options = options

    def check(self) -> None:
        """Check what can be checked without reading or sending (e.g. that a file exists).

        Called by ``etl validate`` and before a run starts.

        Raises:
            ConfigError: Something in the options cannot work; name the option.
        """


class Source(Plugin):
    """Streams records from somewhere.

    :meth:`read` is an ordinary (blocking) generator: the runner calls it in a worker
    thread and hands records over in batches, so a source never blocks the event loop
    and never needs to be async. It must stream: never read the whole input into memory.
    """

    def read(self) -> Iterator[Record]:
        """Yield records in input order.

        A row that cannot be read (wrong number of fields, undecodable bytes) is
        yielded as a :class:`Record` with ``error`` set; raise only when the input as
        a whole is unusable (e.g. the file does not exist), as :class:`~etl_core.FatalError`.
        """
        raise NotImplementedError

    def sample(self, count: int) -> InputSample | None:
        """Read the input's field names and first ``count`` records, without consuming them.

        Called by ``etl validate`` and before a run sends anything, so that an input that
        does not fit the config (a missing column, another delimiter or encoding) is a
        configuration error instead of a run that rejects every row. The default returns
        None: the source cannot be read twice (a stream, a queue), so nothing is checked.

        Raises:
            ConfigError: The input cannot be read as configured (e.g. another encoding);
                name the option that fixes it.
        """
        return None

    def fields(self) -> list[str]:
        """Return the names of the input's fields, once known (e.g. the CSV header).

        The rejects file uses them as its columns, whatever the first rejected row holds.
        An empty list (the default) means: take them from the first rejected record.
        """
        return []

    def progress(self) -> tuple[int, int | None]:
        """Return ``(done, total)`` in source units (e.g. bytes read of the file size).

        Used for the progress bar; ``total`` is ``None`` when unknown.
        """
        return (0, None)

    def count(self, time_limit: float) -> int | None:
        """Count the records :meth:`read` will yield, quickly, for the progress bar's total.

        Called once per run, in a worker thread while :meth:`read` runs in another, and
        only when a progress bar or a ``run_progress`` hook is in use. Read the input on
        your own (e.g. open the file again) without parsing it: a quick estimate is
        wanted, and one that counts too many (the CSV source counts line breaks, so blank
        lines and line breaks inside quoted fields too) rather than too few. Once
        :meth:`read` has yielded its last record, the records read replace the count.

        Args:
            time_limit: Seconds after which to give up and return None.

        Returns:
            How many records the input holds, or None when unknown (the default).
        """
        return None


class Transform(Plugin):
    """A pure, synchronous function of one record's fields."""

    def required_fields(self) -> dict[str, tuple[str | int, ...]]:
        """Return the input fields every record must have, each with the option that names it.

        For the first transform, these are checked against the source's fields before
        anything is sent (see :meth:`Source.sample`). The default is ``{}``: none known.

        Returns:
            ``{field: option key path}``, e.g. ``{"contact_id": ("fields", "contactId", "from")}``.
        """
        return {}

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the transformed fields.

        Raises:
            RecordRejected: The record is invalid; the reason names the field and rule.
        """
        raise NotImplementedError


class Sink(Plugin):
    """Delivers records somewhere and classifies each outcome.

    The runner owns retries, pauses, rate limiting and bookkeeping; a sink only sends
    one record and says what happened by returning or raising:

    * return a :class:`SendResult` (or ``None``): delivered;
    * :class:`~etl_core.PermanentError`: refused for good, not retried;
    * :class:`~etl_core.ThrottledError`: rate limited, with the parsed Retry-After;
    * :class:`~etl_core.TransientError`: may succeed if sent again;
    * :class:`~etl_core.FatalError`: the run cannot continue.

    A sink for a bulk endpoint returns a :class:`Batching` from :meth:`batching`; the
    runner then calls :meth:`send_batch` with several records at once instead of
    :meth:`send`.
    """

    async def open(self, context: RunContext) -> None:
        """Prepare to send (open connections, fetch a token). Called once, before any send."""

    async def send(self, record: Record) -> SendResult | None:
        """Send one record. See the class docstring for the outcome contract."""
        raise NotImplementedError

    def batching(self) -> Batching | None:
        """Say how many records one request may carry, for a destination with a bulk endpoint.

        Called before :meth:`open` (and by ``etl validate``). The default, None, sends one record per
        :meth:`send` call; a :class:`Batching` makes the runner group records and call
        :meth:`send_batch` instead.
        """
        return None

    def batch_size_of(self, record: Record) -> int:
        """Return the bytes ``record`` adds to a request's body, for :attr:`Batching.max_bytes`.

        The default is the length of its fields as compact UTF-8 JSON.
        """
        return len(json.dumps(record.data, ensure_ascii=False, separators=(",", ":"), default=str).encode())

    async def send_batch(self, records: Sequence[Record]) -> Sequence[SendResult | RecordError | None]:
        """Send ``records`` in one request and say what became of each one.

        Called instead of :meth:`send` when :meth:`batching` returns a :class:`Batching`,
        with at most ``max_records`` records, never two with one key.

        Returns:
            One outcome per record, in the order of ``records``: a :class:`SendResult`
            (or None) for a record delivered, or a :class:`~etl_core.RecordError`
            instance (not raised) for one that was not: a
            :class:`~etl_core.PermanentError` is refused for good, a
            :class:`~etl_core.TransientError` is sent again.

        Raises:
            BatchRejected: The request as a whole was refused for its content (e.g. HTTP
                400 or 413): the runner sends each half again, down to single records.
            ThrottledError: The request was throttled: it is sent again as :meth:`send`'s.
            TransientError: The request failed and may succeed if sent again.
            FatalError: The run cannot continue.
        """
        raise NotImplementedError

    def describe(self, record: Record) -> dict[str, Any]:
        """Describe the request :meth:`send` would make, for ``--dry-run``.

        Raises:
            RecordRejected: The record could not be sent at all (e.g. an invalid key).
        """
        return {"data": record.data}

    async def aclose(self) -> None:
        """Release resources. Called once, even after an error."""

    def destination(self) -> str | None:
        """Name the destination's quota: the same text for every run that shares it.

        The runner keeps the quota it measured under this name in the state file and
        starts the next run just under it (``run.rate.remember``). Name what the quota
        is counted against, e.g. the endpoint and the credentials' client id; never a
        secret. None (the default): nothing is remembered.
        """
        return None

    async def check_auth(self) -> str | None:
        """Check the credentials with the destination, sending no record (``etl validate --check-auth``).

        Returns:
            What was checked, in a few words, or None when the sink has no credentials.

        Raises:
            FatalError: The destination refused the credentials.
        """
        return None

    @classmethod
    def guess_fields(cls) -> tuple[SinkField, ...]:
        """Describe the fields this sink takes, for ``etl guess`` to map a CSV's columns to.

        Returns:
            The fields, in the order a generated config lists them. The default, ``()``,
            says nothing: ``etl guess`` then maps every column to a field of its own name.
        """
        return ()

    @classmethod
    def open_sandbox(cls) -> AbstractAsyncContextManager[dict[str, Any]]:
        """Start a local stand-in for the destination, for ``etl run --sandbox``.

        Returns:
            An async context manager that serves the sandbox while open and yields the
            options that point the sink at it (URLs, credentials). They replace the
            config file's values before validation, so the real service's environment
            variables need not be set.

        Raises:
            PluginError: This sink has no sandbox (the default).
        """
        from ._errors import PluginError

        raise PluginError(f"sink {cls.name!r} has no sandbox")
