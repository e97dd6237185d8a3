"""Guess how to read a CSV file: its encoding, delimiter, header and column names.

Pure functions over the first bytes of a file, for ``etl guess``. Every guess comes with
a note saying how sure it is, which the generated config shows as a comment.
:mod:`._guess_fields` then maps the columns to a sink's fields.
"""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import io
import re
from collections.abc import Sequence

from ._errors import ConfigError

#: Bytes read from the start of the file.
SAMPLE_BYTES = 1 << 20
#: Rows of the sample (the header included).
SAMPLE_ROWS = 1001
#: The delimiters tried, in order of preference when the sample cannot tell them apart.
DELIMITERS = (",", ";", "\t", "|")
#: Share of a column's non-empty sample values a rule (or a kind of value) must fit.
SHARE = 0.9

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16's, which it starts with
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: Bytes looked at for the zeros of UTF-16 without a byte-order mark.
_NUL_WINDOW = 4096
#: YAML's short escapes of the usual control characters.
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
#: Kinds of values that tell a header from data (a name is none of them).
_KINDS = (
    ("UUIDs", re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")),
    ("dates", re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ].*)?|[0-9]{1,2}[/.][0-9]{1,2}[/.][0-9]{2,4}")),
    ("email addresses", re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")),
    ("numbers", re.compile(r"[+-]?(?:[0-9]+(?:[.,][0-9]+)?|[.,][0-9]+)")),
    ("phone numbers", re.compile(r"\+?[0-9][0-9 ()./-]{6,}")),
)


@dataclasses.dataclass(frozen=True)
class Sniffed:
    """How to read a CSV file, guessed from its start.

    Attributes:
        encoding: A Python codec name, as the CSV source's ``encoding`` takes it.
        delimiter: One of :data:`DELIMITERS`.
        header: Whether the first row names the columns.
        names: The column names records will have: the header's, or ``column_1``...
        renamed: Whether ``names`` differ from the header (none, or empty or repeated
            names in it): the config must then list them as the source's ``columns``.
        rows: The sample's data rows (the header left out).
        complete: Whether the sample is the whole file (every row of it).
        notes: How sure each guess is, by name: ``encoding``, ``delimiter``, ``header``.
    """

    encoding: str
    delimiter: str
    header: bool
    names: list[str]
    renamed: bool
    rows: list[list[str]]
    complete: bool
    notes: dict[str, str]

    def values(self) -> dict[str, list[str]]:
        """Return each column's sample values, stripped, from the rows with as many fields as there are names."""
        width = len(self.names)
        rows = [row for row in self.rows if len(row) == width]
        return {name: [row[i].strip() for row in rows] for i, name in enumerate(self.names)}


def sniff(data: bytes, *, complete: bool = True) -> Sniffed:
    """Guess the encoding, delimiter, header and column names of a CSV file from its first bytes.

    Args:
        data: The start of the file (:data:`SAMPLE_BYTES` of it is plenty).
        complete: Whether ``data`` is the whole file; if not, its last row may be cut
            and is left out.

    Raises:
        ConfigError: The bytes are not text, or hold no row.
    """
    encoding, encoding_note = sniff_encoding(data, complete=complete)
    text = decode(data, encoding, complete=complete)
    delimiter, delimiter_note = sniff_delimiter(text, complete=complete)
    rows = read_rows(text, delimiter, complete=complete, limit=SAMPLE_ROWS + 1)
    if len(rows) > SAMPLE_ROWS:
        rows, complete = rows[:SAMPLE_ROWS], False
    if not rows:
        raise ConfigError("holds no row of data" if complete else "has no line break in its first megabyte: not a CSV file")
    header, header_note = sniff_header(rows)
    if header:
        names = unique_names(rows[0])
        renamed = names != rows[0]
        rows = rows[1:]
    else:
        width = collections.Counter(len(row) for row in rows).most_common(1)[0][0]
        names = [f"column_{i}" for i in range(1, width + 1)]
        renamed = True
    notes = {"encoding": encoding_note, "delimiter": delimiter_note, "header": header_note}
    return Sniffed(encoding, delimiter, header, names, renamed, rows, complete, notes)


def sniff_encoding(data: bytes, *, complete: bool = True) -> tuple[str, str]:
    """Guess the text encoding: a byte-order mark, else UTF-8 if the bytes are valid UTF-8, else cp1252 or Latin-1.

    Args:
        data: The start of the file.
        complete: Whether ``data`` is the whole file (else a character cut at its end is no error).

    Returns:
        The encoding (a Python codec name) and how sure the guess is.

    Raises:
        ConfigError: The bytes hold NULs but are not UTF-16: not a text file.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, f"sure: the file starts with a {encoding.upper()} byte-order mark"
    if b"\0" in data:
        return _utf16_without_bom(data[:_NUL_WINDOW])
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
    except UnicodeDecodeError:
        pass
    else:
        if data.isascii():
            return "utf-8", "likely: the sample is plain ASCII, which UTF-8 reads; a later byte may need another encoding"
        return "utf-8", "sure: the sample is valid UTF-8"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1", "likely: not UTF-8, and bytes Windows-1252 leaves undefined; Latin-1 reads any byte"
    return "cp1252", "likely: not UTF-8; Windows-1252 (Latin-1's letters and more) reads every byte"


def _utf16_without_bom(head: bytes) -> tuple[str, str]:
    """UTF-16 text in Latin letters has a zero in every other byte: the high or the low one."""
    zeros_odd, zeros_even = head[1::2].count(0), head[0::2].count(0)
    pairs = len(head) // 2
    if zeros_odd >= 0.3 * pairs and zeros_odd > 4 * zeros_even:
        return "utf-16-le", "likely: no byte-order mark, but a zero in every other byte (UTF-16, little-endian)"
    if zeros_even >= 0.3 * pairs and zeros_even > 4 * zeros_odd:
        return "utf-16-be", "likely: no byte-order mark, but a zero in every other byte (UTF-16, big-endian)"
    raise ConfigError("holds NUL bytes: it does not look like a text (CSV) file")


def decode(data: bytes, encoding: str, *, complete: bool = True) -> str:
    """Decode ``data`` as the CSV source would: a UTF-8 byte-order mark skipped, bad bytes replaced.

    Args:
        data: The start of the file.
        encoding: A Python codec name.
        complete: Whether ``data`` is the whole file (else a character cut at its end is left out).
    """
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    return codecs.getincrementaldecoder(codec)(errors="replace").decode(data, final=complete)


def read_rows(text: str, delimiter: str, *, complete: bool = True, limit: int = SAMPLE_ROWS) -> list[list[str]]:
    """Split ``text`` into rows (quoted fields may hold delimiters, quotes and line breaks).

    Blank lines are skipped. Reading stops at ``limit`` rows, or before a row the csv
    module cannot read.

    Args:
        text: The decoded sample.
        delimiter: The field delimiter.
        complete: Whether ``text`` is the whole file; if not, its last row may be cut and is left out.
        limit: Most rows returned.
    """
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', doublequote=True)
    cut = not complete
    try:
        for row in reader:
            if len(rows) == limit:
                cut = False  # the row before this one is whole
                break
            if row:
                rows.append(row)
    except csv.Error:
        pass  # a field over the csv module's limit: the rows before it are sample enough
    if cut and rows:
        rows.pop()
    return rows


def sniff_delimiter(text: str, *, complete: bool = True) -> tuple[str, str]:
    """Guess the delimiter: the one that splits the sample's rows into the same number (>1) of fields.

    A delimiter that splits the first row (the header, usually) like most others wins
    over one that does not, then the more consistent one, then the one giving more
    fields, then the earlier in :data:`DELIMITERS`.

    Returns:
        The delimiter and how sure the guess is.
    """
    best: tuple[tuple[bool, bool, float, int, int], str, int, int, int] | None = None
    for index, delimiter in enumerate(DELIMITERS):
        counts = [len(row) for row in read_rows(text, delimiter, complete=complete)]
        if not counts:
            continue
        width, agreeing = collections.Counter(counts).most_common(1)[0]
        score = (width > 1, counts[0] == width, agreeing / len(counts), width, -index)
        if best is None or score > best[0]:
            best = (score, delimiter, width, agreeing, len(counts))
    if best is None or best[2] < 2:
        return ",", "unsure: no delimiter (, ; tab |) splits the rows: one column"
    _, delimiter, width, agreeing, total = best
    if agreeing == total:
        return delimiter, f"sure: all {total} rows read have {width} fields"
    return delimiter, f"likely: {agreeing} of {total} rows read have {width} fields"


def sniff_header(rows: Sequence[Sequence[str]]) -> tuple[bool, str]:
    """Guess whether the first row names the columns.

    A column whose values below are mostly of one kind (UUIDs, dates, emails, numbers,
    phone numbers) votes for a header when the first row's cell is of no kind (a name),
    and against one when it is of the same kind. Without a vote, a first row of unique,
    non-empty names is taken for a header.

    Returns:
        Whether there is a header, and how sure the guess is.
    """
    first = [cell.strip() for cell in rows[0]]
    rest = [row for row in rows[1:] if len(row) == len(first)]
    for_header: list[str] = []
    against: list[str] = []
    for column, cell in enumerate(first):
        values = [value for row in rest if (value := row[column].strip())]
        if not values or not cell:
            continue
        kind, count = collections.Counter(_kind(value) for value in values).most_common(1)[0]
        if kind is None or count < SHARE * len(values):
            continue
        if _kind(cell) == kind:
            against.append(kind)
        elif _kind(cell) is None:
            for_header.append(kind)
    if for_header and len(for_header) >= len(against):
        sure = "sure" if not against else "likely"
        return True, f"{sure}: the first row is names over columns of {_listed(for_header)}"
    if against:
        sure = "sure" if not for_header else "likely"
        return False, f"{sure}: the first row holds {_listed(against)} like the rows below it"
    if all(first) and len(set(first)) == len(first) and not any(_kind(cell) for cell in first):
        return True, "likely: the first row is all distinct names (the values below are text: no kind of value tells)"
    return False, "unsure: the first row has empty, repeated or number-like cells, so it is taken for data"


def _kind(value: str) -> str | None:
    return next((name for name, pattern in _KINDS if pattern.fullmatch(value)), None)


def _listed(kinds: list[str]) -> str:
    return ", ".join(dict.fromkeys(kinds))


def unique_names(header: Sequence[str]) -> list[str]:
    """Return the header's names with an empty one named ``column_N`` and a repeated one suffixed ``_2``, ``_3``..."""
    names: list[str] = []
    taken = set(header)
    for position, name in enumerate(header, 1):
        if not name.strip():
            name = f"column_{position}"
        candidate, n = name, 1
        while candidate in names or (candidate != name and candidate in taken):
            n += 1
            candidate = f"{name}_{n}"
        names.append(candidate)
    return names


def quoted(text: str) -> str:
    """Return ``text`` as a YAML double-quoted scalar, every unprintable character escaped.

    Safe in a comment too: no line break survives.
    """
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)
