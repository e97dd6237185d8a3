"""The checkpoint store (StateStore), duplicate detection (SeenKeys) and content_hash."""

from __future__ import annotations

import datetime
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from etl_core import Outcome, state
from etl_core.logging import register_secret
from etl_core.state import Checkpoint, PreviousOutcome, SeenKeys, StateError, StateStore, content_hash

OK, FAILED = Outcome.OK, Outcome.FAILED


def outcome(key: str, *, hash: str = "h", result: Outcome = OK, retryable: bool = False, status: int | None = 200, line: int = 2) -> Checkpoint:
    error = None if result == OK else "HTTP 404: contact not found"
    return Checkpoint(key, hash, result, retryable, status, 1, error, line)


def open_store(path: Path, pipeline: str = "p", run_id: str = "run-1", *, start: bool = True) -> StateStore:
    store = StateStore(str(path), pipeline, run_id)
    if start:
        store.start()
    return store


# -- StateStore ------------------------------------------------------------------------


def test_new_store_creates_its_directory_and_has_no_history(tmp_path):
    path = tmp_path / "deep" / "er" / "state.db"
    store = open_store(path)
    try:
        assert path.exists()
        assert store.has_history is False
        assert store.lookup(["a", "b"]) == {}
    finally:
        store.close()


def test_recorded_outcomes_are_found_by_the_next_run(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path)
    store.record(outcome("a", hash="ha", status=200, line=2))
    store.record(outcome("b", hash="hb", result=FAILED, retryable=True, status=503, line=3))
    store.record(outcome("c", hash="hc", result=FAILED, retryable=False, status=404, line=4))
    store.close()
    assert store.written == 3

    again = open_store(path, run_id="run-2", start=False)
    try:
        assert again.has_history is True
        found = again.lookup(["a", "b", "c", "unknown"])
        assert found == {
            "a": PreviousOutcome("ha", OK, False, 200, None),
            "b": PreviousOutcome("hb", FAILED, True, 503, "HTTP 404: contact not found"),
            "c": PreviousOutcome("hc", FAILED, False, 404, "HTTP 404: contact not found"),
        }
        assert again.lookup([]) == {}
    finally:
        again.close()


def test_the_writer_copies_its_log_into_the_file_as_it_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "_CHECKPOINT_ROWS", 5)
    path = tmp_path / "state.db"
    store = open_store(path, start=False)
    committed = threading.Semaphore(0)
    store.on_commit = committed.release
    store.start()
    try:
        # 300 commits of one row each: without a checkpoint every 5 rows the log would
        # hold at least a page (4 KiB) per commit.
        for i in range(300):
            store.record(outcome(f"k{i:03}", line=i + 2))
            assert committed.acquire(timeout=30)
        assert (tmp_path / "state.db-wal").stat().st_size < 100 * 4096
    finally:
        store.close()
    again = open_store(path, start=False)
    try:
        assert len(again.lookup([f"k{i:03}" for i in range(300)])) == 300
    finally:
        again.close()


def test_the_latest_outcome_of_a_key_wins(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path)
    store.record(outcome("a", hash="old", result=FAILED, retryable=True, status=500))
    store.record(outcome("a", hash="new", status=200))
    store.close()
    store = open_store(path, run_id="run-2")
    store.record(outcome("b", hash="hb"))
    store.close()

    again = open_store(path, start=False)
    try:
        assert again.lookup(["a", "b"]) == {"a": PreviousOutcome("new", OK, False, 200, None), "b": PreviousOutcome("hb", OK, False, 200, None)}
        rows = sqlite3.connect(path).execute("SELECT key, run_id, line, attempts FROM records ORDER BY key").fetchall()
        assert rows == [("a", "run-1", 2, 1), ("b", "run-2", 2, 1)]
    finally:
        again.close()


def test_one_group_larger_than_one_statement_keeps_the_latest_outcome_of_a_key(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path, start=False)
    # Queued before the writer starts: it takes all 1,200 as one group, written as
    # statements of at most 500 rows; "a" comes again in the third.
    store.record(outcome("a", hash="first", result=FAILED, retryable=True, status=503))
    for i in range(1, 1_100):
        store.record(outcome(f"k{i}", hash=f"h{i}"))
    store.record(outcome("a", hash="latest", status=200))
    for i in range(1_100, 1_199):
        store.record(outcome(f"k{i}", hash=f"h{i}"))
    store.start()
    store.close()
    assert store.written == 1_200
    again = open_store(path, start=False)
    try:
        found = again.lookup(["a", "k1", "k499", "k500", "k1198"])
        assert found["a"] == PreviousOutcome("latest", OK, False, 200, None)
        assert [found[key].hash for key in ("k1", "k499", "k500", "k1198")] == ["h1", "h499", "h500", "h1198"]
    finally:
        again.close()


