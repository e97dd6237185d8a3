"""Keys already read in this run: duplicate detection in bounded memory.

Lives for one run, in the process: the state store (SQLite or PostgreSQL) remembers
outcomes across runs; this table only answers "was this key read before in this run?".
"""

from __future__ import annotations

import array
import os
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Sequence

# SQLite's default limit on host parameters is 32766; stay far below it.
_LOOKUP_CHUNK = 500

#: A key's entry in SeenKeys' file: the line it was first read at and its length in bytes.
_ENTRY = struct.Struct("<qI")
#: The zero bytes that pad an entry of each length modulo 8 to the next multiple of 8.
_PADDING = tuple(bytes(-n % 8) for n in range(8))


class SeenKeys:
    """Keys already read in this run, to detect duplicates in bounded memory.

    An open-addressing table (linear probing) of 8-byte slots in an :class:`array.array`.
    A slot holds the top 32 bits of the key's hash (whose top bits also pick its first
    slot, so growing never hashes again) and where the key, with the line it was first
    read at, lies in a private temporary file. That file is read only when the hash bits
    match, for an exact comparison: at a duplicate, or at one new key in millions.

    The table stops growing at 2**21 slots (16 MiB, about 1.4 million keys); the keys
    past those go to a temporary SQLite database, as every key once did, so 10 million
    keys take 16 MiB of table, SQLite's small page cache and their bytes on disk.
    """

    #: Share of the slots in use past which the table doubles.
    _MAX_LOAD = 0.7
    #: The table's largest size, as a power of 2.
    _MAX_BITS = 21
    #: The key's hash (Python's own, randomized per process: the table lives in one run).
    _hash: Callable[[str], int] = staticmethod(hash)

    def __init__(self) -> None:
        self._bits = 16
        self._slots = array.array("Q", bytes(8 << self._bits))
        self._count = 0
        self._file = tempfile.TemporaryFile(buffering=0)
        self._size = 0
        self._overflow: sqlite3.Connection | None = None

    def add(self, keyed: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Add ``(key, line)`` pairs in input order.

        Returns:
            For each pair whose key was seen before: its line -> the line of the first occurrence.
        """
        while self._bits < self._MAX_BITS and self._count + len(keyed) > self._MAX_LOAD * len(self._slots):
            self._grow()
        slots, hash_key = self._slots, self._hash
        shift, mask = 32 - self._bits, len(self._slots) - 1
        room = int(self._MAX_LOAD * len(slots)) - self._count
        # This batch's new entries, written to the file in one go at the end.
        pending = bytearray()
        duplicates: dict[int, int] = {}
        spilled: list[tuple[str, int]] = []
        size = self._size
        for key, line in keyed:
            tag = hash_key(key) >> 32 & 0xFFFFFFFF
            at = tag >> shift
            while slot := slots[at]:
                if slot >> 32 == tag and (first := self._first_line(slot, key, pending)) is not None:
                    duplicates[line] = first
                    break
                at = (at + 1) & mask
            else:
                if not room:
                    spilled.append((key, line))
                    continue
                encoded = key.encode("utf-8", "surrogatepass")
                position = size >> 3
                if position >= 0xFFFFFFFF:
                    raise OverflowError("too many keys for duplicate detection (over 32 GiB of them)")
                slots[at] = tag << 32 | position + 1
                entry = _ENTRY.pack(line, len(encoded)) + encoded
                pending += entry
                pending += _PADDING[len(entry) & 7]  # entries start at multiples of 8
                size = self._size + len(pending)
                room -= 1
                self._count += 1
        if pending:
            os.pwrite(self._file.fileno(), pending, self._size)
            self._size = size
        if spilled:
            duplicates.update(self._add_overflow(spilled))
        return duplicates

    def _add_overflow(self, keyed: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Add the keys the full table has no room for to the overflow database."""
        if self._overflow is None:
            self._overflow = sqlite3.connect("", check_same_thread=False, isolation_level=None)
            self._overflow.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")
        first: dict[str, int] = {}
        keys = [key for key, _ in keyed]
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            first.update(self._overflow.execute(f"SELECT key, line FROM seen WHERE key IN ({marks})", chunk).fetchall())
        duplicates: dict[int, int] = {}
        new: list[tuple[str, int]] = []
        for key, line in keyed:
            if key in first:
                duplicates[line] = first[key]
            else:
                first[key] = line
                new.append((key, line))
        self._overflow.execute("BEGIN")
        self._overflow.executemany("INSERT INTO seen VALUES (?, ?)", new)
        self._overflow.execute("COMMIT")
        return duplicates

    def _first_line(self, slot: int, key: str, pending: bytearray) -> int | None:
        """Return the line of the entry ``slot`` points at if its key is ``key``, else None."""
        encoded = key.encode("utf-8", "surrogatepass")
        offset = ((slot & 0xFFFFFFFF) - 1) << 3
        length = _ENTRY.size + len(encoded)
        if offset >= self._size:
            entry = bytes(pending[offset - self._size : offset - self._size + length])
        else:
            entry = os.pread(self._file.fileno(), length, offset)
        line, size = _ENTRY.unpack_from(entry)
        return line if size == len(encoded) and entry[_ENTRY.size :] == encoded else None

    def _grow(self) -> None:
        self._bits += 1
        slots = array.array("Q", bytes(8 << self._bits))
        shift, mask = 32 - self._bits, len(slots) - 1
        for slot in self._slots:
            if slot:
                at = (slot >> 32) >> shift
                while slots[at]:
                    at = (at + 1) & mask
                slots[at] = slot
        self._slots = slots

    def close(self) -> None:
        """Drop the table, its file and the overflow database."""
        self._slots = array.array("Q")
        self._file.close()
        if self._overflow is not None:
            self._overflow.close()
