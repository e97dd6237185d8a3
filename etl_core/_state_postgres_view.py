"""The PostgreSQL state read without writing to it: what ``etl state show`` and ``list`` print.

Only ``SELECT`` statements, in autocommit: looking never creates the tables nor takes a
lock a run waits on, and works while runs write.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._state_postgres import PostgresDatabase, schema_version
from ._state_view import _CATEGORY, CATEGORIES, StateSummary, StoredQuota, StoredRecord

#: Checkpoints fetched at a time while listing: memory stays flat however many keys.
_PAGE = 1000


class PostgresStateView:
    """The checkpoints of one pipeline and the remembered quotas in a database, read-only.

    Args:
        url: The database's URL (with its password; never shown).
        pipeline: The pipeline whose checkpoints to read.

    Raises:
        StateError: The server cannot be reached or refused the credentials. Every
            method raises it too when the database fails later.
    """

    def __init__(self, url: str, pipeline: str) -> None:
        self._database = PostgresDatabase(url)
        self.path = self._database.path
        self.pipeline = pipeline
        self._db = self._database.connect()
        try:
            with self._database.failing("read"):
                # A database no run wrote yet has no tables: nothing remembered.
                self._has_tables = schema_version(self._db) > 0
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> PostgresStateView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def summary(self) -> StateSummary:
        """Count the pipeline's checkpoints by outcome (one pass over them)."""
        counts = dict.fromkeys(CATEGORIES, 0)
        last: tuple[float, str] | None = None
        if self._has_tables:
            query = (
                f"SELECT {_CATEGORY} AS category, count(*), max(updated_at),"
                " (array_agg(run_id ORDER BY updated_at DESC))[1] FROM etl_records WHERE pipeline = %s GROUP BY category"
            )
            with self._database.failing("read"):
                rows = self._db.execute(query, (self.pipeline,)).fetchall()
            for category, count, updated_at, run_id in rows:
                counts[category] = count
                if last is None or updated_at > last[0]:
                    last = (updated_at, run_id)
        return StateSummary(counts, last[1] if last else None, last[0] if last else None)

    def records(self, *, outcome: str | None = None, limit: int | None = None) -> Iterator[StoredRecord]:
        """Yield the pipeline's checkpoints in key order, a page at a time.

        Args:
            outcome: Only those of this outcome (one of :data:`CATEGORIES`).
            limit: At most this many.
        """
        if not self._has_tables:
            return
        query = (
            f"SELECT key, {_CATEGORY}, status, attempts, error, line, run_id, updated_at FROM etl_records"
            " WHERE pipeline = %s AND key > %s" + (f" AND {_CATEGORY} = %s" if outcome else "") + " ORDER BY key LIMIT %s"
        )
        after, left = "", limit
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            parameters = [self.pipeline, after, *([outcome] if outcome else []), page]
            with self._database.failing("read"):
                rows = self._db.execute(query, parameters).fetchall()
            for row in rows:
                yield StoredRecord(*row)
            if len(rows) < page:
                return
            after = rows[-1][0]
            left = None if left is None else left - len(rows)

    def quotas(self) -> list[StoredQuota]:
        """The quota remembered for each destination (shared by the pipelines of the database)."""
        if not self._has_tables:
            return []
        with self._database.failing("read"):
            rows = self._db.execute("SELECT destination, rate, burst, run_id, updated_at FROM etl_quotas ORDER BY destination").fetchall()
        return [StoredQuota(*row) for row in rows]

    def other_pipelines(self) -> list[str]:
        """The other pipelines with checkpoints in the database."""
        if not self._has_tables:
            return []
        with self._database.failing("read"):
            rows = self._db.execute(
                "SELECT DISTINCT pipeline FROM etl_records WHERE pipeline != %s ORDER BY 1", (self.pipeline,)
            ).fetchall()
        return [name for (name,) in rows]
