"""Exception classes, grouped by how the runner handles them.

Sinks and sources *classify* what went wrong by raising one of these; the runner
decides what to do (retry, pause, reject the record, stop the run). Messages must
never contain secrets: they end up in logs, rejects files and reports.
"""

from __future__ import annotations


class EtlError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigError(EtlError):
    """The configuration is invalid; nothing was read or sent (exit code 2).

    Args:
        message: What is wrong, in one sentence.
        path: The key path inside the YAML document, e.g. ``sink.workers``.
        line: The 1-based YAML line of that key, when known.
        source: The config file name, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source if self.line is None else f"{self.source}:{self.line}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        prefix = f"{' '.join(where)}: " if where else ""
        key = f"{self.path}: " if self.path else ""
        return f"{prefix}{key}{self.message}"


class PluginError(EtlError):
    """A plugin is missing, clashes with another one, or implements a hook wrongly."""


class RunLockedError(EtlError):
    """Another run holds the output directory's lease: nothing was read, written or sent.

    Two runs of one pipeline at once would both send every record and overwrite each
    other's report and rejects. The ``etl`` command exits with code 73.
    """


class FatalError(EtlError):
    """The run cannot go on (e.g. the API rejects the credentials).

    The runner stops sending at once and exits with code 1. Records that were in flight
    have no outcome (``not_processed`` in the report) and are sent again by a rerun.
    """


class RecordError(EtlError):
    """Something went wrong with one record.

    Args:
        reason: A short, human-readable reason, e.g. ``email: not a valid address``.
        status: The HTTP status (or similar protocol code) when there was one.
        detail: The error detail returned by the remote system, for the rejects file.
    """

    retryable: bool = False

    def __init__(self, reason: str, *, status: int | None = None, detail: str | None = None) -> None:
        self.reason = reason
        self.status = status
        self.detail = detail
        super().__init__(reason)


class RecordRejected(RecordError):
    """The record is invalid and must not be sent (raised by transforms and sources)."""


class PermanentError(RecordError):
    """The destination refused the record for good (400, 404, 422...): it is not retried."""


class BatchRejected(RecordError):
    """The destination refused a whole batch for its content (e.g. HTTP 400 or 413).

    Raised by :meth:`~etl_core.Sink.send_batch` when one request for several records was
    refused as a whole: a record in it is malformed, or the body is too large. The runner
    sends each half of the batch again, and so on down to single records, so that one
    bad record never fails its neighbours; a single record still refused fails with this
    error's reason, status and detail.
    """


class TransientError(RecordError):
    """A failure that may go away if the record is sent again (5xx, timeout, reset)."""

    retryable = True


class ThrottledError(TransientError):
    """The destination asked the client to slow down (429, 503).

    Args:
        retry_after: Seconds to wait before the next request, from ``Retry-After``
            (already clamped and converted from the HTTP-date form), or ``None``.
        sent_at: When the throttled request actually left (``trio.current_time()``),
            if the sink knows it (see :attr:`etl_core.SendResult.sent_at`).
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        detail: str | None = None,
        sent_at: float | None = None,
    ) -> None:
        super().__init__(reason, status=status, detail=detail)
        self.retry_after = retry_after
        self.sent_at = sent_at
