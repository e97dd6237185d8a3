"""The checkpoint store read without writing to it: what ``etl state show`` and ``list`` print.

The file is opened read-only (an SQLite ``mode=ro`` URI): looking never creates the
file, adds its tables or takes a write lock, and works while a run writes it (readers
of a WAL database do not block its writer). SQLite may leave the empty ``-wal`` and
``-shm`` files it reads through next to it; the next run removes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator

from ._outcome import Outcome
from .state import _HINTS, StateError

#: What a rerun does with a record, by its checkpoint: skips it while unchanged
#: (delivered, refused for good), or sends it again (retryable).
DELIVERED, REFUSED, RETRYABLE = "delivered", "refused", "retryable"
CATEGORIES = (DELIVERED, REFUSED, RETRYABLE)

_CATEGORY = (
    f"CASE WHEN outcome = '{Outcome.OK.value}' THEN '{DELIVERED}'"
    f" WHEN outcome = '{Outcome.FAILED.value}' AND retryable THEN '{RETRYABLE}'"
    f" WHEN outcome = '{Outcome.FAILED.value}' THEN '{REFUSED}' ELSE outcome END"
)
#: Rows fetched from SQLite at a time while listing: memory stays flat however many keys.
_FETCH = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class StoredRecord:
    """One key's checkpoint, as the last run that sent the record left it."""

    key: str
    outcome: str  # one of CATEGORIES (or an outcome a future version stores)
    status: int | None
    attempts: int
    reason: str | None
    line: int | None
    run_id: str
    updated_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class StoredQuota:
    """The quota a run measured at one destination, which the next run starts just under."""

    destination: str
    rate: float
    burst: float
    run_id: str
    updated_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class StateSummary:
    """How many checkpoints a pipeline has, by outcome, and when the last one was written."""

    counts: dict[str, int]
    last_run_id: str | None
    last_change: float | None

    @property
    def total(self) -> int:
        """Every checkpoint of the pipeline."""
        return sum(self.counts.values())


class StateView:
    """The checkpoints of one pipeline and the remembered quotas, read-only.

    Args:
        path: The state file; it must exist (SQLite would create it otherwise).
        pipeline: The pipeline whose checkpoints to read.

    Raises:
        StateError: The file cannot be opened or read, or is not a state file. Every
            method raises it too when the file fails later.
    """

    def __init__(self, path: str, pipeline: str) -> None:
        self.path = path
        self.pipeline = pipeline
        uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
        with self._failing():
            self._db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        try:
            with self._failing():
                tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except StateError:
            self._db.close()
            raise
        # An empty database (no run wrote it yet) has no tables: nothing remembered.
        self._has_records = "records" in tables
        self._has_quotas = "quotas" in tables

    def __enter__(self) -> StateView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            hint = _HINTS.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF)
            raise StateError(f"the state file {self.path} cannot be read: {exc}{f'; {hint}' if hint else ''}") from None

    def summary(self) -> StateSummary:
        """Count the pipeline's checkpoints by outcome (one pass over them)."""
        counts = dict.fromkeys(CATEGORIES, 0)
        last: tuple[float, str] | None = None
        if self._has_records:
            # SQLite gives the bare column run_id from the row that has the max(updated_at).
            query = f"SELECT {_CATEGORY}, count(*), max(updated_at), run_id FROM records WHERE pipeline = ? GROUP BY 1"
            with self._failing():
                rows = self._db.execute(query, (self.pipeline,)).fetchall()
            for category, count, updated_at, run_id in rows:
                counts[category] = count
                if last is None or updated_at > last[0]:
                    last = (updated_at, run_id)
        return StateSummary(counts, last[1] if last else None, last[0] if last else None)

    def records(self, *, outcome: str | None = None, limit: int | None = None) -> Iterator[StoredRecord]:
        """Yield the pipeline's checkpoints in key order, a few rows in memory at a time.

        Args:
            outcome: Only those of this outcome (one of :data:`CATEGORIES`).
            limit: At most this many.
        """
        if not self._has_records:
            return
        query = (
            f"SELECT key, {_CATEGORY}, status, attempts, error, line, run_id, updated_at FROM records WHERE pipeline = ?"
            + (f" AND {_CATEGORY} = ?" if outcome else "")
            + " ORDER BY key"  # the primary key's order: no sort, however many rows
            + (" LIMIT ?" if limit is not None else "")
        )
        parameters = [self.pipeline, *([outcome] if outcome else []), *([limit] if limit is not None else [])]
        with self._failing():
            cursor = self._db.execute(query, parameters)
            while rows := cursor.fetchmany(_FETCH):
                for row in rows:
                    yield StoredRecord(*row)

    def quotas(self) -> list[StoredQuota]:
        """The quota remembered for each destination (shared by the pipelines of the file)."""
        if not self._has_quotas:
            return []
        with self._failing():
            rows = self._db.execute("SELECT destination, rate, burst, run_id, updated_at FROM quotas ORDER BY destination").fetchall()
        return [StoredQuota(*row) for row in rows]

    def other_pipelines(self) -> list[str]:
        """The other pipelines with checkpoints in the file (e.g. this one under its former name)."""
        if not self._has_records:
            return []
        with self._failing():
            rows = self._db.execute("SELECT DISTINCT pipeline FROM records WHERE pipeline != ? ORDER BY 1", (self.pipeline,))
            return [name for (name,) in rows.fetchall()]
