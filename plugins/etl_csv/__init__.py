"""CSV source: streams the rows of a delimited text file as records.

A row that cannot be read (wrong number of fields, undecodable bytes, a field or
line over its limit, malformed quoting) becomes a rejected record with its line
number and a reason; reading always continues with the next row.
"""

from __future__ import annotations

import codecs
import itertools
import os
from collections.abc import Iterator
from typing import Self

from pydantic import Field, field_validator, model_validator

from etl_core import (
    ConfigError,
    FatalError,
    InputSample,
    NotRegularFileError,
    PluginOptions,
    Record,
    Source,
    hookimpl,
    open_regular_file,
)

from ._count import count_records
from ._reader import CsvReader

__all__ = ["CsvOptions", "CsvSource"]


class CsvOptions(PluginOptions):
    """Options of the csv source."""

    path: str = Field(min_length=1, description="Path of the CSV file to read.")
    delimiter: str = Field(
        ",",
        min_length=1,
        max_length=1,
        description="The character separating fields, e.g. ',', ';', '|' or a tab.",
    )
    quotechar: str = Field(
        '"',
        min_length=1,
        max_length=1,
        description=(
            "The character quoting fields that contain the delimiter, quotes or line breaks; "
            "inside a quoted field it is written twice."
        ),
    )
    encoding: str = Field(
        "utf-8",
        description=(
            "Text encoding of the file (a Python codec name: utf-8, latin-1, cp1252, utf-16...). "
            "A UTF-8 byte-order mark is always skipped. With an encoding that keeps ASCII bytes as "
            "they are (utf-8, latin-1, cp1252...), undecodable bytes reject only their row; with "
            "others (utf-16, utf-32...) the file is decoded as a whole and undecodable bytes stop "
            "the run with an error naming the line."
        ),
    )
    header: bool = Field(
        True,
        description=(
            "Whether the first non-blank line holds the column names. It must name every column, "
            "with no empty or duplicate name, unless 'columns' renames them."
        ),
    )
    columns: list[str] | None = Field(
        None,
        description=(
            "Column names. Required when 'header' is false. When 'header' is true, these names "
            "replace the header's (which must have the same number of columns), e.g. to fix "
            "awkward or duplicate names in an export."
        ),
    )
    max_field_size: int = Field(
        1_048_576,
        ge=1,
        description="Most characters allowed in one field; a row with a longer field is rejected.",
    )
    max_line_length: int = Field(
        8 * 1_048_576,
        ge=1,
        description=(
            "Most characters allowed in one record, line breaks inside quoted fields included; "
            "a longer record is rejected whole without being held in memory, and reading resumes "
            "after it (after the closing quote of a quoted field that spans lines)."
        ),
    )
    max_fields: int = Field(
        16_384,
        ge=1,
        description=(
            "Most fields allowed in one record (16,384 is a spreadsheet's column limit); a record "
            "with more is rejected before its fields are built, so a row of a million empty "
            "cells costs no more memory than its text."
        ),
    )
    skip_blank_lines: bool = Field(
        True,
        description=(
            "Skip empty lines. When false, an empty line is a rejected row (or, in a one-column "
            "file, a row with an empty value)."
        ),
    )

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _usable_character(cls, value: str) -> str:
        if value in ("\r", "\n", "\0"):
            raise ValueError("must not be a line break or NUL")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
            "".encode(value)
        except LookupError:
            # The value is not quoted: after interpolation, any value may be a secret.
            raise ValueError("unknown text encoding (a Python codec name such as utf-8, latin-1 or cp1252)") from None
        return value

    @field_validator("columns")
    @classmethod
    def _valid_columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must list at least one column name")
        seen: dict[str, int] = {}
        for position, name in enumerate(value, 1):
            if not name.strip():
                raise ValueError("column names must not be empty")
            if name in seen:
                raise ValueError(f"duplicate column name (names {seen[name]} and {position})")
            seen[name] = position
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.delimiter == self.quotechar:
            raise ValueError("delimiter and quotechar must differ")
        if not self.header and self.columns is None:
            raise ValueError("columns is required when header is false")
        return self


