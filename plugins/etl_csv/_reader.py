"""The records of a CSV file: :class:`CsvReader`, behind :class:`etl_csv.CsvSource`.

The file is read in three layers: its bytes (:mod:`._input`: opening it safely,
decoding or transcoding), its physical lines (:mod:`._lines`: line breaks, the size
limits and where a rejected record ends, with :mod:`._quotes`), and here its records:
a :func:`csv.reader` parses the lines, and each row it yields becomes a
:class:`~etl_core.Record`, or a rejected one with its line numbers and reason.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Generator, Iterator, Sequence
from typing import BinaryIO, Protocol

from etl_core import FatalError, NotRegularFileError, Record, open_regular_file

from ._input import Input, open_input
from ._lines import END_OF_DATA, LineFeeder


class _Parser(Protocol):
    """What this module uses of a :func:`csv.reader` object."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


class CsvReader:
    """Reads one CSV file as :class:`~etl_core.Record` objects (see the module docstring).

    Args:
        path: The file to read.
        delimiter: The field separator (one character).
        quotechar: The quote character (one character).
        encoding: A Python codec name.
        header: Whether the first non-blank line names the columns.
        columns: Column names to use; with ``header`` they replace the header's names.
        max_field_size: Characters allowed in one field.
        max_line_length: Characters allowed in one record, embedded line breaks included.
        max_fields: Fields allowed in one record.
        skip_blank_lines: Skip empty lines instead of rejecting them.
    """

    def __init__(
        self,
        path: str,
        *,
        delimiter: str = ",",
        quotechar: str = '"',
        encoding: str = "utf-8",
        header: bool = True,
        columns: Sequence[str] | None = None,
        max_field_size: int = 1_048_576,
        max_line_length: int = 8 * 1_048_576,
        max_fields: int = 16_384,
        skip_blank_lines: bool = True,
    ) -> None:
        self._path = path
        self._delimiter = delimiter
        self._quotechar = quotechar
        codec = codecs.lookup(encoding).name
        # utf-8-sig is utf-8 whose BOM is stripped, which this reader always does for utf-8.
        self._encoding = "utf-8" if codec == "utf-8-sig" else codec
        self._header = header
        self._columns = list(columns) if columns is not None else None
        self._max_field = max_field_size
        self._max_line = max_line_length
        self._skip_blank = skip_blank_lines
        self._input: Input | None = None
        self._size: int | None = None
        self._feeder = LineFeeder(
            path,
            delimiter=delimiter,
            quotechar=quotechar,
            max_field_size=max_field_size,
            max_line_length=max_line_length,
            max_fields=max_fields,
        )
        #: The column names and their count, once the header is read.
        self._names: list[str] = []
        self._ncols = 0

    @property
    def names(self) -> list[str]:
        """The column names (from the header or ``columns``); empty until the header is read."""
        return self._names

    def progress(self) -> tuple[int, int | None]:
        """Return (bytes read so far, file size or None when unknown)."""
        return (self._input.bytes_read if self._input is not None else 0, self._size)

    def records(self) -> Generator[Record, None, None]:
        """Yield the file's records in order; see :class:`etl_csv.CsvSource` for the rules.

        Raises:
            FatalError: The file cannot be opened or read, is not a regular file, or its
                header is unusable; or malformed quoting hides where a record ends.
        """
        try:
            raw = open_regular_file(self._path)
        except NotRegularFileError as exc:
            raise FatalError(f"cannot read {self._path}: it is {exc.strerror}, not a regular file") from None
        except OSError as exc:
            raise FatalError(f"cannot open {self._path}: {exc.strerror or exc}") from exc
        with raw:
            reader = self._parser(raw)
            header = self._names = self._read_header(reader)
            ncols = self._ncols = len(header)
            feeder = self._feeder
            marks = feeder.marks
            prev = feeder.done = reader.line_num
            misfit = self._misfit
            complex_row = self._complex_row
            while True:
                try:
                    for row in reader:
                        end = reader.line_num
                        # The common case first: one physical line, nothing marked by the feeder.
                        if end - prev == 1 and not marks:
                            if len(row) == ncols:
                                data = dict(zip(header, row, strict=False))
                                yield Record(data, end, data)
                            else:
                                record = misfit(row, end)
                                if record is not None:
                                    yield record
                        else:
                            record = complex_row(row, prev + 1, end)
                            if record is not None:
                                yield record
                        prev = feeder.done = end
                except csv.Error as exc:
                    end = reader.line_num
                    feeder.parser_rejected(end, exc)
                    reason = feeder.take_marks(end) or self._explain(exc)
                    yield Record({}, prev + 1, {}, reason + _span(prev + 1, end))
                    prev = feeder.done = end
                else:
                    return

    def _parser(self, raw: BinaryIO) -> _Parser:
        """Set up decoding and return a csv.reader over the file's physical lines."""
        self._size = os.fstat(raw.fileno()).st_size
        self._input, line_encoding = open_input(raw, self._encoding, self._path)
        if csv.field_size_limit() < self._max_line:
            # Process-wide in the csv module: only ever raised, never lowered, so other
            # readers keep working. A record never exceeds max_line_length (the line
            # feeder sees to it), so the parser never stops inside a field: fields over our own limit
            # are caught in _complex_row, once their whole record is read.
            csv.field_size_limit(self._max_line)
        return csv.reader(
            self._feeder.lines(self._input.read, line_encoding),
            delimiter=self._delimiter,
            quotechar=self._quotechar,
            doublequote=True,
            skipinitialspace=False,
            strict=True,
        )

    # -- rows -----------------------------------------------------------------

    def _read_header(self, reader: _Parser) -> list[str]:
        """Read the header line (if any) and return the column names."""
        if not self._header:
            assert self._columns is not None  # enforced by the options model
            return self._columns
        line = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                raise FatalError(f"{self._path}: the file is empty; expected a header line") from None
            except csv.Error as exc:
                line = reader.line_num
                reason = self._feeder.take_marks(line) or self._explain(exc)
                raise FatalError(f"{self._path}: cannot read the header on line {line}: {reason}") from exc
            line = reader.line_num
            reason = self._feeder.take_marks(line) or self._field_too_long(row, None)
            if reason:
                raise FatalError(f"{self._path}: cannot read the header on line {line}: {reason}")
            if row or not self._skip_blank:
                break
            self._feeder.done = line
        if self._columns is not None:
            if len(row) != len(self._columns):
                raise FatalError(
                    f"{self._path}: the header on line {line} has {len(row)} columns "
                    f"but 'columns' lists {len(self._columns)} names"
                )
            return self._columns
        if not row:
            raise FatalError(f"{self._path}: the header on line {line} is empty")
        seen: dict[str, int] = {}
        for position, name in enumerate(row, 1):
            if not name.strip():
                raise FatalError(f"{self._path}: column {position} has no name in the header on line {line}")
            if name in seen:
                raise FatalError(
                    f"{self._path}: duplicate column name {name!r} in the header on line {line} "
                    f"(columns {seen[name]} and {position})"
                )
            seen[name] = position
        return row

    def _misfit(self, row: list[str], line: int) -> Record | None:
        """Handle a one-line row whose field count differs from the header's."""
        ncols = self._ncols
        if not row:
            if self._skip_blank:
                return None
            if ncols == 1:
                data = {self._names[0]: ""}
                return Record(data, line, data)
            return Record({}, line, {}, f"blank line, expected {ncols} fields")
        origin = "header" if self._header else "columns"
        return Record({}, line, self._raw(row), f"expected {ncols} fields ({origin}), got {len(row)}")

    def _complex_row(self, row: list[str], start: int, end: int) -> Record | None:
        """Handle a row spanning several lines or touching a line the feeder marked."""
        reason = self._feeder.take_marks(end) or self._field_too_long(row, self._names)
        if reason:
            return Record({}, start, self._raw(row), reason + _span(start, end))
        if len(row) != self._ncols:
            record = self._misfit(row, start)
            if record is not None and record.error:
                record.error += _span(start, end)
            return record
        data = dict(zip(self._names, row, strict=False))
        return Record(data, start, data)

    def _raw(self, row: list[str]) -> dict[str, str]:
        """Map what was read to column names; surplus fields go under ``_extra_<n>``."""
        names = self._names
        raw = dict(zip(names, row, strict=False))
        for number, value in enumerate(row[len(names) :], 1):
            raw[f"_extra_{number}"] = value
        return raw

    def _field_too_long(self, row: list[str], names: list[str] | None) -> str:
        """Return why the first field of ``row`` over ``max_field_size`` is rejected, or ``""``."""
        limit = self._max_field
        for index, value in enumerate(row):
            if len(value) > limit:
                label = f"field {index + 1}"
                if names is not None and index < len(names):
                    label += f" ({names[index]})"
                return f"{label} is longer than {limit} characters"
        return ""

    def _explain(self, exc: csv.Error) -> str:
        """Say in the file's terms why the parser rejected a record."""
        message = str(exc)
        if message == END_OF_DATA:
            return "unterminated quoted field at the end of the file"
        if message.endswith(f"expected after '{self._quotechar}'"):
            return (
                f"unexpected character after a closing quote (expected {self._delimiter!r} "
                "or a line break; a quote inside a quoted field must be doubled)"
            )
        return f"malformed CSV: {message}"


def _span(start: int, end: int) -> str:
    """Name the lines of a record that spans several, for its reason."""
    return f" (lines {start}-{end})" if end > start else ""
