"""The state-store contract: what the runner and ``etl state`` rely on, on SQLite and on PostgreSQL alike.

Every test runs on both stores: the SQLite file and a database of its own on the test
session's PostgreSQL server (``postgres_url``: a real server, started by ``tests/pgserver.py``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from etl_core import Outcome
from etl_core._errors import RunLockedError
from etl_core._state_store import StateBackend, open_state
from etl_core.state import SCHEMA_VERSION, Checkpoint, PreviousOutcome, StateError

OK, FAILED = Outcome.OK, Outcome.FAILED


def checkpoint(key: str, *, hash: str = "h", result: Outcome = OK, retryable: bool = False, status: int | None = 200) -> Checkpoint:
    return Checkpoint(key, hash, result, retryable, status, 1, None if result is OK else f"HTTP {status}", 2)


class Backend:
    """One kind of store under test, and what the tests do to it behind its back."""

    def __init__(self, kind: str, tmp_path: Path, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.path = str(tmp_path / "state.db")

    def open(self, pipeline: str = "p", run_id: str = "run-1", *, read_only: bool = False, start: bool = False) -> StateBackend:
        store = open_state(self.url, self.path, pipeline, run_id, read_only=read_only)
        if start:
            store.start()
        return store

    def sql(self, *statements: str) -> list[tuple[object, ...]]:
        """Run statements on the store's database directly; return the last one's rows."""
        rows: list[tuple[object, ...]] = []
        if self.url is None:
            with sqlite3.connect(self.path, isolation_level=None) as db:
                for statement in statements:
                    rows = db.execute(statement).fetchall()
        else:
            with psycopg.connect(self.url, autocommit=True) as db:
                for statement in statements:
                    cursor = db.execute(statement)  # type: ignore[call-overload]
                    rows = cursor.fetchall() if cursor.description else []
        return rows

    @property
    def prefix(self) -> str:
        """The prefix of the store's table names."""
        return "" if self.url is None else "etl_"

    def version(self) -> int:
        return int(self.sql(f"SELECT version FROM {self.prefix}schema_version")[0][0])  # type: ignore[call-overload]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return Backend(request.param, tmp_path, url)


def write(backend: Backend, *checkpoints: Checkpoint, pipeline: str = "p", run_id: str = "run-1") -> None:
    store = backend.open(pipeline, run_id, start=True)
    for item in checkpoints:
        store.record(item)
    store.close()


# -- checkpoints -------------------------------------------------------------------------


def test_a_new_store_has_no_history(backend):
    store = backend.open()
    try:
        assert store.has_history is False
        assert store.lookup(["a", "b"]) == {}
        assert list(store.keys()) == []
        assert store.quota("PATCH https://api.example.com") is None
    finally:
        store.close()


def test_checkpoints_are_found_by_the_next_run(backend):
    write(
        backend,
        checkpoint("a", hash="ha"),
        checkpoint("b", hash="hb", result=FAILED, retryable=True, status=503),
        checkpoint("c", hash="hc", result=FAILED, retryable=False, status=404),
    )
    store = backend.open(run_id="run-2")
    try:
        assert store.has_history is True
        assert store.lookup(["a", "b", "c", "unknown"]) == {
            "a": PreviousOutcome("ha", OK, False, 200, None),  # skipped while unchanged
            "b": PreviousOutcome("hb", FAILED, True, 503, "HTTP 503"),  # sent again
            "c": PreviousOutcome("hc", FAILED, False, 404, "HTTP 404"),  # refused for good
        }
        assert list(store.keys()) == ["a", "b", "c"]
    finally:
        store.close()


def test_a_retried_record_s_new_outcome_replaces_the_old_one(backend):
    write(backend, checkpoint("a", hash="h1", result=FAILED, retryable=True, status=503))
    write(backend, checkpoint("a", hash="h2"), run_id="run-2")
    store = backend.open(run_id="run-3")
    try:
        assert store.lookup(["a"]) == {"a": PreviousOutcome("h2", OK, False, 200, None)}
    finally:
        store.close()


