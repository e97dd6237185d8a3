"""The quota board: one row per destination that shards sending to it share.

Shards (``--shard K/N``, ``run.processes``) that send to one destination must share its
quota. The board keeps what they agree on in the state store, where every shard can
reach it, and each operation is one atomic statement:

* ``rate``, ``burst``: the rate to send at, all shards together, once one of them has
  measured it (or an earlier run had);
* ``next_slot``: the first free sending slot (GCRA): a shard claims a block of slots,
  ``count / rate`` seconds of the rate, by moving it forward;
* ``paused_until``: a pause asked for by a throttle that one shard saw, kept by all;
* ``generation``: bumped by every change of the rate, so that the throttles answering
  requests sent under an older rate count once, and two shards' probes of one rate
  raise it once;
* ``since``: when sending at the current rate began (a pause's end, a publication, a
  raise): a throttle measures the rate from the time since;
* ``learner``, ``learner_until``: the shard measuring the quota while nobody has, and
  how long its claim holds unless renewed (a learner that died is replaced);
* ``wave_successes``, ``wave_spread``, ``wave_since``: the first waves of all shards,
  counted together before a rate is published (their successes, the longest any took,
  when the first report came): the bucket they emptied held its burst, and one shard's
  share of it would read as a burst of a few.

Times are seconds of the board's clock (the database server's for PostgreSQL, the
machine's for SQLite); each answer carries the board's ``now`` so that a shard can
place the slots on its own clock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._sqlite import connect_wal

if TYPE_CHECKING:
    import psycopg


@dataclasses.dataclass(frozen=True, slots=True)
class BoardState:
    """One destination's row, as an operation left it.

    Attributes:
        now: The board's clock when the row was read.
        rate: The shared sending rate in requests per second, or None before a measurement.
        burst: The destination's measured burst, or None.
        next_slot: The first free slot (board time) after a claim: the claimed block
            ends there.
        paused_until: Board time until which nobody sends.
        generation: Bumped by every change of the rate.
        learner: The shard that measures the quota now, or None.
        wave_successes: The successes of every shard's first wave, counted together.
        wave_spread: The longest any shard's first wave took, in seconds.
    """

    now: float
    rate: float | None
    burst: float | None
    next_slot: float
    paused_until: float
    generation: int
    learner: str | None
    wave_successes: int = 0
    wave_spread: float = 0.0


class QuotaBoard(Protocol):
    """The operations on the board; each is atomic, and blocks (call it from a thread)."""

    def join(self, destination: str, holder: str, lease: float, learn: bool) -> BoardState:
        """Read the row (creating it). While it has no rate and ``learn``, make ``holder``
        the learner for ``lease`` seconds unless another live shard is (``holder`` renews
        its own claim so). A learner whose claim ran out is dropped; a row unused for
        :data:`STALE` seconds loses its rate."""

    def release(self, destination: str, holder: str) -> BoardState:
        """End ``holder``'s claim to learn, if it has one (its run ended unmeasured)."""

    def waved(self, destination: str, successes: int, spread: float) -> BoardState:
        """Count one shard's first wave (``successes`` sent within ``spread`` seconds) with
        the others', while no rate is published. (Shards start together: the waves overlap,
        and a sum of successes over the longest wave measures the bucket as one wave of
        one process would.) Reports older than :data:`STALE` seconds belong to an earlier
        run and are dropped."""

    def publish(self, destination: str, rate: float, burst: float) -> BoardState:
        """Set the shared rate (a measurement), ending any learner's claim."""

    def claim(self, destination: str, count: int) -> BoardState:
        """Claim ``count`` slots at the shared rate, after any pause; the block ends at ``next_slot``."""

    def throttled(self, destination: str, generation: int, pause: float, factor: float, floor: float | None = None) -> BoardState:
        """A throttle: pause everyone for ``pause`` s; if the rate is still that of
        ``generation``, lower it to what the time since sending began measures, and by
        ``factor`` at least (a later throttle of the same event does not), but not under
        ``floor``: the rate held without a throttle before a raise this throttle answers."""

    def raised(self, destination: str, generation: int, factor: float) -> BoardState:
        """A probe: if the rate is still that of ``generation``, multiply it by ``factor``
        (the shards held it without a throttle; another shard's probe of the same
        generation does not)."""

    def close(self) -> None:
        """Release the connection."""


