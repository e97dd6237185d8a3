"""The ledger: one place that books every record's outcome.

Whatever decided a record's fate (the source, a transform, the duplicate check, the
resume check, the sink), :meth:`Ledger.record` does the same steps: count it, write it
to the rejects or success file, checkpoint it, log it, call the ``record_done`` hook and
check the failure-rate guard. The run's progress snapshots and its report read the
same counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import pluggy
import trio

from ._outcome import Outcome, Result
from ._state_store import StateBackend
from .base import Record
from .config import RunSettings
from .logging import get_logger
from .report import CsvFile, RejectsWriter
from .state import Checkpoint, content_hash


@dataclasses.dataclass
class RecordCounts:
    """Records read so far and how many have each outcome."""

    read: int = 0
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        """Records with a final outcome in this run (skipped ones aside)."""
        return self.ok + self.rejected + self.failed

    def as_dict(self) -> dict[str, int]:
        """The counts, plus ``not_processed``: read but without an outcome (in flight at a stop)."""
        return {
            **dataclasses.asdict(self),
            "not_processed": max(0, self.read - self.done - self.skipped),
        }


class Ledger:
    """Books records' outcomes: counts, rejects and success files, checkpoints, logs, hooks.

    Runs on the event loop; nothing here blocks (checkpoints are committed by the state
    store's writer thread).

    Args:
        pm: The plugin manager, for the ``record_done`` hook.
        run_id: The run's id, passed to the hook.
        settings: The run settings (the failure-rate guard).
        rejects: The rejects file.
        successes: The success file, or None when it is off.
        state: The checkpoint store, or None when state is off (or a dry run has none).
        on_limit: Called with a reason when the failure-rate guard trips, or the state
            file can no longer be written: the run must stop.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        run_id: str,
        settings: RunSettings,
        *,
        rejects: RejectsWriter,
        successes: CsvFile | None,
        state: StateBackend | None,
        on_limit: Callable[[str], None],
    ) -> None:
        self.counts = RecordCounts()
        self.rejects = rejects
        self.successes = successes
        self.state = state
        self._pm = pm
        self._run_id = run_id
        self._settings = settings
        self._on_limit = on_limit
        self._log = get_logger()
        # The guards stop the run as a whole, whichever task booked the record that tripped them.
        self._run_log = get_logger(stage="run")
        self._hook_record_done = bool(pm.hook.record_done.get_hookimpls())
        self._committed = trio.lowlevel.ParkingLot()
        self._stopped = False

    def record(self, record: Record, result: Result) -> None:
        """Book one record's final outcome."""
        counts = self.counts
        outcome = result.outcome
        if outcome is Outcome.OK or outcome is Outcome.DRY_RUN:
            counts.ok += 1
        elif outcome is Outcome.SKIPPED:
            counts.skipped += 1
        elif outcome is Outcome.REJECTED:
            counts.rejected += 1
            self._write_reject(record, result)
            self._log.info(
                "record_rejected", line=record.line, stage=result.stage, plugin=result.plugin, reason=result.reason
            )
        else:
            counts.failed += 1
            self._write_reject(record, result)
            self._log.warning(
                "record_failed", key=record.key, line=record.line, stage=result.stage, status=result.status,
                reason=result.reason, attempts=result.attempts, retryable=result.retryable,
            )
        if result.attempts:  # sent in this run: checkpoint it, so a rerun knows
            self._checkpoint(record, result)
            if outcome is Outcome.OK and self.successes is not None:
                self.successes.write((record.key, record.line, result.status, result.attempts))
        if self._hook_record_done:
            self._pm.hook.record_done(
                run_id=self._run_id, line=record.line, key=record.key, outcome=outcome,
                status=result.status, attempts=result.attempts,
            )
        if outcome is not Outcome.SKIPPED:
            self._check_failure_rate()

    def _write_reject(self, record: Record, result: Result) -> None:
        self.rejects.write(
            line=record.line, key=record.key, stage=result.stage, plugin=result.plugin, reason=result.reason or "",
            raw=record.raw, status=result.status, detail=result.detail, attempts=result.attempts,
            retryable=result.retryable,
        )

    def _checkpoint(self, record: Record, result: Result) -> None:
        if self.state is None or record.key is None:
            return
        self.state.record(
            Checkpoint(
                record.key, content_hash(record.data), result.outcome, result.retryable, result.status,
                result.attempts, result.reason, record.line,
            )
        )

    def stop_for_rejections(self, first: int) -> None:
        """Stop the run: the first ``first`` records read were all rejected before sending."""
        if self._stopped:
            return
        self._stopped = True
        self._run_log.error("all_rejected", records=first)
        self._on_limit(
            f"the first {first} records were all rejected before sending (run.stop_if_first_rejected): the "
            "mapping or the validation does not fit the input; the rejects file says why"
        )

    def _check_failure_rate(self) -> None:
        limit = self._settings.max_failure_rate
        counts = self.counts
        if limit is None or self._stopped or counts.done < self._settings.min_records_for_failure_rate:
            return
        share = (counts.failed + counts.rejected) / counts.done
        if share > limit:
            self._stopped = True
            self._run_log.error("failure_rate_exceeded", share=round(share, 4), records=counts.done, max_failure_rate=limit)
            self._on_limit(
                f"{share:.0%} of the first {counts.done} records were rejected or failed "
                f"(run.max_failure_rate is {limit:.0%}): check the mapping and the credentials"
            )

    # -- group commit --------------------------------------------------------------

    def start_commits(self) -> None:
        """Start the state store's writer; wake :meth:`wait_for_commit` after each commit."""
        state = self.state
        if state is None:
            return
        token = trio.lowlevel.current_trio_token()

        def after_commit() -> None:  # runs in the writer thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._after_commit)

        state.on_commit = after_commit
        state.start()

    def _after_commit(self) -> None:
        self._committed.unpark_all()
        if self.state is not None and self.state.failed and not self._stopped:
            # Without checkpoints a crash would lose track of what was sent: stop now.
            self._stopped = True
            self._run_log.error("state_write_failed", path=self.state.path)
            self._on_limit("the state file could not be written; stopped to keep reruns safe")

    async def wait_for_commit(self) -> None:
        """Return once every checkpoint booked so far is committed to disk.

        A worker takes its next record only then (a group commit, shared by every
        worker), so a crash re-sends at most the records that were in flight.
        """
        state = self.state
        if state is not None:
            target = state.recorded
            while state.committed < target:
                await self._committed.park()

    def summary(self) -> dict[str, Any]:
        """The ``records`` section of progress snapshots and of the report."""
        return self.counts.as_dict()