def test_a_duplicate_key_s_last_checkpoint_wins_even_in_one_commit(backend):
    store = backend.open()
    for version in range(5):  # queued before the writer starts: one group, one transaction
        store.record(checkpoint("dup", hash=f"h{version}"))
    store.start()
    store.close()
    again = backend.open(run_id="run-2")
    try:
        assert again.lookup(["dup"])["dup"].hash == "h4"
    finally:
        again.close()


def test_pipelines_sharing_a_store_keep_their_own_checkpoints(backend):
    write(backend, checkpoint("a", hash="mine"), pipeline="one")
    write(backend, checkpoint("a", hash="theirs"), pipeline="two")
    store = backend.open("one", "run-2")
    try:
        assert store.lookup(["a"])["a"].hash == "mine"
        assert store.forget() == 1
    finally:
        store.close()
    other = backend.open("two", "run-3")
    try:
        assert other.has_history and other.lookup(["a"])["a"].hash == "theirs"
    finally:
        other.close()


def test_every_checkpoint_is_committed_and_counted(backend):
    store = backend.open(start=True)
    for i in range(3000):
        store.record(checkpoint(f"k{i:05d}"))
    assert store.recorded == 3000
    store.close()
    assert store.committed == 3000 and not store.failed
    again = backend.open(run_id="run-2")
    try:
        keys = [f"k{i:05d}" for i in range(3000)]
        assert len(again.lookup(keys)) == 3000
        assert list(again.keys()) == keys
    finally:
        again.close()


def test_reasons_are_stored_with_secrets_masked(backend):
    from etl_core.logging import register_secret

    register_secret("s3cret-token-for-contract")
    write(backend, Checkpoint("a", "h", FAILED, False, 401, 1, "HTTP 401: bad token s3cret-token-for-contract", 2))
    assert backend.sql(f"SELECT error FROM {backend.prefix}records") == [("HTTP 401: bad token ***",)]


# -- forgetting --------------------------------------------------------------------------


def test_forget_keys_reports_those_that_had_a_checkpoint_in_order_and_once(backend):
    write(backend, checkpoint("a"), checkpoint("b"), checkpoint("c"))
    store = backend.open(run_id="run-2")
    try:
        assert store.forget_keys(["c", "x", "a", "c"]) == ["c", "a"]
        assert list(store.lookup(["a", "b", "c"])) == ["b"]
        assert store.forget() == 1
        assert store.has_history is False
    finally:
        store.close()


def test_the_remembered_quota_is_kept_per_destination_until_forgotten(backend):
    store = backend.open()
    store.remember_quota("PATCH https://b.example.com", 25.5, 3.0)
    store.remember_quota("PATCH https://a.example.com", 10.0, 1.0)
    store.remember_quota("PATCH https://a.example.com", 12.0, 2.0)  # a later run's measurement wins
    store.close()
    again = backend.open("another-pipeline", "run-2")  # the quota belongs to the destination
    try:
        assert again.quota("PATCH https://a.example.com") == (12.0, 2.0)
        assert again.forget_quotas() == [("PATCH https://a.example.com", 12.0, 2.0), ("PATCH https://b.example.com", 25.5, 3.0)]
        assert again.quota("PATCH https://a.example.com") is None
        assert again.forget_quotas() == []
    finally:
        again.close()


# -- the run lease -----------------------------------------------------------------------


def test_the_lease_has_one_holder_at_a_time(backend):
    first = backend.open(run_id="run-holding")
    second = backend.open(run_id="run-refused")
    try:
        lease = first.take_lease()
        with pytest.raises(RunLockedError) as refused:
            second.take_lease()
        message = str(refused.value)
        assert message.startswith(f"another run is using the state of p in {first.path} (process {os.getpid()} on ")
        assert "run run-holding, started " in message
        other_pipeline = backend.open("q", "run-q")
        other_pipeline.take_lease().release()  # another pipeline's lease is its own
        other_pipeline.close()
        lease.release()
        lease.release()  # twice is harmless
        second.take_lease().release()
    finally:
        first.close()
        second.close()


