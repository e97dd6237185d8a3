"""Shards keeping together to one quota through a real board (SQLite)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from etl_core._quota_board import BoardState, SqliteQuotaBoard
from etl_core._shared_limiter import SharedRateLimiter
from etl_core.ratelimit import AdaptiveRateLimiter, LimiterTuning, RateLimiterStatistics
from etl_core.state import StateError

DESTINATION = "PATCH http://127.0.0.1/contacts/{id}"


class RecordingBoard(SqliteQuotaBoard):
    """A real board that also keeps a log of the operations made on it, by everyone."""

    def __init__(self, path: str, log: list[tuple[str, str, BoardState]], name: str) -> None:
        super().__init__(path)
        self._log, self._name = log, name

    def _logged(self, operation: str, state: BoardState) -> BoardState:
        self._log.append((self._name, operation, state))
        return state

    def publish(self, *args: Any) -> BoardState:
        return self._logged("publish", super().publish(*args))

    def release(self, *args: Any) -> BoardState:
        return self._logged("release", super().release(*args))

    def claim(self, *args: Any) -> BoardState:
        return self._logged("claim", super().claim(*args))

    def throttled(self, *args: Any) -> BoardState:
        return self._logged("throttled", super().throttled(*args))

    def raised(self, *args: Any) -> BoardState:
        return self._logged("raised", super().raised(*args))


def _shards(tmp_path: Path, count: int, **options: Any) -> tuple[list[SharedRateLimiter], list[tuple[str, str, BoardState]]]:
    log: list[tuple[str, str, BoardState]] = []
    quota = options.pop("quota", None)
    shards = [
        SharedRateLimiter(
            AdaptiveRateLimiter(quota=quota),
            RecordingBoard(str(tmp_path / "state.db"), log, f"shard-{k}"),
            DESTINATION,
            f"shard-{k}",
            count,
            **options,
        )
        for k in range(count)
    ]
    return shards, log


def _start(claim: BoardState) -> float:
    """Where a claimed block starts: blocks are 0.1 s of the rate, the limiter's default."""
    assert claim.rate is not None
    return claim.next_slot - math.ceil(claim.rate * 0.1) / claim.rate


def _blocks(log: list[tuple[str, str, BoardState]]) -> list[tuple[float, float]]:
    return sorted((_start(state), state.next_slot) for _, operation, state in log if operation == "claim")


async def test_a_remembered_quota_is_published_once_and_shared_without_overlap(tmp_path: Path) -> None:
    shards, log = _shards(tmp_path, 3, quota=(300.0, 30.0))

    async def send(limiter: SharedRateLimiter, count: int) -> None:
        for _ in range(count):
            await limiter.acquire()
            limiter.on_success(trio.current_time())

    async with trio.open_nursery() as nursery:
        for limiter in shards:
            nursery.start_soon(send, limiter, 40)
    publishes = [state for _, operation, state in log if operation == "publish"]
    assert len(publishes) == 1
    assert publishes[0].rate == shards[0].local.rate  # just under the remembered quota
    blocks = _blocks(log)
    assert len(blocks) >= 3
    for (_, end), (start, _) in zip(blocks, blocks[1:], strict=False):
        assert start >= end - 1e-6  # all shards together keep to one schedule
    for limiter in shards:
        assert limiter.statistics().holding and limiter.rate == publishes[0].rate


