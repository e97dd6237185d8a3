"""The state store in PostgreSQL (``state.url``): checkpoints shared by every machine that runs a pipeline.

The same tables as the SQLite file, prefixed ``etl_`` in the database's default schema,
the same semantics (:class:`etl_core._state_store.StateBackend`), through psycopg 3:

- the connection is made, and the schema brought up to date, when the store opens:
  an unreachable server or refused credentials are a :class:`StateError` before any
  row is read;
- checkpoints are committed by a writer thread on its own connection, each group in one
  statement (one array per column, ``unnest``): no round trip per row on the hot path;
- the run lease is a session advisory lock on a connection of its own: the server
  releases it when that connection ends, however the process holding it ends.

The password never appears in a message: the store is named by its URL without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

from ._outcome import Outcome
from ._quota_board import PostgresQuotaBoard
from ._state_lease import holder, lease_id, refused
from ._state_store import shown_url
from ._state_writer import CheckpointWriter, WriteRows, closing_on_error
from .config import state_url_secrets
from .logging import redact, register_secret
from .state import PreviousOutcome, StateError, newer_schema

#: The schema, one step per version, as in the SQLite store (whose version 1 had no version table).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS etl_records (
            pipeline   text NOT NULL,
            key        text NOT NULL,
            hash       text NOT NULL,
            outcome    text NOT NULL,
            retryable  boolean NOT NULL,
            status     integer,
            attempts   integer NOT NULL,
            error      text,
            line       bigint,
            run_id     text NOT NULL,
            updated_at double precision NOT NULL,
            PRIMARY KEY (pipeline, key)
        )""",
        """CREATE TABLE IF NOT EXISTS etl_quotas (
            destination text PRIMARY KEY,
            rate        double precision NOT NULL,
            burst       double precision NOT NULL,
            run_id      text NOT NULL,
            updated_at  double precision NOT NULL
        )""",
    ),
    (
        "CREATE TABLE IF NOT EXISTS etl_schema_version (version integer NOT NULL)",
        # Who holds each lease (the lock itself is an advisory lock): for whoever finds it taken.
        "CREATE TABLE IF NOT EXISTS etl_leases (lease text PRIMARY KEY, holder jsonb NOT NULL)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

#: One statement for a whole group of checkpoints: one array per column, one round trip.
_UPSERT = (
    "INSERT INTO etl_records (pipeline, key, hash, outcome, retryable, status, attempts, error, line, run_id, updated_at)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::boolean[], %s::integer[],"
    " %s::integer[], %s::text[], %s::bigint[], %s::text[], %s::double precision[])"
    " ON CONFLICT (pipeline, key) DO UPDATE SET hash = excluded.hash, outcome = excluded.outcome,"
    " retryable = excluded.retryable, status = excluded.status, attempts = excluded.attempts,"
    " error = excluded.error, line = excluded.line, run_id = excluded.run_id, updated_at = excluded.updated_at"
)
#: Seconds to wait for the server before saying it cannot be reached.
_CONNECT_TIMEOUT = 10
#: What to do about a connection's failure, by what the server or libpq said.
_HINTS = (
    ("password authentication failed", "check the user and the password in state.url"),
    ("does not exist", "check the names in state.url, or create the database"),
    ("Connection refused", "check the host and the port in state.url, and that the server runs"),
    ("timeout expired", "check the host and the port in state.url, and that the server runs"),
    ("could not translate host name", "check the host in state.url"),
)
#: Keys per lookup query (one array parameter) and per page of a listing.
_CHUNK = 5_000


def _lock_key(text: str) -> int:
    """A stable 64-bit advisory-lock key for ``text`` (the same on every machine)."""
    return int.from_bytes(hashlib.blake2b(f"etl\0{text}".encode(), digest_size=8).digest(), "big", signed=True)


#: Serialises schema migrations between processes opening one database at once.
_MIGRATION_LOCK = _lock_key("schema")


class PostgresDatabase:
    """A connection-making, error-naming handle on one database (shared by the store and its view).

    Args:
        url: ``postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE[?PARAMS]``.
    """

    def __init__(self, url: str) -> None:
        # Masked in every message and log line from now on (libpq also reads PGPASSWORD itself).
        for secret in [*state_url_secrets(url), os.environ.get("PGPASSWORD", "")]:
            register_secret(secret)
        self._url = url
        self.path = shown_url(url)

    def connect(self, *, doing: str = "opened") -> psycopg.Connection[Any]:
        """A new connection in autocommit mode.

        Raises:
            StateError: The server cannot be reached or refused the credentials.
        """
        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT, application_name="etl")
        except psycopg.Error as exc:
            raise self.failure(doing, exc) from None

    def failure(self, doing: str, exc: BaseException) -> StateError:
        """The :class:`StateError` saying what could not be done, on one line and without the password."""
        if isinstance(exc, StateError):
            return exc
        problem = " ".join(str(exc).split()) if isinstance(exc, psycopg.Error) else f"{type(exc).__name__}: {exc}"
        hint = next((hint for symptom, hint in _HINTS if symptom in problem), None)
        if hint is not None:
            problem += f"; {hint}"
        return StateError(f"the state database {self.path} cannot be {doing}: {redact(problem)}")

    @contextlib.contextmanager
    def failing(self, doing: str) -> Iterator[None]:
        """Turn a failure of the database into a :class:`StateError` saying what could not be done."""
        try:
            yield
        except psycopg.Error as exc:
            raise self.failure(doing, exc) from None