def test_parts_of_a_pipeline_share_its_lease_and_hold_their_own(backend):
    stores = [backend.open(run_id=f"run-{i}") for i in range(3)]
    try:
        shard_0, shard_1 = stores[0].take_lease("shard-0-of-2"), stores[1].take_lease("shard-1-of-2")
        with pytest.raises(RunLockedError, match="the state of p.shard-0-of-2 in "):
            stores[2].take_lease("shard-0-of-2")
        with pytest.raises(RunLockedError, match="the state of p in "):
            stores[2].take_lease()  # a run of every record waits for the shards
        shard_0.release()
        shard_1.release()
        whole = stores[2].take_lease()
        with pytest.raises(RunLockedError):
            stores[0].take_lease("shard-0-of-2")  # and the shards for it
        whole.release()
    finally:
        for store in stores:
            store.close()


def test_a_lease_name_that_is_not_a_plain_word_is_a_bug(backend):
    store = backend.open()
    try:
        with pytest.raises(ValueError, match="a lease name holds only"):
            store.take_lease("../../etc/x")
    finally:
        store.close()


_HOLD_LEASE = """
import sys
from etl_core._state_store import open_state
store = open_state(sys.argv[1] or None, sys.argv[2], "p", "run-killed")
lease = store.take_lease()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lease_left_by_a_killed_process_is_free_again(backend):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LEASE, backend.url or "", backend.path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        store = backend.open(run_id="run-after")
        with pytest.raises(RunLockedError, match="run run-killed"):
            store.take_lease()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        # The server notices the dead connection on its own schedule: poll (the kernel frees an flock at once).
        lease = _eventually(store.take_lease)
        lease.release()
        store.close()
    finally:
        holder.kill()
        holder.wait()


def _eventually(take: Callable[[], object], timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return take()
        except RunLockedError:
            if time.monotonic() > deadline:
                raise


# -- a kill mid-write --------------------------------------------------------------------

_WRITE_FOREVER = """
import sys, threading
from etl_core import Outcome
from etl_core._state_store import open_state
from etl_core.state import Checkpoint
store = open_state(sys.argv[1] or None, sys.argv[2], "p", "run-killed")
committed = threading.Event()
store.on_commit = committed.set
store.start()
i = 0
while True:
    for _ in range(50):
        store.record(Checkpoint(f"k{i:07d}", "h", Outcome.OK, False, 200, 1, None, i))
        i += 1
    committed.wait()
    committed.clear()
    print(int(store.committed), flush=True)  # every checkpoint up to this count is committed