class CsvSource(Source):
    """Read records from a CSV file, streaming it (memory use does not grow with the file).

    Each record's ``data`` maps the column names to the row's values (all strings);
    ``line`` is the 1-based physical line where the row starts (the header is line 1),
    correct after quoted fields containing line breaks; ``raw`` is the same mapping,
    which transforms must not modify in place. Line breaks may be ``\\n``, ``\\r\\n``
    or ``\\r``.

    Rejected rows are yielded with ``data={}`` and ``error`` set, ``raw`` holding
    what could be read (fields beyond the header under ``_extra_1``, ``_extra_2``...;
    nothing when the row could not be parsed or was too long to keep):

    * a row with more or fewer fields than the header;
    * a row with bytes that are not valid in ``encoding`` (the text is kept with
      U+FFFD replacement characters) or with a NUL character;
    * a field longer than ``max_field_size``, a record longer than ``max_line_length``
      or with more than ``max_fields`` fields;
    * malformed quoting: text after a closing quote, or a quote left open at the end
      of the file;
    * an empty line, when ``skip_blank_lines`` is false and the file has several columns.

    A record rejected for its size is rejected whole, once: when the limit is hit inside
    a quoted field that spans lines, the rest of the field is skipped up to its closing
    quote, so no line of a field's text is ever read as a row. Reading resumes after it.

    The whole run stops with :class:`~etl_core.FatalError` when the file cannot be
    opened or read, or is not a regular file; when its header is empty, has an empty or
    duplicate column name or too many columns; when malformed quoting in a record that
    spans lines (or that leaves a quote open) hides where the record ends; or, for
    encodings that are not ASCII-compatible, when the text cannot be decoded.
    """

    name = "csv"
    Options = CsvOptions
    options: CsvOptions

    def __init__(self, options: CsvOptions) -> None:
        super().__init__(options)
        self._reader: CsvReader | None = None

    def check(self) -> None:
        """Check that the file is a regular file that can be opened for reading.

        The messages do not quote the path: after interpolation any value may be a secret,
        and the error names the key and its line.

        Raises:
            ConfigError: The file is missing or unreadable, or is a directory, a named pipe
                or a device (``source.path``).
        """
        try:
            open_regular_file(self.options.path).close()
        except FileNotFoundError:
            where = "" if os.path.isabs(self.options.path) else f" (a relative path is read from the current directory, {os.getcwd()})"
            raise ConfigError(f"file not found{where}", path="source.path") from None
        except NotRegularFileError as exc:
            raise ConfigError(f"is {exc.strerror}, not a regular file", path="source.path") from None
        except PermissionError:
            raise ConfigError("permission denied", path="source.path") from None
        except OSError as exc:
            raise ConfigError(f"cannot open the file: {exc.strerror or exc}", path="source.path") from None

    def sample(self, count: int) -> InputSample:
        """Read the header and the first ``count`` records (fewer when they hold over 1 MiB of
        text), with a reader of their own.

        Raises:
            ConfigError: The file cannot be read as configured: it is in another encoding
                (``source.encoding``, with the one its byte-order mark or its bytes
                suggest), or its header is unusable (``source.path``).
        """
        opts = self.options
        reader = self._new_reader()
        rows = reader.records()
        records: list[Record] = []
        chars = 0
        try:
            for record in itertools.islice(rows, count):
                records.append(record)
                chars += sum(len(value) for value in (record.raw or {}).values() if isinstance(value, str))
                if chars > _SAMPLE_CHARS:  # wide rows: a few are enough, and memory stays flat
                    break
        except FatalError as exc:
            if (hint := encoding_hint(opts.path, opts.encoding)) is not None:
                raise ConfigError(f"the file cannot be read as {opts.encoding}: {hint}", path="source.encoding") from None
            raise ConfigError(str(exc), path="source.path") from None
        finally:
            rows.close()
        undecodable = [r for r in records if r.error is not None and r.error.startswith("not valid ")]
        # Up to one row in a hundred is a damaged row (rejected with its reason); more is an encoding.
        if 100 * len(undecodable) > len(records):
            hint = encoding_hint(opts.path, opts.encoding) or "set source.encoding to the file's encoding"
            raise ConfigError(
                f"{len(undecodable)} of the first {len(records)} rows cannot be read as {opts.encoding} "
                f"(line {undecodable[0].line}: {undecodable[0].error}): {hint}",
                path="source.encoding",
            )
        return InputSample(list(reader.names), records)

    def read(self) -> Iterator[Record]:
        """Yield the file's records in order (see the class docstring).

        Raises:
            FatalError: The file cannot be opened or read, or its header is unusable.
        """
        self._reader = self._new_reader()
        return self._reader.records()

    def _new_reader(self) -> CsvReader:
        opts = self.options
        return CsvReader(
            opts.path,
            delimiter=opts.delimiter,
            quotechar=opts.quotechar,
            encoding=opts.encoding,
            header=opts.header,
            columns=opts.columns,
            max_field_size=opts.max_field_size,
            max_line_length=opts.max_line_length,
            max_fields=opts.max_fields,
            skip_blank_lines=opts.skip_blank_lines,
        )

    def fields(self) -> list[str]:
        """Return the column names (from the header or ``columns``), once reading has started."""
        return list(self._reader.names) if self._reader is not None else []

    def progress(self) -> tuple[int, int | None]:
        """Return (bytes read so far, file size); the size is None until reading starts."""
        if self._reader is None:
            return (0, None)
        return self._reader.progress()

    def count(self, time_limit: float) -> int | None:
        """Count the records from the file's line breaks, without parsing it (see :func:`count_records`)."""
        opts = self.options
        return count_records(opts.path, encoding=opts.encoding, header=opts.header, time_limit=time_limit)


#: Most characters of fields :meth:`CsvSource.sample` holds (it stops after the row that passes it).
_SAMPLE_CHARS = 1 << 20

#: Byte-order marks, longest first (a UTF-32-LE mark starts like a UTF-16-LE one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def encoding_hint(path: str, encoding: str) -> str | None:
    """Say which ``encoding`` the start of the file at ``path`` looks like, if not ``encoding``.

    A UTF-16 or UTF-32 byte-order mark names its encoding. Else bytes that are not
    UTF-8 suggest cp1252 (Windows' Western European), or latin-1 when cp1252 cannot
    decode them either.

    Returns:
        A sentence naming the setting, e.g. ``set source.encoding: cp1252``; None when
        nothing suggests another encoding.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(1 << 16)
    except OSError:
        return None
    current = codecs.lookup(encoding).name
    for bom, name in _BOMS:
        if head.startswith(bom):
            if current.startswith(name):
                return None
            return f"it starts with a {name.upper()} byte-order mark: set source.encoding: {name}"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not a character cut by the 64 KiB boundary
            for guess in ("cp1252", "latin-1"):
                if codecs.lookup(guess).name == current:
                    continue
                try:
                    head.decode(guess)
                except UnicodeDecodeError:
                    continue
                return f"it looks like {guess}: set source.encoding: {guess}"
    return None


@hookimpl
def register_sources() -> list[type[Source]]:
    return [CsvSource]
