"""Following the quotes of a record as :func:`csv.reader` reads them, without its text.

The line layer (:mod:`._lines`) must know where a record it rejects ends: when a
limit is hit inside a quoted field, the lines after it are still the field's text,
and must never be read as rows. :class:`QuoteFollower` tells, line by line, whether
the record goes on, how many fields it has begun, and whether its quoting is malformed.
"""

from __future__ import annotations

# Where csv.reader stands in a record (its names), as QuoteFollower tracks it.
FIELD_START, UNQUOTED, QUOTED, QUOTE_IN_QUOTED, MALFORMED = range(5)


class QuoteFollower:
    """Follows how csv.reader reads the quotes of one record, without keeping its text.

    Its rules are the parser's (``strict``, doubled quotes): a quote opens a quoted field
    only as a field's first character; inside one, a quote is either doubled or closes
    the field, and then only the delimiter or the line break may follow. Text is fed one
    physical line at a time, without its line break, in as many pieces as needed.

    Attributes:
        state: Where the text so far leaves the parser; ``QUOTED`` at the end of a line
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
        self.state = FIELD_START
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
            if state == QUOTED:
                found = text.find(quote, pos, end)
                if found < 0:
                    break
                self.quotes += 1
                state, pos = QUOTE_IN_QUOTED, found + 1
            elif state == QUOTE_IN_QUOTED:
                char = text[pos]
                if char == quote:
                    self.quotes += 1
                    state = QUOTED
                elif char == delimiter:
                    self.fields += 1
                    state = FIELD_START
                else:
                    state = MALFORMED
                    continue
                pos += 1
            elif state == MALFORMED:
                self.quotes += text.count(quote, pos, end)
                break
            else:  # at the start of a field or in an unquoted one: only delimiters count
                found = text.find(quote, pos, end)
                stop = end if found < 0 else found
                self.fields += text.count(delimiter, pos, stop)
                if found < 0:
                    state = FIELD_START if text[end - 1] == delimiter else UNQUOTED
                    break
                self.quotes += 1
                opens = text[found - 1] == delimiter if found > pos else state == FIELD_START
                state, pos = (QUOTED if opens else UNQUOTED), found + 1
        self.state = state