def schema_version(connection: psycopg.Connection[Any]) -> int:
    """The schema version of the database: 0 when no run has written it, 1 before versions were kept."""
    tables = connection.execute(
        "SELECT to_regclass('etl_schema_version') IS NOT NULL, to_regclass('etl_records') IS NOT NULL"
    ).fetchone()
    assert tables is not None
    if tables[0]:
        row = connection.execute("SELECT max(version) FROM etl_schema_version").fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
    return 1 if tables[1] else 0


def _locked(connection: psycopg.Connection[Any], query: LiteralString, lease: str) -> bool:
    row = connection.execute(query, (_lock_key(f"lease\0{lease}"),)).fetchone()
    return row is not None and bool(row[0])


def _holder(connection: psycopg.Connection[Any], lease: str) -> dict[str, Any] | None:
    row = connection.execute("SELECT holder FROM etl_leases WHERE lease = %s", (lease,)).fetchone()
    return row[0] if row is not None and isinstance(row[0], dict) else None


class PostgresLease:
    """A run lease held by a session advisory lock; :meth:`release` ends its connection."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection: psycopg.Connection[Any] | None = connection

    def release(self) -> None:
        """Give the lease up. Safe to call twice."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            # Unlocked now, not once the server notices the session ended: a run that
            # starts right after this one ends must find the lease free.
            connection.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            pass  # the session is gone, and its locks with it
        finally:
            connection.close()


