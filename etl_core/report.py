"""Per-row results (the rejects file) and the run report.

Every file here is created anew: a file or a planted symbolic link at its path is
removed, never written through. Registered secrets are masked in
everything written (see :func:`etl_core.logging.redact`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ._errors import FatalError
from .logging import redact, redact_data

if TYPE_CHECKING:
    from .config import PipelineConfig

#: Cells starting with these are formulas to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

REJECT_COLUMNS = ("_line", "_key", "_stage", "_plugin", "_reason", "_status", "_detail", "_attempts", "_retryable")


def spreadsheet_safe(value: Any) -> str:
    """Return ``value`` as text that a spreadsheet will not run as a formula.

    A leading ``'`` is the convention spreadsheets themselves use for "this is text".
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class CsvFile:
    """A CSV file created on its first row, header first, every cell spreadsheet-safe.

    One file per run: a file left at ``path`` by an earlier run is removed at once, so
    that whatever is there after the run is this run's. The file is created anew (see
    :func:`_open_new`): a symbolic link planted at ``path`` is replaced, never written
    through. Registered secrets are masked in every cell.

    Args:
        path: The file to write (its directory is created with it).
        header: The column names, or a function returning them when the first row comes.
        flush_rows: Flush after each row, so the file is complete even if the process is killed.

    Raises:
        FatalError: The file cannot be removed or written (e.g. the disk is full); the
            message names it.
    """

    def __init__(self, path: str, header: Sequence[str] | Callable[[], Sequence[str]], *, flush_rows: bool = False) -> None:
        self.path = path
        with self._errors():
            _remove_leftover(path)
        self.count = 0
        self._header = header
        self._flush_rows = flush_rows
        self._file: TextIO | None = None
        self._writer: Any = None

    def write(self, cells: Iterable[Any]) -> None:
        """Append one row (creating the file with its header first)."""
        with self._errors():
            if self._writer is None:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                self._file = _open_new(self.path)
                self._writer = csv.writer(self._file)
                header = self._header() if callable(self._header) else self._header
                self._writer.writerow([_cell(name) for name in header])
            self._writer.writerow([_cell(cell) for cell in cells])
            self.count += 1
            if self._flush_rows:
                self.flush()

    def flush(self) -> None:
        """Flush buffered rows to disk."""
        if self._file is not None:
            with self._errors():
                self._file.flush()

    def close(self) -> None:
        """Close the file, if one was created."""
        file, self._file = self._file, None
        if file is not None:
            with self._errors():
                file.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise FatalError(f"cannot write {self.path}: {exc.strerror or exc}") from None


def _cell(value: Any) -> str:
    # Numbers (line, status, attempts) cannot hold a secret: only text is searched.
    return spreadsheet_safe(redact(value) if isinstance(value, str) else value)


def _remove_leftover(path: str) -> None:
    """Remove the file or symbolic link at ``path``, if any (a device such as /dev/null stays)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        os.unlink(path)


def _open_new(path: str) -> TextIO:
    """Open ``path`` for writing text, as a new file.

    A file or a symbolic link at ``path`` is removed first, so a link (or a hard link)
    planted there is replaced, never written through; a link planted in between makes
    the open fail (``O_NOFOLLOW``) rather than be followed.

    Raises:
        OSError: The file cannot be removed or created.
    """
    _remove_leftover(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return open(os.open(path, flags, 0o666), "w", encoding="utf-8", newline="")


class RejectsWriter:
    """Writes rejected and failed records to a CSV file, created on the first one.

    Columns: the bookkeeping columns (``_line``, ``_stage``, ``_reason``...) followed by
    the record's original fields as read from the source.

    Args:
        path: The CSV file to write.
        columns: Returns the input's field names when known (see ``Source.fields``);
            otherwise the first rejected record's fields become the columns.
    """

    def __init__(self, path: str, columns: Callable[[], list[str]] | None = None) -> None:
        self._columns = columns
        self._fields: list[str] = []
        self._file = CsvFile(path, lambda: [*REJECT_COLUMNS, *self._fields, "_other_fields"])

    @property
    def path(self) -> str:
        """The file's path."""
        return self._file.path

    @property
    def count(self) -> int:
        """Rows written."""
        return self._file.count

    def write(
        self,
        *,
        line: int,
        key: str | None,
        stage: str,
        plugin: str,
        reason: str,
        raw: Mapping[str, Any] | None,
        status: int | None = None,
        detail: str | None = None,
        attempts: int = 0,
        retryable: bool = False,
    ) -> None:
        """Append one row."""
        raw = raw or {}
        if not self._file.count:
            known = self._columns() if self._columns is not None else []
            self._fields = [name for name in (known or raw) if name not in REJECT_COLUMNS]
        extra = {k: v for k, v in raw.items() if k not in self._fields}
        row = [line, key, stage, plugin, reason, status, detail, attempts, "yes" if retryable else "no"]
        row += [raw.get(name) for name in self._fields]
        row.append(json.dumps(extra, ensure_ascii=False, default=str) if extra else "")
        self._file.write(row)

    def flush(self) -> None:
        """Flush buffered rows to disk."""
        self._file.flush()

    def close(self) -> None:
        """Close the file, if one was created."""
        self._file.close()