async def test_shards_send_freely_until_one_is_throttled_then_wait_while_it_learns(tmp_path: Path) -> None:
    (learner, follower), log = _shards(tmp_path, 2, patience=0.2, poll=0.01)
    await follower.acquire()  # nobody throttled yet: no rate, no waiting
    await learner.acquire()
    assert learner.on_throttle(trio.current_time(), 0.0) is True  # its first wave ran the bucket dry
    await learner.acquire()  # the first throttled shard measures the quota
    await trio.sleep(0.02)  # the others see it at their next look at the board (every `poll` s)
    followed = trio.Event()

    async def follow() -> None:
        await follower.acquire()
        followed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        while not followed.is_set():
            if not [entry for entry in log if entry[1] == "publish"]:
                assert not followed.is_set()  # the others send nothing while the learner measures
            learner.on_success(trio.current_time())
            await learner.acquire()
            await trio.sleep(0.005)
    operations = [(name, operation) for name, operation, _ in log]
    assert operations.index(("shard-0", "publish")) < operations.index(("shard-1", "claim"))
    # It never held a measured rate within its patience: it published what both shards would send at its pace.
    published = next(state for _, operation, state in log if operation == "publish")
    assert published.rate is not None and published.rate > 0
    assert learner.rate == follower.rate == published.rate


async def test_a_throttle_seen_by_one_shard_slows_and_pauses_all(tmp_path: Path) -> None:
    (first, second), log = _shards(tmp_path, 2, quota=(200.0, 20.0))
    await first.acquire()
    await second.acquire()
    rate = first.rate
    assert rate is not None
    sent = trio.current_time()
    assert first.on_throttle(sent, 0.05) is True
    assert first.on_throttle(sent - 0.01, 0.05) is False  # an earlier send: the same event
    await first.acquire()  # tells the board before its next claim
    throttled = next(state for _, operation, state in log if operation == "throttled")
    assert throttled.rate is not None and rate / 2 - 1e-6 <= throttled.rate <= rate * 0.95 + 1e-6
    second._slots.clear()  # its block is spent: the next acquire claims
    await second.acquire()
    claim = [state for name, operation, state in log if (name, operation) == ("shard-1", "claim")][-1]
    assert claim.rate == throttled.rate
    assert _start(claim) >= throttled.paused_until - 1e-6


async def test_a_learner_that_ends_its_run_hands_over_so_the_others_do_not_wait(tmp_path: Path) -> None:
    (learner, follower), log = _shards(tmp_path, 2, poll=0.01, lease=5.0)
    await learner.acquire()
    await follower.acquire()
    learner.on_throttle(trio.current_time(), 0.0)
    await learner.acquire()  # it claims the learner's part
    for _ in range(20):  # it measures for a while, then its part of the file is done
        learner.on_success(trio.current_time())
        await learner.acquire()
    held = learner.local.rate if learner.local.statistics().holding else None
    await learner.aclose()  # runs in trio's context: it reads the limiter's clock
    ended = [operation for name, operation, _ in log if name == "shard-0" and operation in ("publish", "release")]
    assert ended == (["publish"] if held is not None else ["release"])
    follower.on_throttle(trio.current_time(), 0.0)
    with trio.fail_after(2.0):  # well inside the 5 s the learner's claim would have run
        await follower.acquire()
    assert follower.statistics().shared
    assert held is None or follower.rate == held


class HeldLimiter(AdaptiveRateLimiter):
    """A limiter that has measured 100/s after a throttle and holds it (as a learner's does)."""

    throttle_events = 1

    @property
    def rate(self) -> float | None:
        return 100.0

    def statistics(self) -> RateLimiterStatistics:
        return RateLimiterStatistics(rate=100.0, throttle_events=1, quota_rate=101.0, quota_burst=10.0, holding=True)


