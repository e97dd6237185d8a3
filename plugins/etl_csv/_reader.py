"""The streaming CSV reader behind :class:`etl_csv.CsvSource`.

The file is read in binary blocks, cut at line breaks, split into physical lines
(``\\n``, ``\\r\\n`` or ``\\r``) and decoded one line at a time, so a bad byte
rejects one row instead of the run. The lines feed a single :func:`csv.reader`,
whose ``line_num`` therefore counts physical lines: that is where record line
numbers come from, embedded line breaks included.

Three limits keep memory bounded whatever the input: a line longer than
``max_line_length`` is never held whole (its bytes are skipped up to the next line
break), a record spanning lines is abandoned as soon as its lines add up to more
than ``max_line_length``, and a record is abandoned as soon as it has more than
``max_fields`` fields, before the parser builds them. To end such a record inside
:mod:`csv`, the reader hands the parser a short *poison* line in place of the
offending one; the poison is malformed in every parser state it can meet, so the
parser raises :class:`csv.Error` and drops the partial record. Line numbers stay
exact because the poison replaces exactly one physical line.

A record abandoned in the middle of a quoted field does not end at that line: the
lines after it are still the field's text, and must never be read as rows (whoever
writes one cell of an export could otherwise forge whole rows). A quote follower
(:class:`_QuoteFollower`) reads the quotes of every line that can break a limit and
of every record that spans lines, as the parser does; after the offending line the
reader keeps the parser inside an empty quoted field, feeding it empty lines, up to
the line where the follower sees the record end, and poisons that one. The whole
record is rejected once, and reading resumes after it. Where quoting is malformed
inside a record that spans lines (or leaves a quote open on its one line), its end
cannot be told, and reading stops with :class:`FatalError` instead.
"""

from __future__ import annotations

import codecs
import csv
import errno
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, Protocol

from etl_core import FatalError, Record

#: Bytes read from the file at a time.
BLOCK_SIZE = 1 << 16

_UTF8_BOM = codecs.BOM_UTF8
#: What csv.Error says of a quoted field left open at the end of the file.
_END_OF_DATA = "unexpected end of data"
_ASCII = bytes(range(128))


#: What a path that is not a regular file is, for messages.
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """The path names a directory, a named pipe, a device or a socket, not a regular file."""


def open_regular_file(path: str) -> BinaryIO:
    """Open ``path`` for reading in binary, unbuffered, refusing anything but a regular file.

    The file is opened without blocking, so a named pipe with no writer cannot hang the
    caller, and checked before a byte is read: a pipe or a device such as ``/dev/zero``
    could otherwise keep a run reading forever.

    Raises:
        NotRegularFileError: The path is not a regular file (its message says what it is).
        OSError: The file cannot be opened.
    """
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX; elsewhere there are no named pipes to open
    fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
            raise NotRegularFileError(errno.EINVAL, kind)
        if nonblocking:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


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


# Where csv.reader stands in a record (its names), as _QuoteFollower tracks it.
_FIELD_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED, _MALFORMED = range(5)


