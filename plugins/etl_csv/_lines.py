"""The physical lines of a CSV file, as :func:`csv.reader` gets them, within the limits.

The file's bytes are read in blocks, cut at line breaks, split into physical lines
(``\\n``, ``\\r\\n`` or ``\\r``) and decoded one line at a time, so a bad byte
rejects one row instead of the run. The lines feed a single :func:`csv.reader`,
whose ``line_num`` therefore counts physical lines: that is where record line
numbers come from, embedded line breaks included.

Three limits keep memory bounded whatever the input: a line longer than
``max_line_length`` is never held whole (its bytes are skipped up to the next line
break), a record spanning lines is abandoned as soon as its lines add up to more
than ``max_line_length``, and a record is abandoned as soon as it has more than
``max_fields`` fields, before the parser builds them. To end such a record inside
:mod:`csv`, the parser is handed a short *poison* line in place of the offending
one; the poison is malformed in every parser state it can meet, so the parser raises
:class:`csv.Error` and drops the partial record. Line numbers stay exact because the
poison replaces exactly one physical line.

A record abandoned in the middle of a quoted field does not end at that line: the
lines after it are still the field's text, and must never be read as rows (whoever
writes one cell of an export could otherwise forge whole rows). A quote follower
(:class:`~._quotes.QuoteFollower`) reads the quotes of every line that can break a
limit and of every record that spans lines, as the parser does; after the offending
line the parser is kept inside an empty quoted field, fed empty lines, up to the line
where the follower sees the record end, and that one is poisoned. The whole record is
rejected once, and reading resumes after it. Where quoting is malformed inside a
record that spans lines (or leaves a quote open on its one line), its end cannot be
told, and reading stops with :class:`FatalError` instead.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator

from etl_core import FatalError

from ._quotes import MALFORMED, QUOTED, QuoteFollower

#: Bytes read from the file at a time.
BLOCK_SIZE = 1 << 16

#: What csv.Error says of a quoted field left open at the end of the file.
END_OF_DATA = "unexpected end of data"


class LineFeeder:
    """Feeds csv.reader a file's decoded physical lines, ending any record over a limit.

    Problems found in a line (undecodable bytes, a NUL, a limit) are *marked* against
    its number, for the reader to take when the record holding that line comes out of
    the parser (see the module docstring for how a record over a limit is ended).

    Args:
        path: The file's path, for messages.
        delimiter: The field separator (one character).
        quotechar: The quote character (one character).
        max_field_size: Characters allowed in one field.
        max_line_length: Characters allowed in one record, embedded line breaks included.
        max_fields: Fields allowed in one record.

    Attributes:
        marks: Problems found in physical lines not yet matched to a record: line ->
            reason, or ``""`` for a line long enough to hold an oversized field.
        done: The physical line where the last record (or error) ended; the reader sets
            it as each record comes out of the parser.
    """

    def __init__(
        self,
        path: str,
        *,
        delimiter: str,
        quotechar: str,
        max_field_size: int,
        max_line_length: int,
        max_fields: int,
    ) -> None:
        self._path = path
        self._quotechar = quotechar
        self._max_field = max_field_size
        self._max_line = max_line_length
        self._max_fields = max_fields
        filler = next(c for c in "xyz" if c not in (delimiter, quotechar))
        # Malformed both at the start of a record and inside a quoted field (see module docstring).
        self._poison = quotechar * 2 + filler + quotechar + filler
        self._follower = QuoteFollower(delimiter, quotechar)
        self.marks: dict[int, str] = {}
        self.done = 0
        #: The last line handed to the parser, and the last one replaced by the poison.
        self._line = ""
        self._poisoned = 0

    def lines(self, read: Callable[[int], bytes], encoding: str) -> Iterator[str]:
        """Yield the lines for csv.reader, one decoded physical line at a time.

        Runs interleaved with the parser and its reader: when this generator resumes after
        handing out line ``n``, the parser needs line ``n + 1``, and ``done == n`` tells
        that the record containing line ``n`` is complete; otherwise line ``n`` ended
        inside a quoted field. The quote follower reads every line of a record that spans
        lines, and every line long enough to break a limit, so that it knows where a
        rejected record ends.

        Args:
            read: Returns the file's next bytes (``b""`` at its end), given how many to read.
            encoding: An ASCII-compatible encoding of those bytes.

        Raises:
            FatalError: The file cannot be read, or malformed quoting leaves a record's end
                unknown (see :meth:`_goes_on`).
        """
        marks = self.marks
        follower = self._follower
        max_line = self._max_line
        # A line this short needs no check: no field, record or field count can be over its limit.
        quick = min(self._max_field, max_line, self._max_fields - 1)
        n = 0  # lines handed out so far
        pending = 0  # characters of the unfinished record on lines before the next one
        skipping = False  # the parser is being led through the rest of a rejected record
        for block in _line_blocks(read, encoding, max_line, follower, self._path):
            if block is None:  # line n + 1 is over max_line_length; _line_blocks followed its quotes
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
                    if self.done != n:
                        if not skipping:
                            if not followed:  # the first line of a record that spans lines
                                follower.start_record()
                                follower.feed(line, _body_length(line))
                            pending += len(line)
                    elif pending:
                        pending = 0
            if not pending and not skipping:
                follower.start_record()  # the next line starts a record, for _line_blocks to follow

    def take_marks(self, end: int) -> str:
        """Forget the marks of lines up to ``end``; return the first problem among them."""
        marks = self.marks
        reason = ""
        for line in sorted(k for k in marks if k <= end):
            reason = reason or marks[line]
            del marks[line]
        return reason

    def parser_rejected(self, number: int, error: csv.Error) -> None:
        """Make sure that the record the parser rejected with ``error`` on line ``number`` ends there.

        The parser rejects a record on the poison, on a quote left open at the end of the
        file, or on malformed quoting. In the last case the parser resumes on the next
        line, so the record must end on this one: the line is followed again to tell.

        Raises:
            FatalError: Where the record ends cannot be told (see :meth:`_goes_on`).
        """
        if number != self._poisoned and str(error) != END_OF_DATA:
            follower = self._follower
            follower.start_record()
            follower.feed(self._line, _body_length(self._line))
            self._goes_on(number)

    def _check_line(self, line: str, number: int, pending: int) -> bool:
        """Follow a long or continuing line and mark its problems.

        Returns:
            True when the record is rejected at this line (over ``max_line_length`` or
            ``max_fields``); its reason is marked.

        Raises:
            FatalError: Malformed quoting leaves the record's end unknown (see :meth:`_goes_on`).
        """
        marks = self.marks
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
        if follower.state == MALFORMED:
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
        if follower.state != MALFORMED:
            return follower.state == QUOTED
        start = self.done + 1
        if start == number and not follower.quotes % 2:
            return False  # its quotes pair up: the record ends with its line, as csv reads it
        where = f"the record starting on line {start}" if start < number else "a record that leaves a quote open"
        raise FatalError(
            f"{self._path}: malformed quoting on line {number}, in {where}; where its quoted field ends "
            "cannot be told, so reading stops here rather than read the field's text as rows "
            "(a quote inside a quoted field must be doubled)"
        )


def _line_blocks(
    read: Callable[[int], bytes], encoding: str, limit: int, follower: QuoteFollower, path: str
) -> Iterator[bytes | None]:
    """Yield runs of whole lines as bytes, and ``None`` in place of each line over ``limit``.

    A block never ends between the ``\\r`` and ``\\n`` of a line break. A line
    without a break is accumulated up to ``limit`` bytes; beyond that its characters
    are counted as it streams in, and once they pass the limit the rest of the line is
    skipped, never stored; ``follower`` reads it as it passes.

    Raises:
        FatalError: The file cannot be read (``path`` names it).
    """
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
            raise FatalError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if not chunk:
            break
        if held_cr or skip_lf:
            completes_crlf = chunk[0] == 0x0A
            if held_cr:
                if completes_crlf:
                    pending.append(b"\n")
                yield b"".join(pending)
                pending = []
            if completes_crlf:
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
                            counter = _follow(follower, pending, encoding)
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
                    counter = _follow(follower, pending, encoding)
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
        assert counter is not None  # discarding counts the line's characters
        follower.feed(counter.decode(b"", True))
        yield None
    elif pending:
        yield b"".join(pending)


def _follow(follower: QuoteFollower, pieces: list[bytes], encoding: str) -> codecs.IncrementalDecoder:
    """Feed ``follower`` the text of ``pieces``; return the decoder to go on with."""
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    for piece in pieces:
        follower.feed(decoder.decode(piece))
    return decoder


def _body_length(line: str) -> int:
    """Return the length of ``line`` without its line break."""
    if line.endswith("\n"):
        return len(line) - (2 if line.endswith("\r\n") else 1)
    return len(line) - line.endswith("\r")