_TABLE = "etl_quota_board"
_COLUMNS = "rate, burst, next_slot, paused_until, generation, learner, learner_until, since, wave_successes, wave_spread, wave_since"
#: Columns added since the table was first made: (name, SQLite type, PostgreSQL type).
_ADDED = (
    ("wave_successes", "INTEGER", "BIGINT"),
    ("wave_spread", "REAL", "DOUBLE PRECISION"),
    ("wave_since", "REAL", "DOUBLE PRECISION"),
)


#: How far under a rate measured from a throttle the shards hold.
_MARGIN = 0.01
#: Seconds after a throttle's pause within which the next throttle cuts the rate twice as much.
_AGAIN = 10.0
#: A row nobody claimed a slot from for this long belongs to an earlier run: its rate
#: is measured again (a run that remembers the quota publishes it at once).
STALE = 60.0


def _joined(row: tuple[Any, ...], now: float, holder: str, lease: float, learn: bool) -> dict[str, Any]:
    """The change :meth:`QuotaBoard.join` makes to ``row`` (the columns of ``_COLUMNS``)."""
    rate, next_slot, learner, learner_until = row[0], row[2], row[5], row[6]
    live = learner is not None and learner_until >= now
    change: dict[str, Any] = {} if live or learner is None else {"learner": None}  # a learner that died
    if rate is not None and next_slot < now - STALE and not live:
        change.update(rate=None, burst=None, generation=row[4] + 1)
        rate = None
    if rate is None and learn and (not live or learner == holder):
        change.update(learner=holder, learner_until=now + lease)
    return change


def _released(row: tuple[Any, ...], holder: str) -> dict[str, Any]:
    """The change :meth:`QuotaBoard.release` makes to ``row``."""
    return {"learner": None, "learner_until": 0.0} if row[5] == holder else {}


def _waved(row: tuple[Any, ...], now: float, successes: int, spread: float) -> dict[str, Any]:
    """The change :meth:`QuotaBoard.waved` makes to ``row``."""
    if row[0] is not None or successes <= 0:
        return {}  # measured already (the first wave is past), or nothing to count
    if not row[8] or now - row[10] > STALE:
        return {"wave_successes": successes, "wave_spread": spread, "wave_since": now}
    return {"wave_successes": row[8] + successes, "wave_spread": max(row[9], spread)}


def _state(now: float, row: tuple[Any, ...]) -> BoardState:
    """The :class:`BoardState` of a row of ``_COLUMNS``."""
    rate, burst, next_slot, paused_until, generation, learner = row[:6]
    return BoardState(now, rate, burst, next_slot, paused_until, generation, learner, row[8], row[9])


def _published(row: tuple[Any, ...], now: float, rate: float, burst: float) -> dict[str, Any]:
    """The change :meth:`QuotaBoard.publish` makes to ``row``."""
    return {
        "rate": rate, "burst": burst, "next_slot": max(row[2], now), "generation": row[4] + 1,
        "learner": None, "learner_until": 0.0, "since": now,
    }


def _throttled(
    row: tuple[Any, ...], now: float, generation: int, pause: float, factor: float, floor: float | None = None
) -> dict[str, Any]:
    """The change :meth:`QuotaBoard.throttled` makes to ``row``."""
    rate, burst, since = row[0], row[1], row[7]
    change: dict[str, Any] = {"paused_until": max(row[3], now + pause)}
    if rate is not None and row[4] == generation:
        # The bucket was full when sending at this rate began (after a pause, or a probe's
        # raise of a rate held without a throttle) and is empty now: sent = B + R*T, so
        # R = rate - B/T (less if not every slot was used: the next throttle corrects
        # it). At least ``factor`` off (twice that for a throttle soon after the last
        # one's pause), at most half.
        sending = now - since
        measured = rate - (burst or 1.0) / sending if sending > 0 else 0.0
        if now - row[3] < _AGAIN:
            factor = 1 - 2 * (1 - factor)  # throttled again soon: the last cut was too small
        lowered = max(rate / 2, min(rate * factor, measured * (1 - _MARGIN)))
        if floor is not None and floor < rate:
            # It answers a raise: back to the rate held before it (a raise may be answered
            # before its bucket drained, which the measurement above takes for a low rate).
            lowered = max(lowered, floor)
        change.update(rate=lowered, generation=generation + 1, since=change["paused_until"])
    return change