def test_close_commits_everything_queued(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path)
    for i in range(20_000):
        store.record(outcome(f"k{i}", hash=f"h{i}", line=i + 2))
    store.close()  # right away: nothing queued may be lost
    assert store.written == 20_000
    count = sqlite3.connect(path).execute("SELECT COUNT(*) FROM records").fetchone()[0]
    assert count == 20_000


def test_outcomes_are_committed_while_the_run_goes_on(tmp_path):
    """The writer commits as it goes: another connection sees outcomes before close()."""
    path = tmp_path / "state.db"
    store = open_store(path)
    try:
        for i in range(100):
            store.record(outcome(f"k{i}"))
        reader = sqlite3.connect(path)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
        while reader.execute("SELECT COUNT(*) FROM records").fetchone()[0] < 100:
            assert datetime.datetime.now() < deadline, "outcomes were not committed before close()"
        reader.close()
    finally:
        store.close()


def test_lookup_of_more_keys_than_one_query_holds(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path)
    for i in range(0, 3_000, 2):  # every even key
        store.record(outcome(f"k{i}", hash=f"h{i}"))
    store.close()
    again = open_store(path, start=False)
    try:
        found = again.lookup([f"k{i}" for i in range(3_000)])
        assert len(found) == 1_500
        assert found["k2998"].hash == "h2998" and "k2999" not in found
    finally:
        again.close()


def test_pipelines_sharing_a_file_are_kept_apart(tmp_path):
    path = tmp_path / "state.db"
    one = open_store(path, "one")
    one.record(outcome("a", hash="from-one"))
    one.close()
    two = open_store(path, "two")
    try:
        assert two.has_history is False
        assert two.lookup(["a"]) == {}
        two.record(outcome("a", hash="from-two"))
    finally:
        two.close()
    for name, expected in (("one", "from-one"), ("two", "from-two")):
        store = open_store(path, name, start=False)
        try:
            assert store.has_history is True
            assert store.lookup(["a"])["a"].hash == expected
        finally:
            store.close()


def test_forget_deletes_only_this_pipeline(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path, "p")
    for key in "abc":
        store.record(outcome(key))
    store.close()
    other = open_store(path, "other")
    other.record(outcome("a"))
    other.close()

    again = open_store(path, "p", start=False)
    try:
        assert again.has_history is True
        assert again.forget() == 3
        assert again.has_history is False
        assert again.lookup(["a", "b", "c"]) == {}
    finally:
        again.close()
    assert open_store(path, "p", start=False).has_history is False
    survivor = open_store(path, "other", start=False)
    try:
        assert survivor.has_history is True and set(survivor.lookup(["a"])) == {"a"}
    finally:
        survivor.close()


def test_forget_then_record_in_the_same_run(tmp_path):
    """--fresh: forget the old outcomes, then record the new ones."""
    path = tmp_path / "state.db"
    store = open_store(path)
    store.record(outcome("a", hash="old"))
    store.close()
    fresh = open_store(path, run_id="run-2", start=False)
    assert fresh.forget() == 1
    fresh.start()
    fresh.record(outcome("b", hash="new"))
    fresh.close()
    again = open_store(path, start=False)
    try:
        assert again.lookup(["a", "b"]) == {"b": PreviousOutcome("new", OK, False, 200, None)}
    finally:
        again.close()


def test_close_without_start_and_close_of_an_unused_store(tmp_path):
    store = open_store(tmp_path / "state.db", start=False)
    store.close()
    store = open_store(tmp_path / "state.db")
    store.close()
    assert store.written == 0


def test_a_writer_error_is_raised_by_close(tmp_path):
    store = open_store(tmp_path / "state.db")
    store.record(Checkpoint("a", "h", OK, False, 200, 1, object(), 2))  # type: ignore[arg-type]  # not storable
    wait_for_writer(store)  # the error happens before close() is called
    store.record(outcome("b"))  # queued after the failure: must not block close()
    assert_close_raises_in_time(store)


class _SlowStartStore(StateStore):
    """The writer thread connects only once ``waiting`` items are queued."""

    waiting = 2

    def _connect(self) -> sqlite3.Connection:
        if threading.current_thread().name == "etl-state-writer":
            deadline = time.monotonic() + 30
            while self._queue.qsize() < self.waiting and time.monotonic() < deadline:
                time.sleep(0.001)
        return super()._connect()


def test_a_writer_error_in_the_last_batch_does_not_hang_close(tmp_path):
    store = _SlowStartStore(str(tmp_path / "state.db"), "p", "run-1")
    store.start()
    store.record(Checkpoint("a", "h", OK, False, 200, 1, object(), 2))  # type: ignore[arg-type]  # not storable
    # close() queues its stop marker; the writer then takes [bad outcome, stop] as one batch.
    assert_close_raises_in_time(store)