async def test_a_learner_publishes_the_rate_it_sent_at_not_a_higher_one_it_held(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # One process among several on busy cores may send slower than the rate it holds:
    # no throttle then proves the pace it sent at, not the rate (a traced first run of 4
    # shards published 235/s for a quota of 200/s, sent at 204-212/s).
    log: list[tuple[str, str, BoardState]] = []
    learner = SharedRateLimiter(HeldLimiter(), RecordingBoard(str(tmp_path / "state.db"), log, "shard-0"), DESTINATION, "shard-0", 2)
    for _ in range(400):  # ten seconds at its pace (no deadline: the board's calls run in threads)
        if [entry for entry in log if entry[1] == "publish"]:
            break
        await learner.acquire()
        learner.on_success(trio.current_time())
        await trio.sleep(1 / 40)  # its own pace: 40/s
    published = next(state for _, operation, state in log if operation == "publish")
    assert published.rate is not None and 35.0 <= published.rate <= 41.0


async def test_a_lower_bound_is_neither_shared_nor_remembered(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    # The learner's episodes show only a lower bound of the rate (the pattern of
    # tests/core/test_ratelimit.py's lower-bound test). Its run ends before its probe
    # measures the quota: it gives up its part instead of publishing the bound, which no
    # shard would ever raise and the next run would start from.
    (learner, other), log = _shards(tmp_path, 2, poll=0.01)

    async def send_at_pace(limiter: SharedRateLimiter, count: int) -> float:
        for _ in range(count):
            await limiter.acquire()
            limiter.on_success(trio.current_time())
            await trio.sleep(1 / 118)
        return trio.current_time()

    assert learner.on_throttle(await send_at_pace(learner, 111), 1.0)
    await trio.sleep(1.0)
    assert learner.on_throttle(await send_at_pace(learner, 76), 1.0)
    await learner.acquire()
    stats = learner.statistics()
    assert stats.holding and stats.lower_bound and not [entry for entry in log if entry[1] == "publish"]
    await learner.aclose()
    assert [operation for _, operation, _ in log if operation in ("publish", "release")] == ["release"]
    assert learner.quota_to_remember() is None
    # A shard that never learnt remembers nothing, whatever its own limiter measured (it
    # saw its throttles while the others sent too).
    other.local = AdaptiveRateLimiter(quota=(30.0, 3.0))
    assert other.local.quota_to_remember() is not None and other.quota_to_remember() is None


async def test_the_next_run_starts_from_the_shared_rate_as_the_shards_left_it(tmp_path: Path) -> None:
    # A first run's learner may have measured the quota high; the throttles that followed
    # cut the shared rate. What the next run starts from is the rate as it was cut.
    tuning = LimiterTuning(proof=0.3)
    log: list[tuple[str, str, BoardState]] = []
    shards = [
        SharedRateLimiter(
            AdaptiveRateLimiter(quota=(120.0, 10.0), tuning=tuning),
            RecordingBoard(str(tmp_path / "state.db"), log, f"shard-{k}"),
            DESTINATION,
            f"shard-{k}",
            2,
        )
        for k in range(2)
    ]
    for limiter in shards:
        await limiter.acquire()
        limiter.on_success(trio.current_time())
    published = shards[0].rate
    assert published is not None and shards[1].rate == published
    limiter = shards[0]
    assert limiter.on_throttle(trio.current_time(), 0.0)
    await limiter.acquire()  # tells the board: the shared rate is cut
    cut = limiter.rate
    assert cut is not None and cut < published
    # Just cut, not yet held without a throttle: kept as it is.
    assert limiter.quota_to_remember() == pytest.approx((cut, 10.0))
    # Held for `proof` seconds without a throttle: kept so that the next run, which holds
    # `remembered_margin` under what it remembers, starts at it.
    await trio.sleep(tuning.proof + 0.05)
    rate, burst = limiter.quota_to_remember() or (0.0, 0.0)
    assert rate == pytest.approx(cut / (1 - tuning.remembered_margin)) and burst == 10.0
    assert rate < 120.0


async def test_a_rate_held_while_the_shards_want_more_is_raised_until_a_throttle(tmp_path: Path) -> None:
    # A remembered quota of 100/s, published at once. Both shards want to send faster:
    # held without a throttle for `probe_every`, the rate is raised, by more each time.
    shards, log = _shards(tmp_path, 2, quota=(100.0, 10.0), probe_every=0.3)

    async def send(limiter: SharedRateLimiter, until: Callable[[], bool]) -> None:
        while not until():
            await limiter.acquire()
            limiter.on_success(trio.current_time())

    def raises() -> list[BoardState]:
        return [state for _, operation, state in log if operation == "raised"]

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for limiter in shards:
                nursery.start_soon(send, limiter, lambda: len({s.generation for s in raises()}) >= 2)
    published = next(state for _, operation, state in log if operation == "publish")
    first, second = sorted({state.generation: state for state in raises()}.values(), key=lambda s: s.generation)[:2]
    assert published.rate is not None and first.rate is not None and second.rate is not None
    assert first.rate == pytest.approx(published.rate * 1.05)
    assert second.rate == pytest.approx(first.rate * 1.10)  # not answered by a throttle: a larger step
    # A throttle answers the next raise: the rate is cut back, and the probes wait longer
    # and start small again.
    limiter = shards[0]
    limiter._slots.clear()  # its next acquire claims: it knows the rate as it is now
    await limiter.acquire()
    held = limiter.rate
    assert held is not None and held >= second.rate
    assert limiter.on_throttle(trio.current_time(), 0.0)
    await limiter.acquire()
    cut = [state for _, operation, state in log if operation == "throttled"][-1]
    assert cut.rate is not None and cut.rate < held
    # Back to the rate held without a throttle before the last raise, not under it.
    rates = [published.rate] + [state.rate for state in raises() if state.rate is not None]
    assert cut.rate == pytest.approx(max(rate for rate in rates if rate < held - 1e-9))
    assert limiter._probe_every == pytest.approx(0.6) and limiter._raise_by == pytest.approx(0.05)


class FailingBoard(SqliteQuotaBoard):
    """A real board whose database goes away once a rate is published."""

    def claim(self, *args: Any) -> BoardState:
        raise sqlite3.OperationalError("disk I/O error")


async def test_a_board_that_fails_mid_run_stops_the_run_with_a_state_error(tmp_path: Path) -> None:
    limiter = SharedRateLimiter(
        AdaptiveRateLimiter(quota=(100.0, 10.0)), FailingBoard(str(tmp_path / "state.db")), DESTINATION, "shard-0", 2
    )
    # The remembered quota is published at once; the first claim of slots then fails.
    with pytest.raises(StateError, match="the shared quota board failed: OperationalError: disk I/O error"):
        await limiter.acquire()


async def test_the_learner_measures_the_burst_from_every_shard_s_first_wave(tmp_path: Path) -> None:
    # A bucket of 200/s, burst 20, emptied by two shards at once: 5 successes for the
    # first, 15 for the other; then the first, throttled, measures alone.
    (learner, follower), _ = _shards(tmp_path, 2, poll=0.01)
    observer = SqliteQuotaBoard(str(tmp_path / "state.db"))
    await learner.acquire()
    await follower.acquire()
    for _ in range(5):
        learner.on_success(trio.current_time())
    for _ in range(15):
        follower.on_success(trio.current_time())
    emptied = trio.current_time()
    assert learner.on_throttle(emptied, 0.2)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await learner.acquire()  # the learner now; it waits out the pause

            async def send_on() -> None:  # until it sees the learner: then it counts its wave and waits
                while True:
                    await follower.acquire()
                    await trio.sleep(0.005)

            nursery.start_soon(send_on)
            while observer.join(DESTINATION, "observer", 5.0, False).wave_successes < 20:
                await trio.sleep(0.01)
            # Alone at 300/s once the pause has filled the bucket again: it runs dry after
            # 0.2 s, 60 successes (their send times as the bucket saw them).
            await trio.sleep_until(emptied + 0.25)
            start = trio.current_time()
            for n in range(60):
                await learner.acquire()
                learner.on_success(start + n / 300)
            assert learner.on_throttle(start + 0.2, 1.0)
            nursery.cancel_scope.cancel()
    observer.close()
    # Its own 5 alone would read as the burst, and 55 of the 60 as the rate of 0.2 s.
    assert learner.local.quota_burst == pytest.approx(20, abs=2)
    assert learner.local.quota_rate == pytest.approx(200, rel=0.05)
