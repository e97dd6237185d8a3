"""The quota board's operations, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from etl_core import _quota_board
from etl_core._quota_board import PostgresQuotaBoard, QuotaBoard, SqliteQuotaBoard

DESTINATION = "PATCH https://api.example/contacts/{id} as client of https://auth.example/token"


@pytest.fixture(params=["sqlite", "postgresql"])
def open_board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], QuotaBoard]]:
    """Opens boards on one database, as shards in several processes would."""
    boards: list[QuotaBoard] = []

    def open_one() -> QuotaBoard:
        if request.param == "sqlite":
            board: QuotaBoard = SqliteQuotaBoard(str(tmp_path / "state.db"))
        else:
            url = request.getfixturevalue("postgres_url")
            board = PostgresQuotaBoard(psycopg.connect(url, autocommit=True))
        boards.append(board)
        return board

    yield open_one
    for board in boards:
        board.close()


def test_the_first_shard_throttled_learns_and_the_others_wait(open_board: Callable[[], QuotaBoard]) -> None:
    first, second = open_board(), open_board()
    assert first.join(DESTINATION, "shard-0", 5.0, True).learner == "shard-0"
    waiting = second.join(DESTINATION, "shard-1", 5.0, True)
    assert waiting.learner == "shard-0" and waiting.rate is None
    assert first.join(DESTINATION, "shard-0", 5.0, True).learner == "shard-0"  # a renewal


def test_only_a_throttled_shard_claims_to_learn_and_a_finished_one_gives_it_up(
    open_board: Callable[[], QuotaBoard],
) -> None:
    first, second = open_board(), open_board()
    assert first.join(DESTINATION, "shard-0", 5.0, False).learner is None  # not throttled yet
    assert second.join(DESTINATION, "shard-1", 5.0, True).learner == "shard-1"
    assert first.release(DESTINATION, "shard-0").learner == "shard-1"  # not its claim
    assert second.release(DESTINATION, "shard-1").learner is None


def test_a_learner_whose_claim_ran_out_is_replaced(open_board: Callable[[], QuotaBoard]) -> None:
    first, second = open_board(), open_board()
    first.join(DESTINATION, "shard-0", -1.0, True)  # a claim that has already run out: a learner that died
    assert second.join(DESTINATION, "shard-1", 5.0, True).learner == "shard-1"


def test_a_published_rate_ends_learning_and_blocks_never_overlap(open_board: Callable[[], QuotaBoard]) -> None:
    first, second = open_board(), open_board()
    first.join(DESTINATION, "shard-0", 5.0, True)
    published = first.publish(DESTINATION, 200.0, 20.0)
    assert (published.rate, published.burst, published.learner) == (200.0, 20.0, None)
    assert second.join(DESTINATION, "shard-1", 5.0, True).rate == 200.0
    blocks = []
    for board in (first, second, first, second):
        state = board.claim(DESTINATION, 20)
        blocks.append((state.next_slot - 20 / 200.0, state.next_slot))
    for (_, end), (start, _) in zip(blocks, blocks[1:], strict=False):
        assert start == pytest.approx(end)  # the next block starts where the last ended


def test_a_throttle_pauses_everyone_and_lowers_the_rate_once(open_board: Callable[[], QuotaBoard]) -> None:
    first, second = open_board(), open_board()
    state = first.publish(DESTINATION, 200.0, 20.0)
    throttled = first.throttled(DESTINATION, state.generation, 1.0, 0.95)
    assert throttled.rate is not None and 100.0 <= throttled.rate <= 190.0
    assert throttled.paused_until >= throttled.now + 1.0 - 1e-6
    # A second 429 of the same event (sent under the old rate) only extends the pause.
    again = second.throttled(DESTINATION, state.generation, 1.0, 0.95)
    assert again.rate == throttled.rate and again.generation == throttled.generation
    claim = second.claim(DESTINATION, 19)
    assert claim.next_slot - 19 / claim.rate >= throttled.paused_until - 1e-6  # no slot inside the pause


def test_a_probe_raises_a_rate_once_and_the_next_throttle_measures_from_it(open_board: Callable[[], QuotaBoard]) -> None:
    first, second = open_board(), open_board()
    published = first.publish(DESTINATION, 100.0, 20.0)
    raised = first.raised(DESTINATION, published.generation, 1.05)
    assert raised.rate == pytest.approx(105.0) and raised.generation == published.generation + 1
    # Another shard's probe of the same rate: it was raised already.
    assert second.raised(DESTINATION, published.generation, 1.05).rate == pytest.approx(105.0)
    throttled = second.throttled(DESTINATION, raised.generation, 0.0, 0.95)
    # Sending at 105/s began at the raise with a full bucket of 20, a moment ago: the
    # throttle measures R = 105 - 20/T, far under the rate, and halves it at most.
    assert throttled.rate is not None and 52.5 - 1e-6 <= throttled.rate < 100.0


def test_a_throttle_that_answers_a_raise_goes_back_to_the_rate_before_it(open_board: Callable[[], QuotaBoard]) -> None:
    first, second = open_board(), open_board()
    published = first.publish(DESTINATION, 100.0, 20.0)
    raised = first.raised(DESTINATION, published.generation, 1.10)
    # Answered at once: the measurement (R = 110 - 20/T) would halve it; the rate held
    # without a throttle before the raise stands.
    throttled = second.throttled(DESTINATION, raised.generation, 0.0, 0.95, floor=100.0)
    assert throttled.rate == pytest.approx(100.0) and throttled.generation == raised.generation + 1
    # A floor at or over the rate is no floor: a throttle always lowers the rate.
    again = second.throttled(DESTINATION, throttled.generation, 0.0, 0.95, floor=150.0)
    assert again.rate is not None and again.rate < throttled.rate


def test_a_row_left_by_an_earlier_run_is_measured_again(
    open_board: Callable[[], QuotaBoard], monkeypatch: pytest.MonkeyPatch
) -> None:
    board = open_board()
    board.publish(DESTINATION, 200.0, 20.0)
    monkeypatch.setattr(_quota_board, "STALE", -60.0)  # every row is stale
    joined = board.join(DESTINATION, "shard-2", 5.0, True)
    assert joined.rate is None and joined.learner == "shard-2"


def test_no_slot_is_claimed_before_there_is_a_rate(open_board: Callable[[], QuotaBoard]) -> None:
    board = open_board()
    board.join(DESTINATION, "shard-0", 5.0, True)
    with pytest.raises(LookupError):
        board.claim(DESTINATION, 10)


@pytest.mark.parametrize(
    ("sending", "paused_until", "lowered"),
    [
        (0.2, 100.0, 100.0),  # 20 requests of burst over 0.2 s: 100/s more than the quota; halved at most
        (0.4, 100.0, 148.5),  # R = 200 - 20/0.4 = 150, held 1 % under
        (4.0, 100.0, 180.0),  # R = 195, but throttled again soon after the last: lowered by twice the factor
        (4.0, 0.0, 190.0),  # the same 4 s after a raise or a publication, long after any throttle
        (40.0, 100.0, 190.0),  # R = 199.5: lowered by the factor at least
    ],
)
def test_a_throttle_measures_the_rate_from_the_time_since_sending_began(sending: float, paused_until: float, lowered: float) -> None:
    # rate, burst, next_slot, paused_until, generation, learner, learner_until, since
    row = (200.0, 20.0, 0.0, paused_until, 3, None, 0.0, 100.0)
    change = _quota_board._throttled(row, 100.0 + sending, 3, 1.0, 0.95)
    assert change["rate"] == pytest.approx(lowered)
    assert change["since"] == change["paused_until"] == pytest.approx(101.0 + sending)


def test_the_shards_first_waves_are_counted_together_until_a_rate_is_published(open_board: Callable[[], QuotaBoard]) -> None:
    first, second = open_board(), open_board()
    assert first.waved(DESTINATION, 6, 0.02).wave_successes == 6
    together = second.waved(DESTINATION, 5, 0.05)
    assert (together.wave_successes, together.wave_spread) == (11, 0.05)
    assert first.waved(DESTINATION, 0, 0.5).wave_spread == 0.05  # a wave with no success counts not
    assert first.join(DESTINATION, "shard-0", 5.0, True).wave_successes == 11  # every answer carries them
    first.publish(DESTINATION, 200.0, 20.0)
    assert second.waved(DESTINATION, 4, 0.01).wave_successes == 11  # measured: a late report changes nothing


def test_a_first_wave_reported_by_an_earlier_run_is_not_counted(tmp_path: Path, monkeypatch) -> None:
    # Worked out the same on both boards (``_waved``); SQLite's clock is this machine's.
    board = SqliteQuotaBoard(str(tmp_path / "state.db"))
    try:
        board.waved(DESTINATION, 30, 0.1)
        later = time.time() + _quota_board.STALE + 1
        monkeypatch.setattr(time, "time", lambda: later)
        assert (board.waved(DESTINATION, 5, 0.02).wave_successes, board.waved(DESTINATION, 1, 0.01).wave_successes) == (5, 6)
    finally:
        board.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_board_made_before_the_first_wave_columns_gains_them(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    old = (
        f"CREATE TABLE {_quota_board._TABLE} (destination TEXT PRIMARY KEY, rate REAL, burst REAL,"
        " next_slot REAL NOT NULL DEFAULT 0, paused_until REAL NOT NULL DEFAULT 0,"
        " generation INTEGER NOT NULL DEFAULT 0, learner TEXT, learner_until REAL NOT NULL DEFAULT 0,"
        " since REAL NOT NULL DEFAULT 0)"
    )
    if kind == "sqlite":
        path = str(tmp_path / "state.db")
        with sqlite3.connect(path) as db:
            db.execute(old)
            db.execute(f"INSERT INTO {_quota_board._TABLE} (destination, rate, burst) VALUES (?, 150.0, 15.0)", (DESTINATION,))
        board: QuotaBoard = SqliteQuotaBoard(path)
    else:
        connection = psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True)
        connection.execute(f"DROP TABLE IF EXISTS {_quota_board._TABLE}")
        connection.execute(old)
        connection.execute(f"INSERT INTO {_quota_board._TABLE} (destination, rate, burst) VALUES (%s, 150.0, 15.0)", (DESTINATION,))
        board = PostgresQuotaBoard(connection)
    try:
        state = board.claim(DESTINATION, 10)
        assert (state.rate, state.burst, state.wave_successes, state.wave_spread) == (150.0, 15.0, 0, 0.0)
    finally:
        board.close()


def _open_state_and_board(path: str) -> str:
    """In a process of its own, as a shard of ``run.processes`` opens them."""
    from etl_core.state import StateStore

    try:
        store = StateStore(path, "pipeline", "run")
        store.quota_board().close()
        store.close()
    except Exception as exc:  # reported to the test, which shows it
        return f"{type(exc).__name__}: {exc}"
    return "opened"


def test_shards_opening_a_new_state_file_at_the_same_moment_all_open_it(tmp_path: Path) -> None:
    # Two at a time, many times: switching a new file to WAL, creating the board or adding
    # its columns answered "database is locked" or "duplicate column" to one in three.
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        paths = [str(tmp_path / f"state-{n}.db") for n in range(30) for _ in range(2)]
        outcomes = list(pool.map(_open_state_and_board, paths))
    assert set(outcomes) == {"opened"}, [outcome for outcome in outcomes if outcome != "opened"][:3]
