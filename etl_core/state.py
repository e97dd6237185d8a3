"""The checkpoint store: what happened to each record, for resume and skip-unchanged.

One SQLite database (standard library) per output directory, keyed by pipeline and
record key. Checkpoints are written by a dedicated thread that commits whatever has
queued up since its last commit (a group commit): the event loop never blocks on the
disk, and a worker waits for its record's commit only before it takes the next record,
so a crash (even ``kill -9``) re-sends at most the records that were in flight.

Every failure of the file (damaged, read-only, a full disk) is a :class:`StateError`
that names it.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import queue
import sqlite3
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ._errors import FatalError
from ._outcome import Outcome
from .logging import redact

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    pipeline   TEXT NOT NULL,
    key        TEXT NOT NULL,
    hash       TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    retryable  INTEGER NOT NULL,
    status     INTEGER,
    attempts   INTEGER NOT NULL,
    error      TEXT,
    line       INTEGER,
    run_id     TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (pipeline, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quotas (
    destination TEXT PRIMARY KEY,
    rate        REAL NOT NULL,
    burst       REAL NOT NULL,
    run_id      TEXT NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;
"""

#: Rows the writer commits between two copies of the write-ahead log into the file. Each
#: row dirties a page of its own (the keys come in no order): 4000 rows, about 16 MiB of log.
_CHECKPOINT_ROWS = 4_000
#: The writer's page cache: the pages its upserts revisit stay in memory.
_WRITER_CACHE_KIB = 16_384

# SQLite's default limit on host parameters is 32766; stay far below it.
_LOOKUP_CHUNK = 500

#: A key's entry in SeenKeys' file: the line it was first read at and its length in bytes.
_ENTRY = struct.Struct("<qI")
#: The zero bytes that pad an entry of each length modulo 8 to the next multiple of 8.
_PADDING = tuple(bytes(-n % 8) for n in range(8))

_DAMAGED = "it is damaged or not a state file: move it away to start afresh (every record is then sent again)"
_NOT_WRITABLE = "check that the file and its directory are writable"
#: What to do about an SQLite error, by its primary result code.
_HINTS = {
    sqlite3.SQLITE_CORRUPT: _DAMAGED,
    sqlite3.SQLITE_NOTADB: _DAMAGED,
    sqlite3.SQLITE_READONLY: _NOT_WRITABLE,
    sqlite3.SQLITE_CANTOPEN: _NOT_WRITABLE,
    sqlite3.SQLITE_PERM: _NOT_WRITABLE,
}


class StateError(FatalError):
    """The state file cannot be opened, read or written; the message names the file.

    Raised mid-run, it stops the run (exit code 1); the runner reports it as a config
    error (exit code 2) when it happens before anything is sent.
    """


def content_hash(data: dict[str, Any]) -> str:
    """Return a stable hash of a record's fields (after transforms)."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class PreviousOutcome:
    """What an earlier run recorded for a key."""

    hash: str
    outcome: Outcome
    retryable: bool
    status: int | None
    error: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    """One record's final outcome in this run, queued for the store."""

    key: str
    hash: str
    outcome: Outcome
    retryable: bool
    status: int | None
    attempts: int
    error: str | None
    line: int


