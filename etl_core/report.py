"""Per-row results (the rejects file) and the run report."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
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


class CsvFile:
    """A CSV file created on its first row, header first, every cell spreadsheet-safe.

    Args:
        path: The file to write (its directory is created with it).
        header: The column names, or a function returning them when the first row comes.
        flush_rows: Flush after each row, so the file is complete even if the process is killed.
    """

    def __init__(self, path: str, header: Sequence[str] | Callable[[], Sequence[str]], *, flush_rows: bool = False) -> None:
        self.path = path
        self.count = 0
        self._header = header
        self._flush_rows = flush_rows
        self._file: Any = None
        self._writer: Any = None

    def write(self, cells: Iterable[Any]) -> None:
        """Append one row (creating the file with its header first)."""
        if self._writer is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file)
            header = self._header() if callable(self._header) else self._header
            self._writer.writerow([spreadsheet_safe(name) for name in header])
        self._writer.writerow([spreadsheet_safe(cell) for cell in cells])
        self.count += 1
        if self._flush_rows:
            self._file.flush()

    def flush(self) -> None:
        """Flush buffered rows to disk."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the file, if one was created."""
        if self._file is not None:
            self._file.close()
            self._file = None


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


def write_report(path: str, report: Mapping[str, Any]) -> None:
    """Write the run report as JSON, atomically (a crash never leaves half a report)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2, sort_keys=False)
        file.write("\n")
    os.replace(tmp, path)
