"""A JSON Lines source for etl: one record per line of a ``.jsonl`` file, streamed.

Install the package next to ``etl`` and the source is available as ``type: jsonl``::

    source:
      type: jsonl
      path: contacts.jsonl

The package registers itself through the ``etl`` entry-point group (see pyproject.toml);
the module only has to implement the ``register_sources`` hook.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterator
from typing import Any

from pydantic import Field, field_validator

from etl_core import ConfigError, FatalError, PluginOptions, Record, Source, hookimpl

__all__ = ["JsonlSource", "register_sources"]

#: Longest text of a bad line kept for the rejects file (spreadsheets cap cells at 32,767).
MAX_KEPT_TEXT = 10_000

# Bytes every ASCII-compatible encoding leaves as they are: what splitting on b"\n" relies on.
_ASCII_PROBE = '{}[]":,\n 0aZ'


class JsonlSource(Source):
    """Read records from a JSON Lines file (one JSON object per line), streaming it.

    Each record's ``data`` is the line's JSON object (values keep their JSON types);
    ``line`` is the 1-based line number. Blank lines are skipped. A UTF-8 byte-order
    mark at the start of the file is ignored.

    A line that is not valid JSON, holds something other than an object (an array, a
    string...), or has bytes that are not valid in ``encoding`` is yielded as a rejected
    record: ``error`` says what is wrong, ``raw`` keeps the line's text under ``_text``,
    and reading goes on with the next line. The run stops (:class:`~etl_core.FatalError`)
    only when the file cannot be opened or read.
    """

    name = "jsonl"

    class Options(PluginOptions):
        """Options of the jsonl source."""

        path: str = Field(min_length=1, description="Path of the JSON Lines file to read.")
        encoding: str = Field(
            "utf-8",
            description=(
                "Text encoding of the file: utf-8 (the JSON Lines standard) or another encoding that "
                "keeps ASCII bytes as they are (latin-1, cp1252...)."
            ),
        )

        @field_validator("encoding")
        @classmethod
        def _ascii_compatible(cls, value: str) -> str:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown text encoding {value!r}") from None
            try:
                compatible = _ASCII_PROBE.encode(value) == _ASCII_PROBE.encode("ascii")
            except UnicodeError:
                compatible = False
            if not compatible:
                raise ValueError(f"encoding {value!r} does not keep ASCII bytes as they are (use utf-8, latin-1, cp1252...)")
            return value

    options: Options

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self._done = 0
        self._size: int | None = None

    def check(self) -> None:
        """Check that the file can be opened for reading.

        Raises:
            ConfigError: The file is missing, unreadable or a directory (``source.path``).
        """
        path = self.options.path
        if os.path.isdir(path):
            raise ConfigError(f"{path} is a directory, not a JSON Lines file", path="source.path")
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            raise ConfigError(f"file not found: {path}", path="source.path") from None
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror}", path="source.path") from None

    def read(self) -> Iterator[Record]:
        """Yield one record per non-blank line, in file order.

        Raises:
            FatalError: The file cannot be opened or read.
        """
        path = self.options.path
        try:
            file = open(path, "rb")
        except OSError as exc:
            raise FatalError(f"cannot open {path}: {exc.strerror}") from None
        with file:
            self._size = os.fstat(file.fileno()).st_size
            self._done = 0
            number = 0
            try:
                for number, line in enumerate(file, start=1):
                    self._done += len(line)
                    if number == 1 and line.startswith(codecs.BOM_UTF8):
                        line = line[len(codecs.BOM_UTF8) :]
                    record = self._parse(line, number)
                    if record is not None:
                        yield record
            except OSError as exc:
                raise FatalError(f"cannot read {path} after line {number}: {exc.strerror}") from None

    def _parse(self, line: bytes, number: int) -> Record | None:
        encoding = self.options.encoding
        try:
            text = line.decode(encoding)
        except UnicodeDecodeError as exc:
            kept = _kept(line.decode(encoding, errors="replace"))
            return Record({}, line=number, raw={"_text": kept}, error=f"not valid {encoding} (byte {exc.start + 1} of the line)")
        if not text.strip():
            return None
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            return Record({}, line=number, raw={"_text": _kept(text)}, error=f"not valid JSON: {exc.msg} (column {exc.colno})")
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return Record({}, line=number, raw={"_text": _kept(text)}, error=f"not valid JSON: {reason}")
        if not isinstance(value, dict):
            return Record({}, line=number, raw={"_text": _kept(text)}, error=f"expected a JSON object, got {_kind(value)}")
        return Record(value, line=number, raw=_flat(value))

    def progress(self) -> tuple[int, int | None]:
        """Return (bytes read so far, file size); the size is None until reading starts."""
        return (self._done, self._size)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _kept(text: str) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= MAX_KEPT_TEXT else text[:MAX_KEPT_TEXT] + "..."


def _flat(value: dict[str, Any]) -> dict[str, Any]:
    """The record as the rejects file shows it: nested values as JSON text."""
    if not any(isinstance(v, (dict, list)) for v in value.values()):
        return value
    return {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v for k, v in value.items()}


@hookimpl
def register_sources() -> list[type[Source]]:
    """Register the ``jsonl`` source."""
    return [JsonlSource]