def _raised(row: tuple[Any, ...], now: float, generation: int, factor: float) -> dict[str, Any]:
    """The change :meth:`QuotaBoard.raised` makes to ``row``: sending at the raised rate
    begins now (after any pause), with the bucket full (the rate before was held without
    a throttle)."""
    if row[0] is None or row[4] != generation:
        return {}
    return {"rate": row[0] * factor, "generation": generation + 1, "since": max(now, row[3])}


class _Board:
    """The operations every board makes the same way: a change to the row, worked out in Python."""

    def _change(self, destination: str, change: Callable[[tuple[Any, ...], float], dict[str, Any]]) -> BoardState:
        raise NotImplementedError

    def join(self, destination: str, holder: str, lease: float, learn: bool) -> BoardState:
        """See :meth:`QuotaBoard.join`."""
        return self._change(destination, lambda row, now: _joined(row, now, holder, lease, learn))

    def release(self, destination: str, holder: str) -> BoardState:
        """See :meth:`QuotaBoard.release`."""
        return self._change(destination, lambda row, now: _released(row, holder))

    def waved(self, destination: str, successes: int, spread: float) -> BoardState:
        """See :meth:`QuotaBoard.waved`."""
        return self._change(destination, lambda row, now: _waved(row, now, successes, spread))

    def publish(self, destination: str, rate: float, burst: float) -> BoardState:
        """See :meth:`QuotaBoard.publish`."""
        return self._change(destination, lambda row, now: _published(row, now, rate, burst))

    def throttled(self, destination: str, generation: int, pause: float, factor: float, floor: float | None = None) -> BoardState:
        """See :meth:`QuotaBoard.throttled`."""
        return self._change(destination, lambda row, now: _throttled(row, now, generation, pause, factor, floor))

    def raised(self, destination: str, generation: int, factor: float) -> BoardState:
        """See :meth:`QuotaBoard.raised`."""
        return self._change(destination, lambda row, now: _raised(row, now, generation, factor))