"""


def test_what_was_committed_before_a_kill_9_is_there_after_it(backend):
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITE_FOREVER, backend.url or "", backend.path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        committed = 0
        while committed < 2000:
            line = writer.stdout.readline()
            assert line, "the writer ended"
            committed = int(line)
        writer.send_signal(signal.SIGKILL)  # mid-write: it keeps recording and committing
        writer.wait()
    finally:
        writer.kill()
        writer.wait()
    store = backend.open(run_id="run-after")
    try:
        keys = [f"k{i:07d}" for i in range(committed)]
        assert len(store.lookup(keys)) == committed
        store.take_lease().release()  # and the dead writer holds nothing
    finally:
        store.close()


# -- the schema --------------------------------------------------------------------------

#: The layout written before the schema had a version (version 1), with one checkpoint and one quota.
_VERSION_1 = {
    "sqlite": (
        "CREATE TABLE records (pipeline TEXT NOT NULL, key TEXT NOT NULL, hash TEXT NOT NULL, outcome TEXT NOT NULL,"
        " retryable INTEGER NOT NULL, status INTEGER, attempts INTEGER NOT NULL, error TEXT, line INTEGER,"
        " run_id TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (pipeline, key)) WITHOUT ROWID",
        "CREATE TABLE quotas (destination TEXT PRIMARY KEY, rate REAL NOT NULL, burst REAL NOT NULL,"
        " run_id TEXT NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID",
        "INSERT INTO records VALUES ('p', 'a', 'ha', 'ok', 0, 200, 1, NULL, 2, 'old-run', 1.0)",
        "INSERT INTO quotas VALUES ('PATCH https://api.example.com', 20.0, 2.0, 'old-run', 1.0)",
    ),
    "postgres": (
        "CREATE TABLE etl_records (pipeline text NOT NULL, key text NOT NULL, hash text NOT NULL, outcome text NOT NULL,"
        " retryable boolean NOT NULL, status integer, attempts integer NOT NULL, error text, line bigint,"
        " run_id text NOT NULL, updated_at double precision NOT NULL, PRIMARY KEY (pipeline, key))",
        "CREATE TABLE etl_quotas (destination text PRIMARY KEY, rate double precision NOT NULL,"
        " burst double precision NOT NULL, run_id text NOT NULL, updated_at double precision NOT NULL)",
        "INSERT INTO etl_records VALUES ('p', 'a', 'ha', 'ok', false, 200, 1, NULL, 2, 'old-run', 1.0)",
        "INSERT INTO etl_quotas VALUES ('PATCH https://api.example.com', 20.0, 2.0, 'old-run', 1.0)",
    ),
}


def test_a_store_of_an_older_schema_is_migrated_on_open_and_keeps_its_data(backend):
    backend.sql(*_VERSION_1[backend.kind])
    reader = backend.open(read_only=True)  # a dry run reads it as it is, changing nothing
    try:
        assert reader.lookup(["a"])["a"].hash == "ha"
    finally:
        reader.close()
    assert backend.sql(f"SELECT count(*) FROM {backend.prefix}records") == [(1,)]
    with pytest.raises((sqlite3.Error, psycopg.Error)):
        backend.version()  # not migrated by the read-only open

    store = backend.open(run_id="run-2")
    try:
        assert backend.version() == SCHEMA_VERSION
        assert store.has_history and store.lookup(["a"]) == {"a": PreviousOutcome("ha", OK, False, 200, None)}
        assert store.quota("PATCH https://api.example.com") == (20.0, 2.0)
        store.take_lease().release()
    finally:
        store.close()
    backend.open(run_id="run-3").close()  # opening an up-to-date store again changes nothing
    assert backend.version() == SCHEMA_VERSION


def test_a_store_of_a_newer_schema_is_refused(backend):
    backend.open().close()
    backend.sql(f"UPDATE {backend.prefix}schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateError) as refused:
        backend.open(run_id="run-2")
    assert str(refused.value) == (
        f"the state {'file' if backend.url is None else 'database'} {_shown(backend)} has schema "
        f"version {SCHEMA_VERSION + 1}, written by a newer etl (this one knows versions up to {SCHEMA_VERSION}): "
        "upgrade etl, or use another state"
    )


def _shown(backend: Backend) -> str:
    from etl_core._state_store import shown_url

    return backend.path if backend.url is None else shown_url(backend.url)


def test_a_read_only_store_creates_nothing(backend):
    if backend.url is None:
        sqlite3.connect(backend.path).close()  # a dry run reads only a file that exists
    store = backend.open(read_only=True)
    try:
        assert store.has_history is False and store.lookup(["a"]) == {}
    finally:
        store.close()
    tables = (
        backend.sql("SELECT name FROM sqlite_master")
        if backend.url is None
        else backend.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    )
    assert tables == []


def test_the_writer_s_failure_is_a_state_error_from_close(backend):
    store = backend.open(start=True)
    store.record(Checkpoint("a", "h", OK, False, 200, 1, textwrap, 2))  # type: ignore[arg-type]  # not storable
    with pytest.raises(StateError) as failed:
        store.close()
    assert str(failed.value).startswith(f"the state {'file' if backend.url is None else 'database'} {store.path} cannot be written: ")
    assert store.failed and store.committed == float("inf")
