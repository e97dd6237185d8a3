"""The streaming CSV reader behind :class:`etl_csv.CsvSource`.

The file is read in binary blocks, cut at line breaks, split into physical lines
(``\\n``, ``\\r\\n`` or ``\\r``) and decoded one line at a time, so a bad byte
rejects one row instead of the run. The lines feed a single :func:`csv.reader`,
whose ``line_num`` therefore counts physical lines: that is where record line
numbers come from, embedded line breaks included.

Two limits keep memory bounded whatever the input: a line longer than
``max_line_length`` is never held whole (its bytes are skipped up to the next line
break), and a record spanning lines is abandoned as soon as its lines add up to more
than ``max_line_length``. To end such a record inside :mod:`csv`, the reader hands
the parser a short *poison* line in place of the offending one; the poison is
malformed in every parser state it can meet, so the parser raises :class:`csv.Error`,
drops the partial record and resumes with the next line. Line numbers stay exact
because the poison replaces exactly one physical line.
"""

from __future__ import annotations

import codecs
import csv
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, Protocol

from etl_core import FatalError, Record

#: Bytes read from the file at a time.
BLOCK_SIZE = 1 << 16

_UTF8_BOM = codecs.BOM_UTF8
_ASCII = bytes(range(128))


class _Parser(Protocol):
    """What this module uses of a :func:`csv.reader` object."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


def is_ascii_compatible(encoding: str) -> bool:
    """Tell whether ``encoding`` maps every ASCII byte to itself and back.

    Such encodings can be cut at ``\\r``/``\\n`` bytes and decoded line by line.
    """
    try:
        return _ASCII.decode(encoding) == _ASCII.decode("ascii") and _ASCII.decode("ascii").encode(encoding) == _ASCII
    except UnicodeError:
        return False


def _line_breaks(text: str) -> int:
    """Count the ``\\n``, ``\\r\\n`` and ``\\r`` line breaks in ``text``."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


class _Transcoder:
    """Reads a file in an encoding that is not ASCII-compatible (UTF-16, UTF-32...) as UTF-8.

    The stream is decoded as a whole, so a decoding error cannot be confined to one
    row: the text before the error is delivered, then :class:`FatalError` names the line.
    """

    def __init__(self, raw: BinaryIO, encoding: str, path: str) -> None:
        self._raw = raw
        self._encoding = encoding
        self._path = path
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._lines = 0  # line breaks decoded so far
        self._ends_with_cr = False
        self._started = False
        self._failure: FatalError | None = None
        self.bytes_read = 0

    def read(self, size: int) -> bytes:
        while True:
            if self._failure is not None:
                raise self._failure
            data = self._raw.read(size)
            self.bytes_read += len(data)
            state = self._decoder.getstate()
            try:
                text = self._decoder.decode(data, not data)
                encoded = text.encode("utf-8")
            except UnicodeError as exc:
                text = self._valid_prefix(data, state, exc)
                failure = FatalError(
                    f"{self._path}: not valid {self._encoding} on line "
                    f"{self._lines + 1 + self._breaks(text)} ({getattr(exc, 'reason', None) or exc})"
                )
                if not text:
                    raise failure from exc
                self._failure = failure  # raised by the next call, once the valid text is used
                encoded = text.encode("utf-8", "replace")
            if not self._started and text:
                self._started = True
                if text[0] == "\ufeff":  # a byte-order mark the codec kept (e.g. utf-16-le)
                    text = text[1:]
                    encoded = encoded[3:]
            if text:
                self._lines += self._breaks(text)
                self._ends_with_cr = text[-1] == "\r"
            if encoded or not data:
                return encoded

    def _breaks(self, text: str) -> int:
        """Count the line breaks in ``text``, which follows the text decoded so far."""
        return _line_breaks(text) - (self._ends_with_cr and text[:1] == "\n")

    def _valid_prefix(self, data: bytes, state: tuple[bytes, int], exc: UnicodeError) -> str:
        """Decode what precedes the error in ``data`` (nothing if it cannot be told)."""
        if not isinstance(exc, UnicodeDecodeError):
            return ""
        # exc.start indexes the decoder's leftover bytes followed by `data`.
        self._decoder.setstate(state)
        try:
            return self._decoder.decode(data[: max(exc.start - len(state[0]), 0)])
        except UnicodeError:
            return ""


