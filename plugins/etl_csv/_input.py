"""The bytes of a CSV file: opening it safely, and reading it in an ASCII-compatible encoding.

The line layer (:mod:`._lines`) cuts the bytes at ``\\r`` and ``\\n`` and decodes one
line at a time, which only works when those bytes mean the same in the file's
encoding as in ASCII. :func:`open_input` reads a file in such an encoding as it is
(skipping a UTF-8 byte-order mark), and transcodes any other (UTF-16, UTF-32...) to
UTF-8 on the fly.
"""

from __future__ import annotations

import codecs
from typing import BinaryIO, Protocol

from etl_core import FatalError

_UTF8_BOM = codecs.BOM_UTF8
_ASCII = bytes(range(128))

def _is_ascii_compatible(encoding: str) -> bool:
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


class Input(Protocol):
    """A file's bytes in an ASCII-compatible encoding, as :func:`open_input` returns them."""

    #: Bytes read from the file so far, for progress.
    bytes_read: int

    def read(self, size: int) -> bytes:
        """Return the next bytes (about ``size``); ``b""`` at the end of the file."""


def open_input(raw: BinaryIO, encoding: str, path: str) -> tuple[Input, str]:
    """Read ``raw`` in an encoding the line layer can cut at line breaks.

    Args:
        raw: The file, opened in binary.
        encoding: Its encoding (a normalized Python codec name).
        path: The file's path, for messages.

    Returns:
        The bytes to read, and their encoding: ``encoding`` itself when it is ASCII-compatible
        (a UTF-8 byte-order mark is skipped), else ``"utf-8"``.
    """
    if _is_ascii_compatible(encoding):
        return _Input(raw, strip_bom=encoding == "utf-8"), encoding
    return _Transcoder(raw, encoding, path), "utf-8"


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
