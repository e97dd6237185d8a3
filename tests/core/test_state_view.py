"""StateView: the checkpoint store read without writing to it."""

from __future__ import annotations

import hashlib
import sqlite3
import types
from pathlib import Path

import pytest

from etl_core import Outcome
from etl_core._state_view import StateView
from etl_core.state import Checkpoint, StateError, StateStore


def checkpoint(key: str, outcome: Outcome = Outcome.OK, *, retryable: bool = False, status: int | None = 200) -> Checkpoint:
    reason = None if outcome is Outcome.OK else f"HTTP {status}: refused"
    return Checkpoint(key, "hash", outcome, retryable, status, 1 if outcome is Outcome.OK else 3, reason, 2)


def write_state(path: Path, checkpoints: list[Checkpoint], *, pipeline: str = "p", run_id: str = "run-1") -> None:
    store = StateStore(str(path), pipeline, run_id)
    store.start()
    for one in checkpoints:
        store.record(one)
    store.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    write_state(path, [checkpoint("a"), checkpoint("b"), checkpoint("c", Outcome.FAILED, status=404)], run_id="run-1")
    write_state(path, [checkpoint("d", Outcome.FAILED, retryable=True, status=503), checkpoint("b")], run_id="run-2")
    write_state(path, [checkpoint("x")], pipeline="other")
    return path


def test_summary_counts_the_pipeline_s_checkpoints_by_what_a_rerun_does(state):
    with StateView(str(state), "p") as view:
        summary = view.summary()
    assert summary.counts == {"delivered": 2, "refused": 1, "retryable": 1}
    assert summary.total == 4
    assert summary.last_run_id == "run-2" and summary.last_change is not None


def test_records_stream_in_key_order_with_their_outcome(state):
    with StateView(str(state), "p") as view:
        records = view.records()
        assert isinstance(records, types.GeneratorType)
        listed = [(r.key, r.outcome, r.status, r.attempts, r.run_id) for r in records]
        assert listed == [
            ("a", "delivered", 200, 1, "run-1"),
            ("b", "delivered", 200, 1, "run-2"),
            ("c", "refused", 404, 3, "run-1"),
            ("d", "retryable", 503, 3, "run-2"),
        ]
        assert [r.key for r in view.records(outcome="refused")] == ["c"]
        assert [r.reason for r in view.records(outcome="retryable")] == ["HTTP 503: refused"]
        assert [r.key for r in view.records(limit=2)] == ["a", "b"]
        assert [r.key for r in view.records(outcome="delivered", limit=1)] == ["a"]


def test_many_records_are_read_a_chunk_at_a_time(tmp_path):
    path = tmp_path / "state.db"
    keys = [f"k{i:05d}" for i in range(2500)]
    write_state(path, [checkpoint(key) for key in reversed(keys)])
    with StateView(str(path), "p") as view:
        assert [r.key for r in view.records()] == keys
        assert view.summary().counts["delivered"] == 2500


def test_other_pipelines_and_quotas(state):
    store = StateStore(str(state), "p", "run-3")
    store.remember_quota("dest-b", 4.0, 2.0)
    store.remember_quota("dest-a", 10.5, 20.0)
    store.close()
    with StateView(str(state), "renamed") as view:
        assert view.summary().total == 0
        assert view.other_pipelines() == ["other", "p"]
        assert [(q.destination, q.rate, q.burst, q.run_id) for q in view.quotas()] == [
            ("dest-a", 10.5, 20.0, "run-3"),
            ("dest-b", 4.0, 2.0, "run-3"),
        ]


def test_reading_changes_nothing_even_beside_an_open_store(state):
    before = digest(state)
    writer = StateStore(str(state), "p", "run-4")  # a run has the file open
    try:
        with StateView(str(state), "p") as view:
            view.summary()
            list(view.records())
            view.quotas()
    finally:
        writer.close()
    assert digest(state) == before


def test_a_missing_file_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "state.db"
    with pytest.raises(StateError, match=rf"^the state file {path} cannot be read: unable to open database file"):
        StateView(str(path), "p")
    assert not path.exists()


def test_a_file_that_is_not_a_database_is_an_error_naming_it(tmp_path):
    path = tmp_path / "state.db"
    path.write_text("not a database, just text " * 100, encoding="utf-8")
    with pytest.raises(StateError) as caught:
        StateView(str(path), "p")
    assert str(caught.value).startswith(f"the state file {path} cannot be read: file is not a database; it is damaged or not a state file")


def test_an_empty_database_has_nothing_remembered(tmp_path):
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()
    with StateView(str(path), "p") as view:
        assert view.summary().total == 0
        assert list(view.records()) == [] and view.quotas() == [] and view.other_pipelines() == []
