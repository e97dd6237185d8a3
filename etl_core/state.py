"""The checkpoint store: what happened to each record, for resume and skip-unchanged.

The embedded default keeps one SQLite database (standard library) per output directory,
keyed by pipeline and record key; ``state.url`` keeps the same in PostgreSQL instead
(:mod:`etl_core._state_postgres`). Both follow :class:`etl_core._state_store.StateBackend`.
Checkpoints are written by a dedicated thread that commits whatever has queued up since
its last commit (a group commit, :mod:`etl_core._state_writer`): the event loop never
blocks on the disk, and a worker waits for its record's commit only before it takes the
next record, so a crash (even ``kill -9``) re-sends at most the records that were in flight.

The file's schema has a version (table ``schema_version``); opening the file for writing
brings an older one up to date, and a file of a newer ``etl`` is refused.

Every failure of the file (damaged, read-only, a full disk) is a :class:`StateError`
that names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ._errors import FatalError
from ._outcome import Outcome
from ._quota_board import SqliteQuotaBoard
from ._seen_keys import SeenKeys as SeenKeys
from ._sqlite import connect_wal
from ._state_lease import FileLease, lease_id, take_file_lease
from ._state_writer import CheckpointWriter, WriteRows, closing_on_error

#: The schema, one step per version: a file of version N has had steps 1..N applied.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the layout of every file written before the schema had a version.
    (
        """CREATE TABLE IF NOT EXISTS records (
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
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS quotas (
            destination TEXT PRIMARY KEY,
            rate        REAL NOT NULL,
            burst       REAL NOT NULL,
            run_id      TEXT NOT NULL,
            updated_at  REAL NOT NULL
        ) WITHOUT ROWID""",
    ),
    # 2: the schema's version, kept in the file.
    ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",),
)
#: The version this ``etl`` writes.
SCHEMA_VERSION = len(_MIGRATIONS)

#: Rows the writer commits between two copies of the write-ahead log into the file. Each
#: row dirties a page of its own (the keys come in no order): 4000 rows, about 16 MiB of log.
_CHECKPOINT_ROWS = 4_000
#: The writer's page cache: the pages its upserts revisit stay in memory.
_WRITER_CACHE_KIB = 16_384

# SQLite's default limit on host parameters is 32766; stay far below it.
_LOOKUP_CHUNK = 500

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

_INSERT = "INSERT INTO records (pipeline, key, hash, outcome, retryable, status, attempts, error, line, run_id, updated_at) VALUES "
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_ON_CONFLICT = (
    " ON CONFLICT (pipeline, key) DO UPDATE SET hash = excluded.hash, outcome = excluded.outcome,"
    " retryable = excluded.retryable, status = excluded.status, attempts = excluded.attempts,"
    " error = excluded.error, line = excluded.line, run_id = excluded.run_id, updated_at = excluded.updated_at"
)
#: Rows in one upsert statement (11 parameters each, far below SQLite's limit of 32766).
_UPSERT_ROWS = 500


def _upserts(rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[Any]]]:
    """The statements that write ``rows``: one per ``_UPSERT_ROWS``, with their parameters.

    One statement of many rows, not ``executemany``: the latter releases and takes back
    the GIL for every row, and while the event loop's thread is busy each take waits for
    its switch interval (5 ms), which made a commit of 20 rows take 12 ms and 70 us of
    CPU per row. A statement of its own commits atomically (the connection autocommits).
    """
    for start in range(0, len(rows), _UPSERT_ROWS):
        chunk = rows[start : start + _UPSERT_ROWS]
        yield _INSERT + ", ".join([_ROW] * len(chunk)) + _ON_CONFLICT, [value for row in chunk for value in row]


class StateError(FatalError):
    """The state cannot be opened, read or written; the message names the file or the database.

    Raised mid-run, it stops the run (exit code 1); the runner reports it as a config
    error (exit code 2) when it happens before anything is sent.
    """


def content_hash(data: dict[str, Any]) -> str:
    """Return a stable hash of a record's fields (after transforms)."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def newer_schema(where: str, version: int, known: int = SCHEMA_VERSION) -> StateError:
    """The error for a state written by a newer ``etl``, whose schema this one does not know."""
    return StateError(
        f"{where} has schema version {version}, written by a newer etl (this one knows versions up to "
        f"{known}): upgrade etl, or use another state"
    )


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


class StateStore(CheckpointWriter):
    """Checkpoints of one pipeline in a SQLite file (the embedded default state store).

    Args:
        path: The database file (created with its directory if missing).
        pipeline: The pipeline name; several pipelines may share one file.
        run_id: The current run, stored with each outcome.
        read_only: Only read it (a dry run): it need not be writable, and an older
            schema is read as it is.

    Raises:
        StateError: The file is a symbolic link, or not a usable database, or of a newer
            schema, or (unless ``read_only``) cannot be written. Every method raises it
            too when the file fails later.
    """

    def __init__(self, path: str, pipeline: str, run_id: str, *, read_only: bool = False) -> None:
        super().__init__()
        self.path = path
        self.pipeline = pipeline
        self.run_id = run_id
        if os.path.islink(path):
            # SQLite would write through it, into whatever file it points to.
            raise StateError(f"the state file {path} is a symbolic link, which is never written through: name the file itself")
        with self._failing("opened"):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._read = self._connect()
        with closing_on_error(self._read.close):
            tables = self._open_schema(read_only)
            with self._failing("opened"):
                self.has_history = "records" in tables and self._read.execute(
                    "SELECT EXISTS(SELECT 1 FROM records WHERE pipeline = ?)", (pipeline,)
                ).fetchone()[0] == 1

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: trio runs each read batch in whichever worker thread
        # is free; batches never overlap, so the connection is never used concurrently.
        connection = connect_wal(self.path, check_same_thread=False)
        # NORMAL with WAL: a committed outcome survives a process crash; only a power
        # loss may drop the last transactions, which a rerun then sends again.
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _open_schema(self, read_only: bool) -> set[str]:
        """Bring the schema up to date (unless ``read_only``); return the file's tables."""
        with self._failing("opened"):
            tables = self._tables()
            version = self._version(tables)
        if version > SCHEMA_VERSION:
            raise newer_schema(f"the state file {self.path}", version)
        if read_only:
            return tables
        # BEGIN IMMEDIATE: one writer at a time, so two runs opening an old file migrate it once.
        with self._failing("written"), self._transaction("BEGIN IMMEDIATE") as db:
            version = self._version(self._tables())
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            if version < SCHEMA_VERSION:
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            else:
                # Writes nothing, but needs write access: a read-only file fails here,
                # before anything is sent, rather than at the first checkpoint.
                db.execute("DELETE FROM records WHERE 0")
        return self._tables()

    def _tables(self) -> set[str]:
        return {name for (name,) in self._read.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _version(self, tables: set[str]) -> int:
        if "schema_version" in tables:
            row = self._read.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is not None:
                return int(row[0])
        return 1 if "records" in tables else 0

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

    def take_lease(self, name: str | None = None) -> FileLease:
        """Take the run lease of the pipeline, or of its part ``name`` (a shard), in this file.

        An ``flock`` on ``PATH.PIPELINE.lock`` next to the file: exclusive, or shared by
        the parts, each of which also locks ``PATH.PIPELINE.NAME.lock`` exclusively.

        Raises:
            RunLockedError: Another live process holds it.
            StateError: The lease file cannot be created or locked.
        """
        leases = [lease_id(self.pipeline, None), *([lease_id(self.pipeline, name)] if name is not None else [])]
        with self._failing("leased"):
            return take_file_lease(
                [f"{self.path}.{leased}.lock" for leased in leases], what=f"the state of {leases[-1]} in {self.path}",
                pipeline=self.pipeline, run_id=self.run_id,
            )

    def keys(self) -> Iterator[str]:
        """Yield every key of the pipeline that has a checkpoint, in key order, a few in memory at a time."""
        if not self.has_history:
            return
        with self._failing("read"):
            cursor = self._read.execute("SELECT key FROM records WHERE pipeline = ? ORDER BY key", (self.pipeline,))
            while rows := cursor.fetchmany(_LOOKUP_CHUNK):
                yield from (key for (key,) in rows)

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
        with self._failing("written"), self._transaction() as db:
            delete = "DELETE FROM records WHERE pipeline = ? AND key = ?"
            return [key for key in dict.fromkeys(keys) if db.execute(delete, (self.pipeline, key)).rowcount]

    def forget_quotas(self) -> list[tuple[str, float, float]]:
        """Delete the quota remembered for every destination; return each (destination, rate, burst)."""
        with self._failing("written"), self._transaction() as db:
            quotas = db.execute("SELECT destination, rate, burst FROM quotas ORDER BY destination").fetchall()
            db.execute("DELETE FROM quotas")
        return [(str(destination), float(rate), float(burst)) for destination, rate, burst in quotas]

    def quota_board(self) -> SqliteQuotaBoard:
        """Open the board on which shards share a destination's quota, in this file."""
        with self._failing("opened"):
            return SqliteQuotaBoard(self.path)

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
        """A write transaction on the reading connection (between runs: no writer thread)."""
        self._read.execute(begin)
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

    @contextlib.contextmanager
    def _writer_session(self) -> Iterator[WriteRows]:
        connection = self._connect()
        # The writer copies the log back into the file itself, after waking the
        # workers (SQLite's automatic checkpoint would run inside their COMMIT).
        connection.execute("PRAGMA wal_autocheckpoint=0")
        connection.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
        uncheckpointed = 0

        def write(rows: list[tuple[Any, ...]]) -> None:
            nonlocal uncheckpointed
            for statement, parameters in _upserts(rows):
                connection.execute(statement, parameters)
            uncheckpointed += len(rows)
            if uncheckpointed >= _CHECKPOINT_ROWS:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                uncheckpointed = 0

        try:
            yield write
        finally:
            connection.close()