class _QuoteFollower:
    """Follows how csv.reader reads the quotes of one record, without keeping its text.

    Its rules are the parser's (``strict``, doubled quotes): a quote opens a quoted field
    only as a field's first character; inside one, a quote is either doubled or closes
    the field, and then only the delimiter or the line break may follow. Text is fed one
    physical line at a time, without its line break, in as many pieces as needed.

    Attributes:
        state: Where the text so far leaves the parser; ``_QUOTED`` at the end of a line
            means the record goes on to the next line.
        fields: Fields begun in the record so far.
        quotes: Quote characters in the record so far.
    """

    __slots__ = ("_delimiter", "_quotechar", "fields", "quotes", "state")

    def __init__(self, delimiter: str, quotechar: str) -> None:
        self._delimiter = delimiter
        self._quotechar = quotechar
        self.start_record()

    def start_record(self) -> None:
        """Forget the record: the next text starts a new one."""
        self.state = _FIELD_START
        self.fields = 1
        self.quotes = 0

    def feed(self, text: str, end: int | None = None) -> None:
        """Follow ``text[:end]``, the next piece of the current line."""
        quote, delimiter = self._quotechar, self._delimiter
        if end is None:
            end = len(text)
        state = self.state
        pos = 0
        while pos < end:
            if state == _QUOTED:
                found = text.find(quote, pos, end)
                if found < 0:
                    break
                self.quotes += 1
                state, pos = _QUOTE_IN_QUOTED, found + 1
            elif state == _QUOTE_IN_QUOTED:
                char = text[pos]
                if char == quote:
                    self.quotes += 1
                    state = _QUOTED
                elif char == delimiter:
                    self.fields += 1
                    state = _FIELD_START
                else:
                    state = _MALFORMED
                    continue
                pos += 1
            elif state == _MALFORMED:
                self.quotes += text.count(quote, pos, end)
                break
            else:  # at the start of a field or in an unquoted one: only delimiters count
                found = text.find(quote, pos, end)
                stop = end if found < 0 else found
                self.fields += text.count(delimiter, pos, stop)
                if found < 0:
                    state = _FIELD_START if text[end - 1] == delimiter else _UNQUOTED
                    break
                self.quotes += 1
                opens = text[found - 1] == delimiter if found > pos else state == _FIELD_START
                state, pos = (_QUOTED if opens else _UNQUOTED), found + 1
        self.state = state


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
        self._max_fields = max_fields
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
        #: The last line handed to the parser, and the last one replaced by the poison.
        self._line = ""
        self._poisoned = 0
        self._follower = _QuoteFollower(delimiter, quotechar)
        #: The column names and their count, once the header is read.
        self._names: list[str] = []
        self._ncols = 0

    def progress(self) -> tuple[int, int | None]:
        """Return (bytes read so far, file size or None when unknown)."""
        return (self._input.bytes_read if self._input is not None else 0, self._size)

    def records(self) -> Iterator[Record]:
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
                    if end != self._poisoned and str(exc) != _END_OF_DATA:
                        # The parser found malformed quoting: make sure the record ends here.
                        self._follower.start_record()
                        self._follower.feed(self._line, _body_length(self._line))
                        self._goes_on(end)
                    reason = self._take_marks(end) or self._explain(exc)
                    yield Record({}, prev + 1, {}, reason + _span(prev + 1, end))
                    prev = self._done = end
                else:
                    return

    def _parser(self, raw: BinaryIO) -> _Parser:
        """Set up decoding and return a csv.reader over the file's physical lines."""
        self._size = os.fstat(raw.fileno()).st_size
        if is_ascii_compatible(self._encoding):
            self._input = _Input(raw, strip_bom=self._encoding == "utf-8")
            line_encoding = self._encoding
        else:
            self._input = _Transcoder(raw, self._encoding, self._path)
            line_encoding = "utf-8"
        if csv.field_size_limit() < self._max_line:
            # Process-wide in the csv module: only ever raised, never lowered, so other
            # readers keep working. A record never exceeds max_line_length (_lines sees
            # to it), so the parser never stops inside a field: fields over our own limit
            # are caught in _complex_row, once their whole record is read.
            csv.field_size_limit(self._max_line)
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
        if message == _END_OF_DATA:
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
        the record containing line ``n`` is complete; otherwise line ``n`` ended inside a
        quoted field. The quote follower reads every line of a record that spans lines,
        and every line long enough to break a limit, so that it knows where a rejected
        record ends.
        """
        marks = self._marks
        follower = self._follower
        max_line = self._max_line
        # A line this short needs no check: no field, record or field count can be over its limit.
        quick = min(self._max_field, max_line, self._max_fields - 1)
        n = 0  # lines handed out so far
        pending = 0  # characters of the unfinished record on lines before the next one
        skipping = False  # the parser is being led through the rest of a rejected record
        for block in blocks:
            if block is None:  # line n + 1 is over max_line_length; _blocks followed its quotes
                if not skipping:
                    marks[n + 1] = f"line {n + 1} is longer than {max_line} characters"
                text, skipping = self._abandon(n + 1, skipping or pending > 0)
                yield text
                n += 1
                pending = 0
            else:
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
                    self._line = line
                    followed = skipping or pending or len(line) > threshold
                    if skipping:
                        follower.feed(line, _body_length(line))
                        text, skipping = self._abandon(n + 1, True)
                    elif followed and self._check_line(line, n + 1, pending):
                        text, skipping = self._abandon(n + 1, pending > 0)
                    else:
                        text = line
                    yield text
                    n += 1
                    if self._done != n:
                        if not skipping:
                            if not followed:  # the first line of a record that spans lines
                                follower.start_record()
                                follower.feed(line, _body_length(line))
                            pending += len(line)
                    elif pending:
                        pending = 0
            if not pending and not skipping:
                follower.start_record()  # the next line starts a record, for _blocks to follow

    def _check_line(self, line: str, number: int, pending: int) -> bool:
        """Follow a long or continuing line and flag its problems in ``_marks``.

        Returns:
            True when the record is rejected at this line (over ``max_line_length`` or
            ``max_fields``); its reason is marked.

        Raises:
            FatalError: Malformed quoting leaves the record's end unknown (see :meth:`_goes_on`).
        """
        marks = self._marks
        follower = self._follower
        body = _body_length(line)
        if not pending:
            follower.start_record()
        follower.feed(line, body)
        if pending + body > self._max_line:
            marks[number] = (
                f"line {number} is longer than {self._max_line} characters"
                if body > self._max_line
                else f"record is longer than {self._max_line} characters"
            )
            return True
        if follower.fields > self._max_fields:
            marks[number] = f"record has more than {self._max_fields} fields"
            return True
        if follower.state == _MALFORMED:
            self._goes_on(number)  # csv rejects the record; stop here if its end is unknown
        if "\0" in line:
            marks.setdefault(number, f"NUL character on line {number}")
        elif body > self._max_field:
            marks.setdefault(number, "")  # the row may hold an oversized field: check it
        return False

    def _abandon(self, number: int, in_quotes: bool) -> tuple[str, bool]:
        """Decide what the parser gets for line ``number`` of a rejected record.

        The follower has read the line, and the reason is marked. When the record ends
        on this line, the parser gets the poison, which ends it with a :class:`csv.Error`.
        When it goes on (inside a quoted field), the parser is kept inside a quoted field
        that grows no longer (an opening quote if it was not in one, then empty lines)
        until the line where the record ends: the whole record is one error, and no line
        of it is ever read as a row.

        Args:
            number: The line.
            in_quotes: Whether the parser is inside a quoted field at the start of the line.

        Returns:
            The text for the parser, and whether the record goes on after this line.
        """
        if self._goes_on(number):
            return ("" if in_quotes else self._quotechar), True
        self._poisoned = number
        return self._poison, False

    def _goes_on(self, number: int) -> bool:
        """Tell whether the record goes on past line ``number``, which the follower has read.

        Raises:
            FatalError: A quote is malformed (neither doubled nor closing its field) in a
                record that spans lines, or that leaves a quote open on its one line: where
                its quoted field ends cannot be told, and its text must not be read as rows.
        """
        follower = self._follower
        if follower.state != _MALFORMED:
            return follower.state == _QUOTED
        start = self._done + 1
        if start == number and not follower.quotes % 2:
            return False  # its quotes pair up: the record ends with its line, as csv reads it
        where = f"the record starting on line {start}" if start < number else "a record that leaves a quote open"
        raise FatalError(
            f"{self._path}: malformed quoting on line {number}, in {where}; where its quoted field ends "
            "cannot be told, so reading stops here rather than read the field's text as rows "
            "(a quote inside a quoted field must be doubled)"
        )

    # -- blocks ---------------------------------------------------------------

    def _blocks(self, read: Callable[[int], bytes], encoding: str) -> Iterator[bytes | None]:
        """Yield runs of whole lines as bytes, and ``None`` in place of each over-long line.

        A block never ends between the ``\\r`` and ``\\n`` of a line break. A line
        without a break is accumulated up to ``max_line_length`` bytes; beyond that its
        characters are counted as it streams in, and once they pass the limit the rest
        of the line is skipped, never stored; the quote follower reads it as it passes.
        """
        limit = self._max_line
        follower = self._follower
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
                                counter = self._follow(pending, encoding)
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
                if discarding:
                    follower.feed(counter.decode(head))
                else:
                    chars += len(counter.decode(head))
                    pending.append(head)
                    if chars > limit:
                        counter = self._follow(pending, encoding)
                        discarding, pending = True, []
                if end < 0:
                    break
                after = end + 1
                # A \r ending the chunk may be the first half of a \r\n.
                open_crlf = chunk[end] == 0x0D and after == len(chunk)
                if chunk[end] == 0x0D and not open_crlf and chunk[after] == 0x0A:
                    after += 1
                if discarding:
                    follower.feed(counter.decode(b"", True))
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
                counter, partial = None, 0
                chunk = chunk[after:]
        if discarding:
            follower.feed(counter.decode(b"", True))
            yield None
        elif pending:
            yield b"".join(pending)

    def _follow(self, pieces: list[bytes], encoding: str) -> codecs.IncrementalDecoder:
        """Feed the follower the text of ``pieces``; return the decoder to go on with."""
        decoder = codecs.getincrementaldecoder(encoding)("replace")
        for piece in pieces:
            self._follower.feed(decoder.decode(piece))
        return decoder


def _body_length(line: str) -> int:
    """Return the length of ``line`` without its line break."""
    if line.endswith("\n"):
        return len(line) - (2 if line.endswith("\r\n") else 1)
    return len(line) - line.endswith("\r")


def _span(start: int, end: int) -> str:
    return f" (lines {start}-{end})" if end > start else ""