class _Input:
    """A binary file read in blocks, counting bytes for progress and skipping a UTF-8 BOM."""

    def __init__(self, raw: BinaryIO, strip_bom: bool) -> None:
        self._raw = raw
        self._strip_bom = strip_bom
        self.bytes_read = 0

    def read(self, size: int) -> bytes:
        data = self._raw.read(size)
        self.bytes_read += len(data)
        if self._strip_bom:
            self._strip_bom = False
            # A short read could split the BOM: make sure enough bytes are there to tell.
            while data and len(data) < len(_UTF8_BOM) and _UTF8_BOM.startswith(data):
                more = self._raw.read(size)
                if not more:
                    break
                self.bytes_read += len(more)
                data += more
            if data.startswith(_UTF8_BOM):
                data = data[len(_UTF8_BOM) :]
                if not data:
                    return self.read(size)
        return data


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
        filler = next(c for c in "xyz" if c not in (delimiter, quotechar))
        # Malformed both at the start of a record and inside a quoted field (see module docstring).
        self._poison = quotechar * 2 + filler + quotechar + filler
        self._input: _Input | _Transcoder | None = None
        self._size: int | None = None
        #: Problems found in physical lines not yet matched to a record: line -> reason,
        #: or "" for a line long enough to hold an oversized field.
        self._marks: dict[int, str] = {}
        #: The physical line where the last record (or error) ended, for the line feeder.
        self._done = 0
        #: The column names and their count, once the header is read.
        self._names: list[str] = []
        self._ncols = 0

    def progress(self) -> tuple[int, int | None]:
        """Return (bytes read so far, file size or None when unknown)."""
        return (self._input.bytes_read if self._input is not None else 0, self._size)

    def records(self) -> Iterator[Record]:
        """Yield the file's records in order; see :class:`etl_csv.CsvSource` for the rules.

        Raises:
            FatalError: The file cannot be opened or read, or its header is unusable.
        """
        try:
            raw: BinaryIO = open(self._path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise FatalError(f"cannot open {self._path}: {exc.strerror or exc}") from exc
        with raw:
            reader = self._parser(raw)
            header = self._names = self._read_header(reader)
            ncols = self._ncols = len(header)
            marks = self._marks
            prev = self._done = reader.line_num
            misfit = self._misfit
            complex_row = self._complex_row
            while True:
                try:
                    for row in reader:
                        end = reader.line_num
                        # The common case first: one physical line, nothing flagged by the feeder.
                        if end - prev == 1 and not marks:
                            if len(row) == ncols:
                                data = dict(zip(header, row))
                                yield Record(data, end, data)
                            else:
                                record = misfit(row, end)
                                if record is not None:
                                    yield record
                        else:
                            record = complex_row(row, prev + 1, end)
                            if record is not None:
                                yield record
                        prev = self._done = end
                except csv.Error as exc:
                    end = reader.line_num
                    reason = self._take_marks(end) or self._explain(exc)
                    yield Record({}, prev + 1, {}, reason + _span(prev + 1, end))
                    prev = self._done = end
                else:
                    return

    def _parser(self, raw: BinaryIO) -> _Parser:
        """Set up decoding and return a csv.reader over the file's physical lines."""
        info = os.fstat(raw.fileno())
        self._size = info.st_size if stat.S_ISREG(info.st_mode) else None
        if is_ascii_compatible(self._encoding):
            self._input = _Input(raw, strip_bom=self._encoding == "utf-8")
            line_encoding = self._encoding
        else:
            self._input = _Transcoder(raw, self._encoding, self._path)
            line_encoding = "utf-8"
        if csv.field_size_limit() < self._max_field:
            # Process-wide in the csv module: only ever raised, never lowered, so other
            # readers keep working; fields over our own limit are caught in _complex_row.
            csv.field_size_limit(self._max_field)
        return csv.reader(
            self._lines(self._blocks(self._input.read, line_encoding), line_encoding),
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
                reason = self._take_marks(line) or self._explain(exc)
                raise FatalError(f"{self._path}: cannot read the header on line {line}: {reason}") from exc
            line = reader.line_num
            reason = self._take_marks(line) or self._field_too_long(row, None)
            if reason:
                raise FatalError(f"{self._path}: cannot read the header on line {line}: {reason}")
            if row or not self._skip_blank:
                break
            self._done = line
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
        """Handle a row spanning several lines or touching a line the feeder flagged."""
        reason = self._take_marks(end) or self._field_too_long(row, self._names)
        if reason:
            return Record({}, start, self._raw(row), reason + _span(start, end))
        if len(row) != self._ncols:
            record = self._misfit(row, start)
            if record is not None and record.error:
                record.error += _span(start, end)
            return record
        data = dict(zip(self._names, row))
        return Record(data, start, data)

    def _raw(self, row: list[str]) -> dict[str, str]:
        """Map what was read to column names; surplus fields go under ``_extra_<n>``."""
        names = self._names
        raw = dict(zip(names, row))
        for number, value in enumerate(row[len(names) :], 1):
            raw[f"_extra_{number}"] = value
        return raw

    def _field_too_long(self, row: list[str], names: list[str] | None) -> str:
        limit = self._max_field
        for index, value in enumerate(row):
            if len(value) > limit:
                label = f"field {index + 1}"
                if names is not None and index < len(names):
                    label += f" ({names[index]})"
                return f"{label} is longer than {limit} characters"
        return ""

    def _take_marks(self, end: int) -> str:
        """Forget the flags of lines up to ``end``; return the first problem among them."""
        marks = self._marks
        reason = ""
        for line in sorted(k for k in marks if k <= end):
            reason = reason or marks[line]
            del marks[line]
        return reason

    def _explain(self, exc: csv.Error) -> str:
        message = str(exc)
        if message.startswith("field larger than field limit"):
            return f"a field is longer than {self._max_field} characters"
        if message == "unexpected end of data":
            return "unterminated quoted field at the end of the file"
        if message.endswith(f"expected after '{self._quotechar}'"):
            return (
                f"unexpected character after a closing quote (expected {self._delimiter!r} "
                "or a line break; a quote inside a quoted field must be doubled)"
            )
        return f"malformed CSV: {message}"

    # -- lines ----------------------------------------------------------------

    def _lines(self, blocks: Iterator[bytes | None], encoding: str) -> Iterator[str]:
        """Feed csv.reader one decoded physical line at a time, flagging problems in ``_marks``.

        Runs interleaved with :meth:`records`: when this generator resumes after handing
        out line ``n``, the parser needs line ``n + 1``, and ``self._done == n`` tells that
        the record containing line ``n`` is complete.
        """
        marks = self._marks
        max_line = self._max_line
        quick = min(self._max_field, max_line)  # a line this short needs no length check
        n = 0  # lines handed out so far
        pending = 0  # characters of the unfinished record on lines before the next one
        for block in blocks:
            if block is None:
                marks[n + 1] = f"line {n + 1} is longer than {max_line} characters"
                yield self._poison
                n += 1
                pending = 0
                continue
            # A NUL byte sends every line of its block through the detailed check.
            threshold = -1 if b"\0" in block else quick
            for raw in block.splitlines(True):
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    line = raw.decode(encoding, "replace")
                    marks[n + 1] = (
                        f"not valid {encoding} at byte {exc.start + 1} of line {n + 1} (0x{raw[exc.start]:02x})"
                    )
                if pending or len(line) > threshold:
                    line = self._check_line(line, n + 1, pending)
                yield line
                n += 1
                if self._done != n:
                    pending += len(line)
                elif pending:
                    pending = 0

    def _check_line(self, line: str, number: int, pending: int) -> str:
        """Flag a long, NUL-bearing or record-overflowing line; return what to feed csv."""
        marks = self._marks
        body = len(line.rstrip("\r\n"))
        if pending + body > self._max_line:
            marks[number] = (
                f"line {number} is longer than {self._max_line} characters"
                if body > self._max_line
                else f"record is longer than {self._max_line} characters"
            )
            return self._poison
        if "\0" in line:
            marks.setdefault(number, f"NUL character on line {number}")
        elif body > self._max_field:
            marks.setdefault(number, "")  # the row may hold an oversized field: check it
        return line

    # -- blocks ---------------------------------------------------------------

    def _blocks(self, read: Callable[[int], bytes], encoding: str) -> Iterator[bytes | None]:
        """Yield runs of whole lines as bytes, and ``None`` in place of each over-long line.

        A block never ends between the ``\\r`` and ``\\n`` of a line break. A line
        without a break is accumulated up to ``max_line_length`` bytes; beyond that its
        characters are counted as it streams in, and once they pass the limit the rest
        of the line is skipped, never stored.
        """
        limit = self._max_line
        pending: list[bytes] = []  # the unfinished line; or, when held_cr, whole lines
        partial = 0  # bytes of the unfinished line
        held_cr = False  # pending ends with \r, possibly the first half of \r\n
        skip_lf = False  # the same, for a skipped line: drop a \n that completes it
        counter: codecs.IncrementalDecoder | None = None  # counts an over-long line's characters
        chars = 0
        discarding = False
        while True:
            try:
                chunk = read(BLOCK_SIZE)
            except OSError as exc:
                raise FatalError(f"cannot read {self._path}: {exc.strerror or exc}") from exc
            if not chunk:
                break
            if held_cr or skip_lf:
                lf = chunk[0] == 0x0A
                if held_cr:
                    if lf:
                        pending.append(b"\n")
                    yield b"".join(pending)
                    pending = []
                if lf:
                    chunk = chunk[1:]
                held_cr = skip_lf = False
            while chunk:
                if counter is None:
                    last_lf = chunk.rfind(b"\n")
                    cut = max(last_lf, chunk.rfind(b"\r", last_lf + 1)) + 1
                    if cut == 0:  # no line break: the unfinished line grows
                        pending.append(chunk)
                        partial += len(chunk)
                        if partial > limit:
                            counter = codecs.getincrementaldecoder(encoding)("replace")
                            chars = sum(len(counter.decode(piece)) for piece in pending)
                            if chars > limit:
                                discarding, pending = True, []
                        break
                    pending.append(chunk[:cut])
                    if cut == len(chunk) and chunk[-1] == 0x0D:
                        held_cr, partial = True, 0
                        break
                    yield b"".join(pending)
                    chunk = chunk[cut:]
                    pending = [chunk] if chunk else []
                    partial = len(chunk)
                    break
                # Inside a line longer than `limit` bytes: find where it ends.
                lf, cr = chunk.find(b"\n"), chunk.find(b"\r")
                end = cr if cr >= 0 and (lf < 0 or cr < lf) else lf
                head = chunk if end < 0 else chunk[:end]
                if not discarding:
                    chars += len(counter.decode(head))
                    if chars > limit:
                        discarding, pending = True, []
                    else:
                        pending.append(head)
                if end < 0:
                    break
                after = end + 1
                # A \r ending the chunk may be the first half of a \r\n.
                open_crlf = chunk[end] == 0x0D and after == len(chunk)
                if chunk[end] == 0x0D and not open_crlf and chunk[after] == 0x0A:
                    after += 1
                counter, partial = None, 0
                if discarding:
                    discarding = False
                    skip_lf = open_crlf
                    yield None
                else:
                    pending.append(chunk[end:after])
                    if open_crlf:
                        held_cr = True
                    else:
                        yield b"".join(pending)
                        pending = []
                chunk = chunk[after:]
        if discarding:
            yield None
        elif pending:
            yield b"".join(pending)


def _span(start: int, end: int) -> str:
    return f" (lines {start}-{end})" if end > start else ""