class PostgresStateStore(CheckpointWriter):
    """Checkpoints of one pipeline in a PostgreSQL database.

    Args:
        url: The database's URL (with its password; never shown).
        pipeline: The pipeline name; several pipelines may share one database.
        run_id: The current run, stored with each outcome.
        read_only: Only read it (a dry run): the schema is not created nor migrated.

    Raises:
        StateError: The server cannot be reached, refused the credentials, or the
            database has a newer schema or cannot be written. Every method raises it
            too when the database fails later.
    """

    def __init__(self, url: str, pipeline: str, run_id: str, *, read_only: bool = False) -> None:
        super().__init__()
        self._database = PostgresDatabase(url)
        self.path = self._database.path
        self.pipeline = pipeline
        self.run_id = run_id
        self._read = self._database.connect()
        with closing_on_error(self._read.close), self._database.failing("opened"):
            version = self._migrate(read_only)
            self.has_history = version > 0 and self._one(
                "SELECT EXISTS(SELECT 1 FROM etl_records WHERE pipeline = %s)", (pipeline,)
            ) is True

    def _migrate(self, read_only: bool) -> int:
        """Bring the schema up to date (unless ``read_only``); return the version now."""
        version = schema_version(self._read)
        if version > SCHEMA_VERSION:
            raise newer_schema(f"the state database {self.path}", version, SCHEMA_VERSION)
        if read_only or version == SCHEMA_VERSION:
            return version
        with self._read.transaction():
            self._read.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            version = schema_version(self._read)  # another process may have migrated it meanwhile
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    self._read.execute(statement)
            if version < SCHEMA_VERSION:
                self._read.execute("DELETE FROM etl_schema_version")
                self._read.execute("INSERT INTO etl_schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
        return SCHEMA_VERSION

    def _one(self, query: str, params: Sequence[Any]) -> Any:
        row = self._read.execute(query, params).fetchone()
        return None if row is None else row[0]

    def _failure(self, doing: str, exc: BaseException) -> StateError:
        return self._database.failure(doing, exc)

    def take_lease(self, name: str | None = None) -> PostgresLease:
        """Take the run lease of the pipeline, or of its part ``name`` (a shard), in this database.

        An advisory lock on the pipeline: exclusive, or shared by the parts, each of which
        also holds one of its own exclusively.

        Raises:
            RunLockedError: Another live process, on any machine, holds it.
            StateError: The database cannot be reached.
        """
        whole = lease_id(self.pipeline, None)
        leased = lease_id(self.pipeline, name)
        connection = self._database.connect(doing="leased")
        with closing_on_error(connection.close), self._database.failing("leased"):
            if name is not None:
                if not _locked(connection, "SELECT pg_try_advisory_lock_shared(%s)", whole):
                    raise refused(f"the state of {whole} in {self.path}", _holder(connection, whole))
                # A part does not say who it is in the whole's lease: an older holder's word would mislead.
                connection.execute("DELETE FROM etl_leases WHERE lease = %s", (whole,))
            if not _locked(connection, "SELECT pg_try_advisory_lock(%s)", leased):
                raise refused(f"the state of {leased} in {self.path}", _holder(connection, leased))
            connection.execute(
                "INSERT INTO etl_leases (lease, holder) VALUES (%s, %s)"
                " ON CONFLICT (lease) DO UPDATE SET holder = excluded.holder",
                (leased, Jsonb(holder(self.pipeline, self.run_id))),
            )
        return PostgresLease(connection)

    def keys(self) -> Iterator[str]:
        """Yield every key of the pipeline that has a checkpoint, in key order, a page at a time."""
        after = ""
        while self.has_history:
            with self._database.failing("read"):
                rows = self._read.execute(
                    "SELECT key FROM etl_records WHERE pipeline = %s AND key > %s ORDER BY key LIMIT %s",
                    (self.pipeline, after, _CHUNK),
                ).fetchall()
            yield from (key for (key,) in rows)
            if len(rows) < _CHUNK:
                return
            after = rows[-1][0]

    def quota(self, destination: str) -> tuple[float, float] | None:
        """Return the quota an earlier run measured for ``destination``: (rate, burst), or None."""
        with self._database.failing("read"):
            row = self._read.execute("SELECT rate, burst FROM etl_quotas WHERE destination = %s", (destination,)).fetchone()
        return None if row is None else (float(row[0]), float(row[1]))

    def remember_quota(self, destination: str, rate: float, burst: float) -> None:
        """Keep the quota measured for ``destination`` for the next run. Blocks (a small write)."""
        with self._database.failing("written"):
            self._read.execute(
                "INSERT INTO etl_quotas (destination, rate, burst, run_id, updated_at) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (destination) DO UPDATE SET rate = excluded.rate, burst = excluded.burst,"
                " run_id = excluded.run_id, updated_at = excluded.updated_at",
                (destination, rate, burst, self.run_id, time.time()),
            )

    def forget(self) -> int:
        """Delete this pipeline's checkpoints (``--fresh``); return how many there were."""
        with self._database.failing("written"):
            deleted = self._read.execute("DELETE FROM etl_records WHERE pipeline = %s", (self.pipeline,)).rowcount
        self.has_history = False
        return deleted

    def forget_keys(self, keys: Sequence[str]) -> list[str]:
        """Delete the checkpoints of ``keys`` (in one statement): the next run sends them again.

        Returns:
            The keys that had a checkpoint, in the order given, each once.
        """
        wanted = list(dict.fromkeys(keys))
        with self._database.failing("written"):
            rows = self._read.execute(
                "DELETE FROM etl_records WHERE pipeline = %s AND key = ANY(%s) RETURNING key", (self.pipeline, wanted)
            ).fetchall()
        deleted = {key for (key,) in rows}
        return [key for key in wanted if key in deleted]

    def forget_quotas(self) -> list[tuple[str, float, float]]:
        """Delete the quota remembered for every destination; return each (destination, rate, burst)."""
        with self._database.failing("written"):
            rows = self._read.execute("DELETE FROM etl_quotas RETURNING destination, rate, burst").fetchall()
        return sorted((str(destination), float(rate), float(burst)) for destination, rate, burst in rows)

    def quota_board(self) -> PostgresQuotaBoard:
        """Open the board on which shards share a destination's quota, on a connection of its own."""
        connection = self._database.connect()
        with self._database.failing("opened"):
            return PostgresQuotaBoard(connection)

    def lookup(self, keys: Sequence[str]) -> dict[str, PreviousOutcome]:
        """Return the stored outcome of each of ``keys`` that has one (one query per 5,000 keys)."""
        found: dict[str, PreviousOutcome] = {}
        if not self.has_history:
            return found
        for start in range(0, len(keys), _CHUNK):
            with self._database.failing("read"):
                rows = self._read.execute(
                    "SELECT key, hash, outcome, retryable, status, error FROM etl_records WHERE pipeline = %s AND key = ANY(%s)",
                    (self.pipeline, list(keys[start : start + _CHUNK])),
                ).fetchall()
            for key, hash_, outcome, retryable, status, error in rows:
                found[key] = PreviousOutcome(hash_, Outcome(outcome), bool(retryable), status, error)
        return found

    @contextlib.contextmanager
    def _writer_session(self) -> Iterator[WriteRows]:
        connection = self._database.connect(doing="written")

        def write(rows: list[tuple[Any, ...]]) -> None:
            # One row per key, the last: a statement's ON CONFLICT may update a row only once.
            latest = {row[1]: row for row in rows}.values()
            connection.execute(_UPSERT, [list(column) for column in zip(*latest, strict=True)])

        try:
            yield write
        finally:
            connection.close()
