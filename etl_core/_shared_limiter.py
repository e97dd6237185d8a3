"""A rate limiter for shards that send to one destination and so share its quota.

Model: until somebody is throttled, shards send freely, each through its own
:class:`~etl_core.ratelimit.AdaptiveRateLimiter` (unlimited before a throttle), and look
at the :mod:`quota board <etl_core._quota_board>` a few times a second. The first shard
throttled becomes the learner: it measures the quota alone, the others wait. It takes
the burst from the first waves of all shards, counted together on the board (its own
share alone would read as a burst of a few, and every rate it measured as over the
quota by the rest of the burst). Once it has held a measured rate for ``proof`` seconds
without a throttle (at once, with a quota remembered by an earlier run; when its own run
ends, with what it has) it publishes that rate, or the pace it sent at meanwhile if
slower (what the hold proved). From then on every shard sends in slots claimed from the
board, in blocks of ``block`` seconds of the shared rate, so that all shards together
keep to it whatever share of the records each has. A throttle seen by any shard pauses
them all (the board's ``paused_until``) and lowers the shared rate, once per event, to
what the time since sending at it began measures (a full bucket emptied: sent = B +
R*T), by ``factor`` at least. A learner that cannot hold a measured rate within ``patience`` seconds (the quota
is beyond one shard) publishes one and a half times what all shards would send at its
pace, and throttles bring the rate down from there. A rate held without a throttle for
``probe_every`` seconds while the shards wanted more is raised (by ``raise_by``, more
each time in a row), so that a measurement that came out low, cuts that went too far or
a raised quota do not hold to the end; a throttle that answers a raise cuts it back (to
the rate before it at least) and makes the next probe wait twice as long.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import sqlite3
import sys
import uuid
from collections.abc import Callable

import trio

from ._quota_board import BoardState, QuotaBoard
from .logging import get_logger
from .ratelimit import AdaptiveRateLimiter, RateLimiterStatistics
from .state import StateError

_log = get_logger()


def _board_errors() -> tuple[type[Exception], ...]:
    """What a board's database raises (psycopg's only once a PostgreSQL store loaded it)."""
    psycopg = sys.modules.get("psycopg")
    return (LookupError, OSError, sqlite3.Error, *((psycopg.Error,) if psycopg is not None else ()))


class SharedRateLimiter:
    """The :class:`~etl_core.ratelimit.RateLimiter` of one shard among several.

    Args:
        local: This shard's own limiter: it paces the shard until a rate is published,
            and measures the quota while this shard is the learner.
        board: The shared board (its calls block: they run in a thread).
        destination: The destination's identity, the board's key.
        holder: This shard's name on the board.
        shards: How many shards send to the destination.
        block: Seconds of the shared rate claimed at once.
        lease: Seconds a learner's claim holds unless renewed.
        poll: Seconds between looks at the board before a rate is published.
        factor: The least a throttle lowers the shared rate by (a factor).
        proof: Seconds the learner holds a measured rate without a throttle before it
            publishes it (a measurement can overstate the quota; one shard alone finds
            out at less cost than all of them).
        patience: Seconds a learner may take to hold a measured rate before it
            publishes what the shards would send at its pace instead.
        probe_every: Seconds a shared rate is held without a throttle, while the shards
            want more, before a shard raises it; doubled (up to ``max_probe_every``) each
            time a raise is answered by a throttle.
        raise_by: The first raise of a rate, as a share of it; each raise not answered
            by a throttle doubles the next one (up to ``max_raise_by``).
    """

    def __init__(
        self,
        local: AdaptiveRateLimiter,
        board: QuotaBoard,
        destination: str,
        holder: str,
        shards: int,
        *,
        block: float = 0.1,
        lease: float = 5.0,
        poll: float = 0.25,
        factor: float = 0.95,
        proof: float = 2.0,
        patience: float = 10.0,
        probe_every: float = 10.0,
        max_probe_every: float = 120.0,
        raise_by: float = 0.05,
        max_raise_by: float = 0.2,
    ) -> None:
        self.local = local
        self._board = board
        self._destination = destination
        self._holder = holder
        self._shards = shards
        self._block, self._lease, self._poll, self._factor = block, lease, poll, factor
        self._proof, self._patience = proof, patience
        self._state: BoardState | None = None  # the board as last seen, once it has a rate
        self._learner: str | None = None  # who measures the quota, as last seen
        self._learning_since: float | None = None  # when this shard became the learner
        self._successes = 0  # since then
        self._holding_since: float | None = None  # when the learner's current hold began
        self._successes_held = 0  # the learner's successes when it began
        self._events_seen = 0
        self._wave_told = False  # this shard's first wave is counted on the board
        self._look_at = -math.inf  # when to look at the board again
        self._slots: collections.deque[float] = collections.deque()  # claimed, on trio's clock
        self._board_lock = trio.Lock()
        self._throttle: tuple[int, float] | None = None  # (generation, pause) to tell the board
        self._reacted_at = -math.inf
        self.throttle_events = 0
        self._probe_every, self._max_probe_every = probe_every, max_probe_every
        self._first_raise, self._raise_by, self._max_raise_by = raise_by, raise_by, max_raise_by
        self._seen: tuple[int, float, float] | None = None  # (generation, rate, when first seen)
        self._before_raise: float | None = None  # the rate before the last change seen, if that was a raise
        self._wanted_more = False  # this shard waited for its last slot: it would send more

    @property
    def rate(self) -> float | None:
        """The shared rate once there is one; this shard's own meanwhile."""
        if self._state is not None:
            return self._state.rate
        return self.local.rate

    async def acquire(self) -> None:
        """Wait for this request's sending slot."""
        while self._state is None:
            async with self._board_lock:  # one connection: one operation at a time
                if self._state is None:
                    await self._look()
            if self._state is not None:
                break
            if self._learner is None or self._learner == self._holder:
                await self.local.acquire()  # nobody throttled yet, or this shard measures
                return
            await trio.sleep_until(self._look_at)  # another shard measures: wait for its rate
        async with self._board_lock:
            # A slot this shard was too slow to use is gone: sent late, it would go out
            # in a burst with the next ones and overrun the quota.
            late = trio.current_time() - self._block
            while self._slots and self._slots[0] < late:
                self._slots.popleft()
            if not self._slots or self._throttle is not None:
                await self._claim()
            slot = self._slots.popleft()
        self._wanted_more = slot > trio.current_time()
        await trio.sleep_until(slot)

    async def _look(self) -> None:
        """Look at the board when due: claim the learner's part after a throttle, publish a measurement."""
        local, now = self.local, trio.current_time()
        learning = self._learner == self._holder
        throttled = local.throttle_events > 0
        if now >= self._look_at or (throttled and self._learner is None):
            learn = throttled or local.statistics().holding  # throttled, or a remembered quota
            state = await self._call(self._board.join, self._destination, self._holder, self._lease, learn)
            if state.rate is not None:
                return
            self._learner = state.learner
            if state.learner == self._holder and not learning:
                self._learning_since, self._successes = now, 0
            if state.learner is not None and not self._wave_told:
                # One shard measures from now on, the others wait: this shard's first wave is over.
                self._wave_told = True
                successes, spread = local.first_wave()
                if successes:
                    state = await self._call(self._board.waved, self._destination, successes, spread)
                    if state.rate is not None:
                        return
            measuring = state.learner == self._holder and local.quota_rate is None
            if measuring:
                local.share_first_wave(state.wave_successes, state.wave_spread)
            # A learner looks often until it measures (the others' first waves come in), then renews its claim.
            self._look_at = now + (self._poll if measuring or state.learner != self._holder else self._lease / 3)
        if self._learner == self._holder and (measured := self._measured(now)) is not None:
            rate, burst, source = measured
            await self._call(self._board.publish, self._destination, rate, burst)
            _log.info("quota_shared", rate=round(rate, 2), burst=round(burst, 1), source=source)

    def _measured(self, now: float) -> tuple[float, float, str] | None:
        """What the learner publishes, once it has something (see the module's docstring)."""
        local = self.local
        learnt = local.statistics()
        if learnt.holding and not learnt.lower_bound and local.rate is not None:
            if self._holding_since is None or learnt.throttle_events != self._events_seen:
                self._holding_since, self._events_seen = now, learnt.throttle_events
                self._successes_held = self._successes
            if learnt.throttle_events == 0:
                return local.rate, local.quota_burst or 1.0, "remembered"
            if (held_for := now - self._holding_since) >= self._proof:
                # No throttle proves the rate the learner sent at, not a limit it did not
                # reach (one process among several on busy cores may not).
                achieved = (self._successes - self._successes_held) / held_for
                return max(local.tuning.min_rate, min(local.rate, achieved)), local.quota_burst or 1.0, "measured"
            return None
        self._holding_since = None
        since = self._learning_since
        if since is None or now - since < self._patience:
            return None
        pace = self._successes / (now - since)
        return max(local.rate or 0.0, 1.5 * self._shards * pace, local.tuning.min_rate), 1.0, "pace"

    async def _claim(self) -> None:
        """Claim the next block of slots (telling the board of a throttle first)."""
        if self._throttle is not None:
            (generation, pause), self._throttle = self._throttle, None
            await self._call(self._board.throttled, self._destination, generation, pause, self._factor, self._before_raise)
            self._slots.clear()
        rate = self._state.rate if self._state is not None and self._state.rate else 1.0
        count = max(1, math.ceil(rate * self._block))
        state = await self._call(self._board.claim, self._destination, count)
        assert state.rate is not None  # a claim needs a rate; once published it stays
        offset = trio.current_time() - state.now  # trio's clock minus the board's
        start = state.next_slot - count / state.rate
        self._slots.extend(offset + start + i / state.rate for i in range(count))
        await self._probe(state)

    async def _probe(self, state: BoardState) -> None:
        """Raise the shared rate once it was held without a throttle for ``probe_every``
        seconds while this shard wanted more: a measurement that came out low, throttles
        that cut it too far, or a quota raised since, would otherwise hold to the end."""
        now = trio.current_time()
        self._observe(state, now)
        assert self._seen is not None and state.rate is not None
        if self._wanted_more and self._throttle is None and now - self._seen[2] >= self._probe_every:
            raised = await self._call(self._board.raised, self._destination, state.generation, 1.0 + self._raise_by)
            self._observe(raised, now)

    def _observe(self, state: BoardState, now: float) -> None:
        """Follow the shared rate's changes: a raise makes the next one larger; a throttle
        that answers a raise makes the next raise small again, and come later."""
        seen = self._seen
        if seen is not None and state.generation == seen[0]:
            return
        if seen is not None and state.rate is not None:
            if state.rate > seen[1]:
                self._before_raise = seen[1]  # held without a throttle: where a throttle goes back to
                self._raise_by = min(self._max_raise_by, 2.0 * self._raise_by)
            else:
                if self._before_raise is not None:  # the raise went past the quota
                    self._probe_every = min(self._max_probe_every, 2.0 * self._probe_every)
                self._before_raise, self._raise_by = None, self._first_raise
        self._seen = (state.generation, state.rate or 0.0, now)

    async def _call(self, operation: Callable[..., BoardState], *args: object) -> BoardState:
        """Run a board operation in a thread, and keep what it saw of a published rate."""
        try:
            state = await trio.to_thread.run_sync(operation, *args)
        except _board_errors() as exc:
            # The run stops as it does when its state store fails: checkpoints kept, rerun resumes.
            raise StateError(f"the shared quota board failed: {type(exc).__name__}: {exc}") from None
        if state.rate is not None:
            self._state = state
        return state

    def on_success(self, sent_at: float) -> None:
        """Record a successful send (the learner measures from it)."""
        self.local.on_success(sent_at)
        self._successes += 1

    def on_throttle(self, sent_at: float, retry_after: float | None = None) -> bool:
        """Record a throttled send; True if it started a new throttle event."""
        if self._state is None:
            return self.local.on_throttle(sent_at, retry_after)
        if sent_at <= self._reacted_at:
            return False  # sent before the last reaction: the same event
        self._reacted_at = trio.current_time()
        self.throttle_events += 1
        # Told to the board before the next claim, so every shard pauses and slows down.
        self._throttle = (self._state.generation, retry_after or 0.0)
        return True

    def statistics(self) -> RateLimiterStatistics:
        """Return the shared rate, this shard's throttle events and what was measured."""
        state = self._state
        if state is None:
            return dataclasses.replace(self.local.statistics(), shared=True)
        learnt = self.local.statistics()
        return RateLimiterStatistics(
            rate=None if state.rate is None else round(state.rate, 2),
            throttle_events=learnt.throttle_events + self.throttle_events,
            quota_rate=learnt.quota_rate if learnt.quota_rate is not None else state.rate,
            quota_burst=learnt.quota_burst if learnt.quota_burst is not None else state.burst,
            holding=True,
            shared=True,
        )

    async def aclose(self) -> None:
        """At the end of this shard's run: a learner publishes the rate it holds, proven or
        not, or gives up its part, so that the shards still sending carry on."""
        if self._state is not None or self._learner != self._holder:
            return
        local, learnt = self.local, self.local.statistics()
        # A lower bound is not published: the others would keep to a fraction of the
        # quota until probes raise it, and so would the next run, which starts from it.
        # (Read here: the rate needs trio's clock.)
        held = local.rate if learnt.holding and not learnt.lower_bound else None
        try:
            if held is not None:
                burst = local.quota_burst or 1.0
                await trio.to_thread.run_sync(self._board.publish, self._destination, held, burst)
                _log.info("quota_shared", rate=round(held, 2), burst=round(burst, 1), source="end of run")
            else:
                await trio.to_thread.run_sync(self._board.release, self._destination, self._holder)
        except _board_errors():
            pass  # its claim runs out within `lease` seconds: nothing is lost

    def quota_to_remember(self) -> tuple[float, float] | None:
        """The quota for the next run: the shared rate as the shards left it, or None.

        The shared rate is the learner's measurement after every cut and raise that
        throttles and probes made of it: the next run holds ``remembered_margin`` under
        what is kept, so a rate held for ``proof`` seconds without a throttle is kept
        that much over it (the next run starts at it), a rate cut more recently as it
        is. Before a rate was shared, what this shard measured as the learner: the
        other shards' own limiters saw their throttles while the others sent too, and
        measured their share of the quota.
        """
        state, seen, tuning = self._state, self._seen, self.local.tuning
        if state is None or state.rate is None or seen is None:
            return self.local.quota_to_remember() if self._learning_since is not None else None
        proven = self._throttle is None and trio.current_time() - seen[2] >= tuning.proof
        rate = state.rate / (1.0 - tuning.remembered_margin) if proven else state.rate
        return rate, state.burst or 1.0



def share_quota(
    limiter: AdaptiveRateLimiter, open_board: Callable[[], QuotaBoard | None], destination: str | None, shard: str, shards: int
) -> AdaptiveRateLimiter | SharedRateLimiter:
    """The limiter of shard ``shard`` of ``shards``: one that shares the quota of ``destination``
    on the board ``open_board`` opens, or ``limiter`` itself when there is no destination or board."""
    board = open_board() if destination else None
    if board is None or destination is None:
        return limiter
    return SharedRateLimiter(limiter, board, destination, f"{shard} {uuid.uuid4().hex[:8]}", shards)