def success_file(path: str) -> CsvFile:
    """The success file: one row per delivered record (key, line, status, attempts)."""
    return CsvFile(path, ("key", "line", "status", "attempts"))


def run_report(
    *,
    run_id: str,
    config: PipelineConfig,
    dry_run: bool,
    started_at: datetime.datetime,
    finished_at: datetime.datetime,
    exit_code: int,
    interrupted_by: str | None,
    aborted: str | None,
    records: dict[str, Any],
    requests: dict[str, Any],
    quota: dict[str, Any],
    files: dict[str, str | None],
    shard: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The run report (documented in docs/logging.md), its keys in their documented order.

    Args:
        run_id: The run's id.
        config: The pipeline's configuration.
        dry_run: Whether the run only validated records.
        started_at: When the run started (UTC).
        finished_at: When it ended (UTC).
        exit_code: The process's exit code.
        interrupted_by: The signal that stopped the run, if any.
        aborted: Why the run stopped early, if it did.
        records: The ledger's counts by outcome.
        requests: What delivery did (attempts, retries, pauses...).
        quota: The destination's quota as measured or remembered.
        files: The paths of the files the run wrote (None: not written).
        shard: A shard's run (``--shard``): its ``index``, the ``count`` of shards and
            ``other_shards`` (records read that belong to other shards); None otherwise.

    Returns:
        The report, ready for :func:`write_report`.
    """
    duration = (finished_at - started_at).total_seconds()
    return {
        "run_id": run_id,
        "pipeline": config.model.pipeline,
        "config": config.path,
        "dry_run": dry_run,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "duration_s": round(duration, 3),
        "exit_code": exit_code,
        "interrupted_by": interrupted_by,
        "aborted": aborted,
        "records": records,
        "requests": requests,
        "quota": quota,
        "rate_per_s": round(records["ok"] / duration, 1) if duration > 0 else None,
        "files": files,
        "shard": shard,
    }


def _iso(moment: datetime.datetime) -> str:
    """ISO-8601 UTC with a Z, like the log timestamps."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_report(path: str, report: Mapping[str, Any]) -> None:
    """Write the run report as JSON, atomically: a crash never leaves half a report.

    The report goes to ``path.tmp``, made anew (see :func:`_open_new`), synced to disk,
    then renamed over ``path``. Registered secrets are masked in every string.

    Raises:
        OSError: The report could not be written (e.g. the disk is full); the
            temporary file is removed and an earlier report at ``path`` is left as it was.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps(redact_data(report), indent=2, sort_keys=False) + "\n"
    tmp = f"{path}.tmp"
    try:
        with _open_new(tmp) as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_report(report: dict[str, Any], path: str, log: Any) -> str | None:
    """Write the run's report to ``path``; return why it could not be, if so.

    A report that cannot be written (e.g. a full disk) is logged and said on stderr by
    the caller, never as a traceback; ``report`` then names no report file.
    """
    try:
        write_report(path, report)
    except OSError as exc:
        problem = exc.strerror or str(exc)
        log.error("file_write_failed", path=path, reason=problem)
        report["files"]["report"] = None
        return f"the report could not be written to {path}: {problem}"
    return None