def wait_for_writer(store: StateStore) -> None:
    deadline = time.monotonic() + 30
    while store._queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.001)


def assert_close_raises_in_time(store: StateStore) -> None:
    raised: list[BaseException] = []

    def close() -> None:
        try:
            store.close()
        except BaseException as exc:
            raised.append(exc)

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    closer.join(timeout=5)
    assert not closer.is_alive(), "close() hangs after a writer error"
    assert len(raised) == 1 and isinstance(raised[0], StateError), raised
    assert str(raised[0]).startswith(f"the state file {store.path} cannot be written: "), raised


def test_a_file_that_is_not_a_database_is_a_state_error_naming_it(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError) as caught:
        StateStore(str(path), "p", "run-1")
    assert str(caught.value) == (
        f"the state file {path} cannot be opened: file is not a database; it is damaged or not a state file: "
        "move it away to start afresh (every record is then sent again)"
    )


def test_the_file_uses_write_ahead_logging(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path)
    store.record(outcome("a"))
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- SeenKeys --------------------------------------------------------------------------


def test_seen_keys_duplicates_within_one_batch():
    seen = SeenKeys()
    try:
        assert seen.add([("a", 2), ("b", 3), ("a", 4), ("c", 5), ("a", 6), ("b", 7)]) == {4: 2, 6: 2, 7: 3}
    finally:
        seen.close()


def test_seen_keys_duplicates_across_batches():
    seen = SeenKeys()
    try:
        assert seen.add([("a", 2), ("b", 3)]) == {}
        assert seen.add([("c", 4), ("b", 5)]) == {5: 3}
        # A key seen in an earlier batch and twice in this one: both point at the first line.
        assert seen.add([("a", 6), ("d", 7), ("a", 8), ("d", 9)]) == {6: 2, 8: 2, 9: 7}
        assert seen.add([]) == {}
        assert seen.add([("e", 10)]) == {}
    finally:
        seen.close()


def test_seen_keys_with_batches_larger_than_one_query():
    seen = SeenKeys()
    try:
        assert seen.add([(f"k{i}", i + 2) for i in range(1_200)]) == {}
        again = seen.add([(f"k{i}", 5_000 + i) for i in range(0, 2_400, 2)])
        # k0..k1198 (even) were seen; k1200.. are new.
        assert again == {5_000 + i: i + 2 for i in range(0, 1_200, 2)}
    finally:
        seen.close()


class _CollidingSeenKeys(SeenKeys):
    """Every key has the same hash: each is told apart by its bytes alone."""

    _hash = staticmethod(lambda key: 0x1234_5678_0000_0000)


def test_seen_keys_tell_apart_keys_whose_hashes_collide():
    seen = _CollidingSeenKeys()
    try:
        assert seen.add([("a", 2), ("b", 3), ("ab", 4), ("Zoë", 5), ("a", 6)]) == {6: 2}
        assert seen.add([("ab", 7), ("b", 8), ("abc", 9), ("Zoë", 10), ("Zoe", 11)]) == {7: 4, 8: 3, 10: 5}
    finally:
        seen.close()


class _SmallSeenKeys(SeenKeys):
    """A table that stops growing at once: most keys go to the overflow database."""

    _MAX_BITS = 16


@pytest.mark.parametrize("seen_keys", [SeenKeys, _SmallSeenKeys])
def test_seen_keys_match_a_dictionary_as_the_table_grows(seen_keys):
    # 300,000 keys, a third of them repeats (200,003 distinct): the table grows several
    # times, or fills up and sends the keys past 45,875 to the overflow database.
    keys = [f"key-{i * 7919 % 200_003}-é" for i in range(300_000)]
    first: dict[str, int] = {}
    expected = {}
    for line, key in enumerate(keys, start=2):
        if key in first:
            expected[line] = first[key]
        else:
            first[key] = line
    seen = seen_keys()
    found: dict[int, int] = {}
    try:
        for start in range(0, len(keys), 1_000):
            found.update(seen.add([(key, line) for line, key in enumerate(keys[start : start + 1_000], start=start + 2)]))
    finally:
        seen.close()
    assert found == expected and len(found) == 300_000 - 200_003


def test_seen_keys_instances_are_independent():
    one, two = SeenKeys(), SeenKeys()
    try:
        one.add([("a", 2)])
        assert two.add([("a", 9)]) == {}
    finally:
        one.close()
        two.close()


# -- content_hash ----------------------------------------------------------------------


def test_content_hash_is_stable_and_ignores_field_order():
    a = {"contactId": "1", "email": "a@b.co", "firstName": "Ann"}
    b = {"firstName": "Ann", "email": "a@b.co", "contactId": "1"}
    assert content_hash(a) == content_hash(dict(a)) == content_hash(b)
    assert len(content_hash(a)) == 32 and int(content_hash(a), 16) >= 0


