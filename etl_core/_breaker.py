"""The outage breaker: when the destination is down, wait for it with one probe at a time.

Per-record retries (attempts, the retry budget, backoff) are right for one bad record
and wrong for an outage: there every record spends its attempts and the budget within
seconds, and fails. The breaker tells the two apart by what the whole pool sees:

* **closed** (normal): each failure that looks like the destination's rather than the
  record's (a 5xx, a 503 with or without Retry-After, a refused or reset connection, a
  timeout) adds to a streak; any other answer (a success, a 4xx, a 429) ends it. The
  breaker opens when the streak holds ``threshold`` failures of at least two records,
  one of them for a request sent after the streak's first failure came back: requests
  the pool sent before it knew of trouble (a first wave refused at once, say) do not
  show that waiting did not help.
* **open**: workers stop sending. One probe at a time goes out, after a capped
  exponential backoff, or the failure's Retry-After when it is longer. Failures while
  open are not charged to their records (no attempt, no retry budget). The first
  answer that is not an outage failure closes it, and every worker goes on.
* **expired**: it stayed open ``max_outage`` seconds. Nothing more is sent; the run
  stops and the records not sent keep no outcome, for the next run.

It lives on the trio event loop, like the rest of the delivery policy, so it needs no lock.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from .logging import get_logger
from .retry import DestinationUnavailable, backoff_delay

#: Outage failures in a row that open the breaker (with at least two records among them).
OUTAGE_THRESHOLD = 5


class OutageBreaker:
    """Stops the pool while the destination is down, and probes until it answers again.

    Args:
        max_outage: Seconds the breaker may stay open before the run gives up.
        probe_base: The first probe's delay, in seconds (doubling after each failed probe).
        probe_cap: The longest delay between two probes (unless a Retry-After asks for more).
        on_expired: Called once, with the reason, when the outage outlasts ``max_outage``.
        threshold: Outage failures in a row that open the breaker.
    """

    def __init__(
        self,
        *,
        max_outage: float,
        probe_base: float,
        probe_cap: float,
        on_expired: Callable[[str], None],
        threshold: int = OUTAGE_THRESHOLD,
    ) -> None:
        self.max_outage = max_outage
        self.probe_base = probe_base
        self.probe_cap = probe_cap
        self.threshold = threshold
        self._on_expired = on_expired
        #: Outages so far, probes sent in all, and seconds spent in outages that ended.
        self.outages = 0
        self.probes = 0
        self.outage_seconds = 0.0
        self.opened_at: float | None = None
        self.stopped = False
        self._probing = False
        self._probes_this_outage = 0
        self._next_probe_at = math.inf
        self._changed = trio.Event()
        self._streak = 0
        self._streak_records: set[int] = set()
        self._streak_seen_at = math.inf  # when the streak's first failure came back
        self._streak_confirmed = False
        self._log = get_logger()

    @property
    def is_open(self) -> bool:
        """True while the destination is taken to be down."""
        return self.opened_at is not None

    def open_for(self) -> float:
        """Seconds the current outage has lasted (0 when closed)."""
        return 0.0 if self.opened_at is None else trio.current_time() - self.opened_at

    async def admit(self) -> bool:
        """Wait until a send may go out.

        Returns:
            False for an ordinary send (the breaker is closed); True when the caller is
            to send the one probe, and then report its answer with ``probe=True``.

        Raises:
            DestinationUnavailable: The outage outlasted ``max_outage``, or :meth:`stop`
                was called: nothing more is sent.
        """
        while True:
            if self.stopped:
                raise DestinationUnavailable
            if self.opened_at is None:
                return False
            now = trio.current_time()
            give_up_at = self.opened_at + self.max_outage
            if now >= give_up_at:
                self._expire()
                continue
            if not self._probing and now >= self._next_probe_at:
                self._probing = True
                return True
            wake_at = give_up_at if self._probing else min(self._next_probe_at, give_up_at)
            with trio.move_on_at(wake_at):
                await self._changed.wait()

    def on_alive(self, *, probe: bool = False) -> None:
        """Record an answer that shows the destination is up (a success, a 4xx, a 429)."""
        self._end_streak()
        if probe:
            self._probing = False
            self.probes += 1
            self._probes_this_outage += 1
        if self.opened_at is not None:
            seconds = trio.current_time() - self.opened_at
            self.outage_seconds += seconds
            self._log.warning("outage_ended", duration_s=round(seconds, 3), probes=self._probes_this_outage)
            self.opened_at = None
            self._wake()

    def on_failure(
        self, record_line: int, sent_at: float, *, status: int | None, reason: str, retry_after: float | None,
        probe: bool = False,
    ) -> bool:
        """Record a failure that may be the destination's (5xx, 503, refused, reset, timeout).

        Args:
            record_line: Which record failed (its input line).
            sent_at: When its request was sent (trio clock).
            status: The HTTP status, if any.
            reason: What went wrong, for the log.
            retry_after: Seconds the destination asked to wait, if it did.
            probe: The request was the breaker's probe.

        Returns:
            True when the failure is the outage's: the breaker is open (perhaps since this
            failure), the record is not charged for it and waits in :meth:`admit`.
        """
        now = trio.current_time()
        if probe:
            self._probing = False
            self.probes += 1
            self._probes_this_outage += 1
            delay = self._schedule_probe(now, retry_after)
            self._log.info("outage_probe", status=status, reason=reason, next_probe_in_s=round(delay, 3))
            self._wake()
            return True
        if self.opened_at is not None:
            return True
        if self._streak == 0:
            self._streak_seen_at = now
        self._streak += 1
        self._streak_records.add(record_line)
        self._streak_confirmed = self._streak_confirmed or sent_at > self._streak_seen_at
        if self._streak < self.threshold or len(self._streak_records) < 2 or not self._streak_confirmed:
            return False
        self.opened_at = now
        self.outages += 1
        self._probes_this_outage = 0
        delay = self._schedule_probe(now, retry_after)
        self._log.warning(
            "outage_started", status=status, reason=reason, failures=self._streak, next_probe_in_s=round(delay, 3),
            max_outage_s=self.max_outage,
        )
        self._end_streak()
        return True

    def abandon_probe(self) -> None:
        """The probe got no answer (its send was cancelled or crashed): let another go."""
        self._probing = False
        self._wake()

    def stop(self) -> None:
        """Send nothing more: every caller of :meth:`admit` raises at once."""
        self.stopped = True
        self._wake()

    def _schedule_probe(self, now: float, retry_after: float | None) -> float:
        delay = backoff_delay(self._probes_this_outage + 1, base=self.probe_base, cap=self.probe_cap, jitter=0.5)
        delay = max(delay, retry_after or 0.0)
        self._next_probe_at = now + delay
        return delay

    def _expire(self) -> None:
        reason = (
            f"the destination has been down for {self.max_outage:g} s (run.max_outage): "
            "run again later to send the records left"
        )
        self._log.error("destination_unavailable", reason=reason, outage_s=round(self.open_for(), 3), probes=self._probes_this_outage)
        self.stop()
        self._on_expired(reason)

    def _end_streak(self) -> None:
        self._streak = 0
        self._streak_records.clear()
        self._streak_seen_at = math.inf
        self._streak_confirmed = False

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