class SqliteQuotaBoard(_Board):
    """The board in the SQLite state file (WAL: shards of one machine share it).

    Args:
        path: The state database's file.
    """

    def __init__(self, path: str) -> None:
        self._db = db = connect_wal(path, check_same_thread=False)
        # One transaction with the write lock: shards opening the board together create
        # it, or add the columns of a board an earlier version made, once.
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} (destination TEXT PRIMARY KEY, rate REAL, burst REAL,"
                " next_slot REAL NOT NULL DEFAULT 0, paused_until REAL NOT NULL DEFAULT 0,"
                " generation INTEGER NOT NULL DEFAULT 0, learner TEXT, learner_until REAL NOT NULL DEFAULT 0,"
                " since REAL NOT NULL DEFAULT 0"
                + "".join(f", {name} {kind} NOT NULL DEFAULT 0" for name, kind, _ in _ADDED)
                + ")"
            )
            present = {row[1] for row in db.execute(f"PRAGMA table_info({_TABLE})")}
            for name, kind, _ in _ADDED:
                if name not in present:
                    db.execute(f"ALTER TABLE {_TABLE} ADD COLUMN {name} {kind} NOT NULL DEFAULT 0")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            db.close()
            raise

    def _change(self, destination: str, change: Callable[[tuple[Any, ...], float], dict[str, Any]]) -> BoardState:
        """Read the row, apply ``change`` and write it back, in one write transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # the write lock at once: two shards never deadlock upgrading
        try:
            now = time.time()
            db.execute(f"INSERT OR IGNORE INTO {_TABLE} (destination) VALUES (?)", (destination,))
            row = db.execute(f"SELECT {_COLUMNS} FROM {_TABLE} WHERE destination = ?", (destination,)).fetchone()
            values = change(row, now)
            if values:
                assignments = ", ".join(f"{column} = ?" for column in values)
                db.execute(f"UPDATE {_TABLE} SET {assignments} WHERE destination = ?", (*values.values(), destination))
                row = tuple(values.get(column, value) for column, value in zip(_NAMES, row, strict=True))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return _state(now, row)

    def claim(self, destination: str, count: int) -> BoardState:
        """See :meth:`QuotaBoard.claim`. One statement: it is the one made often."""
        now = time.time()
        row = self._db.execute(
            f"UPDATE {_TABLE} SET next_slot = MAX(next_slot, ?, paused_until) + ? / rate"
            f" WHERE destination = ? AND rate IS NOT NULL RETURNING {_COLUMNS}",
            (now, count, destination),
        ).fetchone()
        if row is None:
            raise LookupError(f"no shared rate for {destination}")
        return _state(now, row)

    def close(self) -> None:
        """See :meth:`QuotaBoard.close`."""
        self._db.close()


class PostgresQuotaBoard(_Board):
    """The board in the PostgreSQL state database: shards on any machine share it.

    Its clock is the database server's, the one clock every shard sees.

    Args:
        connection: A connection of its own, in autocommit mode (each operation opens its
            own transaction).
    """

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._db = connection
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {_TABLE} (destination TEXT PRIMARY KEY, rate DOUBLE PRECISION,"
            " burst DOUBLE PRECISION, next_slot DOUBLE PRECISION NOT NULL DEFAULT 0,"
            " paused_until DOUBLE PRECISION NOT NULL DEFAULT 0, generation BIGINT NOT NULL DEFAULT 0,"
            " learner TEXT, learner_until DOUBLE PRECISION NOT NULL DEFAULT 0,"
            " since DOUBLE PRECISION NOT NULL DEFAULT 0"
            + "".join(f", {name} {kind} NOT NULL DEFAULT 0" for name, _, kind in _ADDED)
            + ")"
        )
        present = {
            row[0] for row in self._db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = current_schema()",
                (_TABLE,),
            )
        }
        for name, _, kind in _ADDED:
            if name not in present:  # a board an earlier version made
                self._db.execute(f"ALTER TABLE {_TABLE} ADD COLUMN IF NOT EXISTS {name} {kind} NOT NULL DEFAULT 0")

    def _change(self, destination: str, change: Callable[[tuple[Any, ...], float], dict[str, Any]]) -> BoardState:
        """Read the row locked, apply ``change`` and write it back, in one transaction."""
        with self._db.transaction():
            self._db.execute(f"INSERT INTO {_TABLE} (destination) VALUES (%s) ON CONFLICT DO NOTHING", (destination,))
            found = self._db.execute(
                f"SELECT {_COLUMNS}, {_PG_NOW} FROM {_TABLE} WHERE destination = %s FOR UPDATE", (destination,)
            ).fetchone()
            assert found is not None  # inserted above
            row, now = found[:-1], found[-1]
            values = change(row, now)
            if values:
                assignments = ", ".join(f"{column} = %s" for column in values)
                self._db.execute(
                    f"UPDATE {_TABLE} SET {assignments} WHERE destination = %s",
                    (*values.values(), destination),
                )
                row = tuple(values.get(column, value) for column, value in zip(_NAMES, row, strict=True))
        return _state(now, row)

    def claim(self, destination: str, count: int) -> BoardState:
        """See :meth:`QuotaBoard.claim`. One statement: it is the one made often."""
        found = self._db.execute(
            f"UPDATE {_TABLE} SET next_slot = GREATEST(next_slot, {_PG_NOW}, paused_until) + %s / rate"
            f" WHERE destination = %s AND rate IS NOT NULL RETURNING {_COLUMNS}, {_PG_NOW}",
            (count, destination),
        ).fetchone()
        if found is None:
            raise LookupError(f"no shared rate for {destination}")
        return _state(found[-1], found[:-1])

    def close(self) -> None:
        """See :meth:`QuotaBoard.close`."""
        self._db.close()


_NAMES = tuple(name.strip() for name in _COLUMNS.split(","))
_PG_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