def test_content_hash_ignores_order_in_nested_mappings():
    assert content_hash({"x": {"a": 1, "b": 2}}) == content_hash({"x": {"b": 2, "a": 1}})


@pytest.mark.parametrize(
    "other",
    [
        {"contactId": "1", "email": "b@b.co"},  # a changed value
        {"contactId": "1", "email": "a@b.co", "city": "Oslo"},  # an added field
        {"contactId": "1"},  # a removed field
        {"contactId": 1, "email": "a@b.co"},  # another type
        {"contactId": "1", "email": None},
        {"contactId": "1", "email": ""},
        {"contactid": "1", "email": "a@b.co"},  # another name
    ],
)
def test_content_hash_changes_with_the_content(other):
    assert content_hash({"contactId": "1", "email": "a@b.co"}) != content_hash(other)


def test_content_hash_of_values_json_does_not_know():
    when = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    assert content_hash({"at": when}) == content_hash({"at": when})
    assert content_hash({"at": when}) != content_hash({"at": when + datetime.timedelta(seconds=1)})
    assert content_hash({"name": "Zoë 日本"}) == content_hash({"name": "Zoë 日本"})


def test_content_hash_is_the_same_in_another_process():
    data = {"b": "2", "a": "Zoë", "c": [1, 2]}
    code = "from etl_core.state import content_hash; print(content_hash({'a': 'Zoë', 'c': [1, 2], 'b': '2'}))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == content_hash(data)


# -- a broken file ----------------------------------------------------------------------


def test_a_symbolic_link_is_refused_and_its_target_left_alone(tmp_path):
    victim = tmp_path / "victim"
    victim.touch()  # SQLite would make a database of an empty file
    (tmp_path / "state.db").symlink_to(victim)
    with pytest.raises(StateError) as caught:
        StateStore(str(tmp_path / "state.db"), "p", "run-1")
    assert str(caught.value) == (
        f"the state file {tmp_path / 'state.db'} is a symbolic link, which is never written through: name the file itself"
    )
    assert victim.stat().st_size == 0


def test_a_damaged_page_met_by_a_lookup_is_a_state_error_naming_the_file(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path)
    keys = [f"key-{i:05d}" for i in range(2000)]
    for key in keys:
        store.record(outcome(key))
    store.close()
    data = bytearray(path.read_bytes())
    half = len(data) // 4096 // 2 * 4096
    data[half:] = b"\xa5" * (len(data) - half)  # the header and the schema stay readable
    path.write_bytes(bytes(data))
    again = open_store(path, run_id="run-2", start=False)
    try:
        with pytest.raises(StateError) as caught:
            again.lookup(keys)
    finally:
        again.close()
    assert str(caught.value).startswith(f"the state file {path} cannot be read: database disk image is malformed; ")


def test_reasons_are_kept_with_registered_secrets_masked(tmp_path):
    register_secret("state-secret-2b7c9e")
    store = open_store(tmp_path / "state.db")
    store.record(Checkpoint("a", "h", FAILED, False, 400, 1, "HTTP 400: validation failed: state-secret-2b7c9e", 2))
    store.close()
    again = open_store(tmp_path / "state.db", start=False)
    try:
        assert again.lookup(["a"])["a"].error == "HTTP 400: validation failed: ***"
    finally:
        again.close()



def test_forget_keys_deletes_only_those_checkpoints_of_its_pipeline(tmp_path):
    path = tmp_path / "state.db"
    store = open_store(path)
    for key in ("a", "b", "c"):
        store.record(outcome(key))
    store.close()
    other = open_store(path, pipeline="q")
    other.record(outcome("a"))
    other.close()

    again = open_store(path, run_id="run-2", start=False)
    try:
        assert again.forget_keys(["b", "missing", "b", "a"]) == ["b", "a"]
        assert set(again.lookup(["a", "b", "c"])) == {"c"}
    finally:
        again.close()
    other = open_store(path, pipeline="q", start=False)
    try:
        assert set(other.lookup(["a"])) == {"a"}
    finally:
        other.close()


def test_forget_quotas_deletes_every_destination_s_and_says_which(tmp_path):
    store = open_store(tmp_path / "state.db", start=False)
    try:
        store.remember_quota("dest-b", 12.5, 20)
        store.remember_quota("dest-a", 3.0, 1)
        assert store.forget_quotas() == [("dest-a", 3.0, 1.0), ("dest-b", 12.5, 20.0)]
        assert store.quota("dest-a") is None and store.quota("dest-b") is None
        assert store.forget_quotas() == []
    finally:
        store.close()