class StateStore:
    """Checkpoints of one pipeline in a SQLite file.

    Args:
        path: The database file (created with its directory if missing).
        pipeline: The pipeline name; several pipelines may share one file.
        run_id: The current run, stored with each outcome.
        read_only: Only read it (a dry run): it need not be writable.

    Raises:
        StateError: The file is a symbolic link, or not a usable database, or (unless
            ``read_only``) cannot be written. Every method raises it too when the file
            fails later.
    """

    def __init__(self, path: str, pipeline: str, run_id: str, *, read_only: bool = False) -> None:
        self.path = path
        self.pipeline = pipeline
        self.run_id = run_id
        if os.path.islink(path):
            # SQLite would write through it, into whatever file it points to.
            raise StateError(f"the state file {path} is a symbolic link, which is never written through: name the file itself")
        with self._failing("opened"):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._read = self._connect()
        try:
            with self._failing("opened"):
                self._read.executescript(_SCHEMA)
                has_history = self._read.execute(
                    "SELECT EXISTS(SELECT 1 FROM records WHERE pipeline = ?)", (pipeline,)
                ).fetchone()[0] == 1
            if not read_only:
                with self._failing("written"):
                    # Writes nothing, but needs write access: a read-only file fails here,
                    # before anything is sent, rather than at the first checkpoint.
                    self._read.execute("DELETE FROM records WHERE 0")
        except StateError:
            self._read.close()
            raise
        self.has_history = has_history
        self._queue: queue.SimpleQueue[Checkpoint | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._error: StateError | None = None
        self.written = 0
        #: Checkpoints queued so far (by the event loop) and committed so far (by the writer).
        #: A failed writer sets ``committed`` to infinity so nobody waits on it forever.
        self.recorded = 0
        self.committed: float = 0
        #: Called from the writer thread after each commit (e.g. to wake waiting tasks).
        self.on_commit: Callable[[], None] | None = None

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: trio runs each read batch in whichever worker thread
        # is free; batches never overlap, so the connection is never used concurrently.
        connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL with WAL: a committed outcome survives a process crash; only a power
        # loss may drop the last transactions, which a rerun then sends again.
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @contextlib.contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        """Turn a failure of the file into a :class:`StateError` saying what could not be done."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise self._failure(doing, exc) from None

    def _failure(self, doing: str, exc: BaseException) -> StateError:
        if isinstance(exc, sqlite3.Error):
            hint = _HINTS.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF)
            problem = f"{exc}; {hint}" if hint else str(exc)
        elif isinstance(exc, OSError):
            problem = exc.strerror or str(exc)
        else:  # a bug in the writer thread: still said with the name of the file
            problem = f"{type(exc).__name__}: {exc}"
        return StateError(f"the state file {self.path} cannot be {doing}: {problem}")

    def quota(self, destination: str) -> tuple[float, float] | None:
        """Return the quota an earlier run measured for ``destination``: (rate, burst), or None."""
        with self._failing("read"):
            row = self._read.execute("SELECT rate, burst FROM quotas WHERE destination = ?", (destination,)).fetchone()
        return None if row is None else (float(row[0]), float(row[1]))

    def remember_quota(self, destination: str, rate: float, burst: float) -> None:
        """Keep the quota measured for ``destination`` for the next run. Blocks (a small write)."""
        with self._failing("written"):
            self._read.execute(
                "INSERT INTO quotas (destination, rate, burst, run_id, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (destination) DO UPDATE SET rate = excluded.rate, burst = excluded.burst,"
                " run_id = excluded.run_id, updated_at = excluded.updated_at",
                (destination, rate, burst, self.run_id, time.time()),
            )

    def forget(self) -> int:
        """Delete this pipeline's checkpoints (``--fresh``); return how many there were."""
        with self._failing("written"):
            deleted = self._read.execute("DELETE FROM records WHERE pipeline = ?", (self.pipeline,)).rowcount
        self.has_history = False
        return deleted

    def forget_keys(self, keys: Sequence[str]) -> list[str]:
        """Delete the checkpoints of ``keys`` (in one transaction): the next run sends them again.

        Returns:
            The keys that had a checkpoint, in the order given, each once.
        """
        with self._transaction() as db:
            delete = "DELETE FROM records WHERE pipeline = ? AND key = ?"
            return [key for key in dict.fromkeys(keys) if db.execute(delete, (self.pipeline, key)).rowcount]

    def forget_quotas(self) -> list[tuple[str, float, float]]:
        """Delete the quota remembered for every destination; return each (destination, rate, burst)."""
        with self._transaction() as db:
            quotas = db.execute("SELECT destination, rate, burst FROM quotas ORDER BY destination").fetchall()
            db.execute("DELETE FROM quotas")
        return [(str(destination), float(rate), float(burst)) for destination, rate, burst in quotas]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the reading connection (between runs: no writer thread)."""
        with self._failing("written"):
            self._read.execute("BEGIN")
            try:
                yield self._read
                self._read.execute("COMMIT")
            finally:
                if self._read.in_transaction:
                    self._read.execute("ROLLBACK")

    def lookup(self, keys: Sequence[str]) -> dict[str, PreviousOutcome]:
        """Return the stored outcome of each of ``keys`` that has one."""
        found: dict[str, PreviousOutcome] = {}
        if not self.has_history:
            return found
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._failing("read"):
                rows = self._read.execute(
                    f"SELECT key, hash, outcome, retryable, status, error FROM records WHERE pipeline = ? AND key IN ({marks})",
                    (self.pipeline, *chunk),
                ).fetchall()
            for key, hash_, outcome, retryable, status, error in rows:
                found[key] = PreviousOutcome(hash_, Outcome(outcome), bool(retryable), status, error)
        return found

    def start(self) -> None:
        """Start the writer thread."""
        self._writer = threading.Thread(target=self._write_loop, name="etl-state-writer", daemon=True)
        self._writer.start()

    def record(self, checkpoint: Checkpoint) -> None:
        """Queue one checkpoint; the writer thread commits it within milliseconds."""
        self.recorded += 1
        self._queue.put(checkpoint)

    def close(self) -> None:
        """Commit everything queued, stop the writer and close the database. Blocks.

        Raises:
            StateError: A checkpoint could not be written, now or earlier.
        """
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        self._read.close()
        if self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        insert = (
            "INSERT INTO records (pipeline, key, hash, outcome, retryable, status, attempts, error, line, run_id, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (pipeline, key) DO UPDATE SET hash = excluded.hash, outcome = excluded.outcome,"
            " retryable = excluded.retryable, status = excluded.status, attempts = excluded.attempts,"
            " error = excluded.error, line = excluded.line, run_id = excluded.run_id, updated_at = excluded.updated_at"
        )
        stop = False
        connection: sqlite3.Connection | None = None
        uncheckpointed = 0
        try:
            connection = self._connect()
            # The writer copies the log back into the file itself, after waking the
            # workers (SQLite's automatic checkpoint would run inside their COMMIT).
            connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
            while not stop:
                batch = [self._queue.get()]
                # Everything that queued up while the last commit ran goes in one transaction.
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = batch[-1] is None
                rows = self._rows([item for item in batch if item is not None])
                if rows:
                    connection.execute("BEGIN")
                    connection.executemany(insert, rows)
                    connection.execute("COMMIT")
                    self.written += len(rows)
                    self.committed += len(rows)
                    self._notify()
                    uncheckpointed += len(rows)
                    if uncheckpointed >= _CHECKPOINT_ROWS:
                        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        uncheckpointed = 0
        except BaseException as exc:  # noqa: BLE001 - reported by close(); the run must not hang on it
            self._error = self._failure("written", exc)
            self.committed = math.inf
            self._notify()
            # Drain until close() says stop, unless its marker was in the failed batch.
            while not stop:
                stop = self._queue.get() is None
        finally:
            if connection is not None:
                connection.close()

    @property
    def failed(self) -> bool:
        """True once the writer has failed (the error is raised by :meth:`close`)."""
        return self._error is not None

    def _notify(self) -> None:
        if self.on_commit is not None:
            self.on_commit()

    def _rows(self, checkpoints: Iterable[Checkpoint]) -> list[tuple[Any, ...]]:
        now, pipeline, run_id = time.time(), self.pipeline, self.run_id
        return [
            (pipeline, o.key, o.hash, o.outcome.value, int(o.retryable), o.status, o.attempts,
             redact(o.error) if o.error else o.error, o.line, run_id, now)
            for o in checkpoints
        ]


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
