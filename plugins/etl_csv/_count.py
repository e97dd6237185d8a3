"""A quick count of a CSV file's records, for the progress bar's total (:meth:`etl_csv.CsvSource.count`).

The file is not parsed: its line breaks are counted, a block at a time, at the speed of
``bytes.count``. A record holds at least one line, so the count is never too low; it is
too high by the blank lines and by the line breaks inside quoted fields.
"""

from __future__ import annotations

import time

from etl_core import open_regular_file

from ._input import _is_ascii_compatible

_BLOCK = 1 << 20


def count_records(path: str, *, encoding: str, header: bool, time_limit: float) -> int | None:
    """Count the records of the CSV file at ``path`` from its line breaks (``\\n``, ``\\r\\n``, ``\\r``).

    Args:
        path: The file.
        encoding: Its encoding; in one that is not ASCII-compatible (UTF-16, UTF-32...) a
            line break is not one byte, and nothing is counted.
        header: Whether its first line is a header, not a record.
        time_limit: Seconds after which to give up.

    Returns:
        The records, at most; None when the file cannot be read, is in an encoding that is
        not ASCII-compatible, or takes longer than ``time_limit`` to count.
    """
    if not _is_ascii_compatible(encoding):
        return None
    deadline = time.monotonic() + time_limit
    breaks = 0
    last = b""
    try:
        with open_regular_file(path) as file:
            while block := file.read(_BLOCK):
                if time.monotonic() > deadline:
                    return None
                breaks += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
                if last == b"\r" and block.startswith(b"\n"):  # a \r\n cut by the block's edge
                    breaks -= 1
                last = block[-1:]
    except OSError:  # the reader says what is wrong with the file
        return None
    lines = breaks + (1 if last not in (b"", b"\n", b"\r") else 0)  # a last line with no line break
    return max(0, lines - 1) if header else lines
