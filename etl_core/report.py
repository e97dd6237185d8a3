"""Per-row results (the rejects file) and the run report."""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

#: Cells starting with these are formulas to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

REJECT_COLUMNS = ("_line", "_key", "_stage", "_plugin", "_reason", "_status", "_detail", "_attempts", "_retryable")


def spreadsheet_safe(value: Any) -> str:
    """Return ``value`` as text that a spreadsheet will not run as a formula.

    A leading ``'`` is the convention spreadsheets themselves use for "this is text".
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


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
        self.path = path
        self._columns = columns
        self.count = 0
        self._file: Any = None
        self._writer: Any = None
        self._fields: list[str] = []

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
        if self._writer is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")
            known = self._columns() if self._columns is not None else []
            self._fields = [name for name in (known or raw) if name not in REJECT_COLUMNS]
            self._writer = csv.writer(self._file)
            self._writer.writerow([*REJECT_COLUMNS, *self._fields, "_other_fields"])
        extra = {k: v for k, v in raw.items() if k not in self._fields}
        row = [line, key, stage, plugin, reason, status, detail, attempts, "yes" if retryable else "no"]
        row += [raw.get(name) for name in self._fields]
        row.append(json.dumps(extra, ensure_ascii=False, default=str) if extra else "")
        self._writer.writerow([spreadsheet_safe(cell) for cell in row])
        self.count += 1

    def flush(self) -> None:
        """Flush buffered rows to disk."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the file, if one was created."""
        if self._file is not None:
            self._file.close()
            self._file = None


class SuccessWriter:
    """Writes one CSV row per delivered record: key, line, status, attempts.

    Args:
        path: The CSV file to write (created on the first row).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self._file: Any = None
        self._writer: Any = None

    def write(self, *, key: str | None, line: int, status: int | None, attempts: int) -> None:
        """Append one row."""
        if self._writer is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["key", "line", "status", "attempts"])
        self._writer.writerow([spreadsheet_safe(key), line, status, attempts])
        self.count += 1

    def close(self) -> None:
        """Close the file, if one was created."""
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclasses.dataclass
class RunCounters:
    """What happened to the records of a run, updated by the runner as it goes."""

    read: int = 0
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    throttled: int = 0
    attempts: int = 0
    by_status: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        """Records with a final outcome."""
        return self.ok + self.rejected + self.failed


def write_report(path: str, report: Mapping[str, Any]) -> None:
    """Write the run report as JSON, atomically (a crash never leaves half a report)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2, sort_keys=False)
        file.write("\n")
    os.replace(tmp, path)
