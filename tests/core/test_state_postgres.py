"""What only the PostgreSQL store does: connecting, naming the database without its password, group commits.

The contract both stores keep is in test_state_contract.py; these run against the test
session's real server too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from etl_core import Outcome
from etl_core._state_postgres import PostgresStateStore
from etl_core._state_postgres_view import PostgresStateView
from etl_core._state_store import shown_url
from etl_core._state_writer import WriteRows
from etl_core.state import Checkpoint, StateError
from tests.pgserver import ROLE_PASSWORD


def test_a_wrong_password_is_one_line_that_names_the_database_without_any_password(postgres):
    url = postgres.url(password="a-wrong-password-123")
    with pytest.raises(StateError) as refused:
        PostgresStateStore(url, "p", "run-1")
    message = str(refused.value)
    assert message.startswith(f"the state database postgresql://etl@127.0.0.1:{postgres.port}/etl cannot be opened: ")
    assert message.endswith('password authentication failed for user "etl"; check the user and the password in state.url')
    assert "\n" not in message and "a-wrong-password-123" not in message and ROLE_PASSWORD not in message


def test_an_unreachable_server_is_one_line_that_says_what_to_check(postgres):
    url = f"postgresql://etl:{ROLE_PASSWORD}@127.0.0.1:1/etl"
    with pytest.raises(StateError) as refused:
        PostgresStateStore(url, "p", "run-1")
    message = str(refused.value)
    assert message.startswith("the state database postgresql://etl@127.0.0.1:1/etl cannot be opened: ")
    assert message.endswith("; check the host and the port in state.url, and that the server runs")
    assert "\n" not in message and ROLE_PASSWORD not in message


def test_a_missing_database_says_to_create_it(postgres):
    with pytest.raises(StateError, match=r'database "missing" does not exist; check the names in state.url, or create the database$'):
        PostgresStateView(postgres.url("missing"), "p")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://etl:pw@db.example.com/etl", "postgresql://etl@db.example.com/etl"),
        ("postgresql://etl:p%40ss@db.example.com:6432/etl?sslmode=require", "postgresql://etl@db.example.com:6432/etl?sslmode=require"),
        ("postgresql://db.example.com/etl?user=etl&password=pw&sslmode=require", "postgresql://db.example.com/etl?user=etl&sslmode=require"),
        ("postgres://etl@db.example.com/etl", "postgres://etl@db.example.com/etl"),
        # a password put in by ${VAR} without percent-encoding is still left out whole
        ("postgresql://etl:p@ss/word-123@db.example.com/etl?sslmode=require", "postgresql://etl@db.example.com/etl?sslmode=require"),
    ],
)
def test_the_database_is_named_by_its_url_without_the_password(url, shown):
    assert shown_url(url) == shown


class _CountingStore(PostgresStateStore):
    """Counts the writer's transactions."""

    transactions = 0

    @contextlib.contextmanager
    def _writer_session(self) -> Iterator[WriteRows]:
        with super()._writer_session() as write:

            def counted(rows: list[tuple[Any, ...]]) -> None:
                self.transactions += 1
                write(rows)

            yield counted


def test_checkpoints_queued_together_are_committed_in_one_transaction(postgres_url):
    store = _CountingStore(postgres_url, "p", "run-1")
    for i in range(2000):
        store.record(Checkpoint(f"k{i}", "h", Outcome.OK, False, 200, 1, None, i))
    store.start()
    store.close()
    assert (store.written, store.transactions) == (2000, 1)


def test_the_view_lists_a_page_at_a_time_in_key_order(postgres_url, monkeypatch):
    from etl_core import _state_postgres_view

    monkeypatch.setattr(_state_postgres_view, "_PAGE", 7)
    store = PostgresStateStore(postgres_url, "p", "run-1")
    store.start()
    for i in range(30):
        failed = i % 3 == 0
        store.record(Checkpoint(f"k{i:02d}", "h", Outcome.FAILED if failed else Outcome.OK, failed and i % 2 == 0, 503 if failed else 200, 1, None, i))
    store.close()
    with PostgresStateView(postgres_url, "p") as view:
        assert [r.key for r in view.records()] == [f"k{i:02d}" for i in range(30)]
        assert [r.key for r in view.records(limit=10)] == [f"k{i:02d}" for i in range(10)]
        assert [r.key for r in view.records(outcome="retryable")] == [f"k{i:02d}" for i in range(0, 30, 6)]
        summary = view.summary()
        assert summary.counts == {"delivered": 20, "refused": 5, "retryable": 5}
        assert summary.last_run_id == "run-1"
        assert view.other_pipelines() == []
