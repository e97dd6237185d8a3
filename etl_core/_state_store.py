"""What the runner and ``etl state`` need of a state store, and opening the one a config names.

Two stores implement :class:`StateBackend`: the SQLite file (:class:`etl_core.state.StateStore`,
the embedded default) and PostgreSQL (:class:`etl_core._state_postgres.PostgresStateStore`,
``state.url``). Both pass one contract suite (``tests/core/test_state_contract.py``).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._quota_board import QuotaBoard
    from ._state_view import StateSummary, StoredQuota, StoredRecord
    from .state import Checkpoint, PreviousOutcome


class Lease(Protocol):
    """A run lease: one holder at a time; the holder's end, however it ends, releases it."""

    def release(self) -> None:
        """Give the lease up. Safe to call twice."""


class StateBackend(Protocol):
    """The checkpoints of one pipeline, the remembered quotas and the run lease.

    Opening a store connects, brings its schema up to date (unless read-only) and fails
    with :class:`~etl_core.state.StateError` before any record is read when it cannot.
    Every method raises ``StateError`` when the store fails later.

    Attributes:
        path: What to call the store in messages: the SQLite file, or the database's
            URL without its password.
        pipeline: The pipeline whose checkpoints these are.
        run_id: The current run, stored with each checkpoint and lease.
        has_history: The pipeline had checkpoints when the store was opened.
        recorded: Checkpoints queued by :meth:`record` so far.
        committed: Checkpoints committed so far (infinity once the writer failed).
        on_commit: Called from the writer thread after each commit.
    """

    path: str
    pipeline: str
    run_id: str
    has_history: bool
    recorded: int
    committed: float
    on_commit: Callable[[], None] | None

    @property
    def failed(self) -> bool:
        """True once the writer has failed (the error is raised by :meth:`close`)."""

    def lookup(self, keys: Sequence[str]) -> dict[str, PreviousOutcome]:
        """Return the stored outcome of each of ``keys`` that has one (skip unchanged, retry failed)."""

    def keys(self) -> Iterator[str]:
        """Yield every key of the pipeline that has a checkpoint, in key order."""

    def start(self) -> None:
        """Start the writer thread (before the first :meth:`record`)."""

    def record(self, checkpoint: Checkpoint) -> None:
        """Queue one checkpoint (never blocks); a later one of the same key replaces it."""

    def close(self) -> None:
        """Commit everything queued, stop the writer, close the store. Blocks."""

    def take_lease(self, name: str | None = None) -> Lease:
        """Take the run lease of the pipeline, or of its part ``name`` (e.g. a shard), or fail at once.

        Raises:
            RunLockedError: Another live process holds it (exit code 73).
        """

    def quota(self, destination: str) -> tuple[float, float] | None:
        """The quota (rate per second, burst) an earlier run measured for ``destination``."""

    def remember_quota(self, destination: str, rate: float, burst: float) -> None:
        """Keep the quota measured for ``destination`` for the next run (blocks: a small write)."""

    def forget(self) -> int:
        """Delete the pipeline's checkpoints; return how many there were."""

    def forget_keys(self, keys: Sequence[str]) -> list[str]:
        """Delete the checkpoints of ``keys``; return those that had one, in the order given, each once."""

    def forget_quotas(self) -> list[tuple[str, float, float]]:
        """Delete every remembered quota; return each (destination, rate, burst), by destination."""

    def quota_board(self) -> QuotaBoard:
        """Open the board on which shards share a destination's quota (a connection of its own)."""


class StateReader(Protocol):
    """A store read without writing to it (``etl state show`` and ``list``), as a context manager."""

    path: str

    def __enter__(self) -> StateReader: ...

    def __exit__(self, *exc: object) -> None: ...

    def summary(self) -> StateSummary:
        """Count the pipeline's checkpoints by outcome."""

    def records(self, *, outcome: str | None = None, limit: int | None = None) -> Iterator[StoredRecord]:
        """Yield the pipeline's checkpoints in key order, a few in memory at a time."""

    def quotas(self) -> list[StoredQuota]:
        """The quota remembered for each destination."""

    def other_pipelines(self) -> list[str]:
        """The other pipelines with checkpoints in the store."""


def open_state(url: str | None, path: str, pipeline: str, run_id: str, *, read_only: bool = False) -> StateBackend:
    """Open the state store: PostgreSQL at ``url`` when given, else the SQLite file ``path``.

    Raises:
        StateError: The store cannot be opened (or, unless ``read_only``, written).
    """
    if url is not None:
        from ._state_postgres import PostgresStateStore

        return PostgresStateStore(url, pipeline, run_id, read_only=read_only)
    from .state import StateStore

    return StateStore(path, pipeline, run_id, read_only=read_only)


def state_exists(url: str | None, path: str) -> bool:
    """Whether there may be state to read: always for a database (opening it tells), else the file's existence."""
    return url is not None or os.path.exists(path)


def open_state_reader(url: str | None, path: str, pipeline: str) -> StateReader:
    """Open the state read-only: PostgreSQL at ``url`` when given, else the SQLite file ``path`` (which exists).

    Raises:
        StateError: The store cannot be opened or read.
    """
    if url is not None:
        from ._state_postgres_view import PostgresStateView

        return PostgresStateView(url, pipeline)
    from ._state_view import StateView

    return StateView(path, pipeline)


def url_parts(url: str) -> tuple[str, str, str, str, str]:
    """Split a database URL into (scheme, user, password, host and path, query), tolerantly.

    The user part ends at the last ``@`` before the query, so that a password with a
    ``/`` or an ``@`` not percent-encoded (as an environment variable may hold it) is
    still taken whole, to be masked and left out of messages.
    """
    scheme, _, rest = url.partition("://")
    before_query, _, query = rest.partition("?")
    userinfo, at, location = before_query.rpartition("@")
    user, _, password = userinfo.partition(":") if at else ("", "", "")
    return scheme, user, urllib.parse.unquote(password), location, query


def shown_url(url: str) -> str:
    """``url`` without its password (in the user part or a ``password`` parameter), to name the database."""
    scheme, user, _, location, query = url_parts(url)
    kept = urllib.parse.urlencode([(k, v) for k, v in urllib.parse.parse_qsl(query) if k != "password"])
    return f"{scheme}://{f'{user}@' if user else ''}{location}{f'?{kept}' if kept else ''}"
