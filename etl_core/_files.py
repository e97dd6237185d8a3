"""The files of one run: the output directory, rejects, successes, the state store.

Opened before a record is read, closed (in a thread) however the run ends, so that
every checkpoint and every rejected row written so far is on disk when the report is.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._errors import ConfigError, FatalError
from ._lease import RunLease, take_lease
from .logging import get_logger
from .report import CsvFile, RejectsWriter, success_file
from .state import StateError, StateStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import PipelineConfig


class RunFiles:
    """Where a run writes, and the files it has open.

    Args:
        config: The pipeline's configuration (``output``, ``state``, ``key``).
        run_id: The run's id, recorded with its checkpoints.
        output_dir: Write here instead of ``output.dir``.
        dry_run: A dry run keeps its report and rejects apart from the real runs' and
            reads their checkpoints (to show what a real run would skip), never writing one.
        fresh: Forget every checkpoint first.
    """

    def __init__(self, config: PipelineConfig, run_id: str, *, output_dir: str | None, dry_run: bool, fresh: bool) -> None:
        model = config.model
        self._config = config
        self._run_id = run_id
        self._dry_run = dry_run
        self._fresh = fresh
        base_dir = os.path.abspath(output_dir or model.output.dir)
        self.output_dir = os.path.join(base_dir, "dry-run") if dry_run else base_dir
        self.report_path = os.path.join(self.output_dir, model.output.report)
        self.state_path = os.path.join(base_dir, model.state.path)
        self._log = get_logger()
        # Set by open().
        self.rejects: RejectsWriter
        self.successes: CsvFile | None = None
        self.state: StateStore | None = None
        self._lease: RunLease | None = None

    def take_lease(self) -> None:
        """Create the output directory and take its lease, before anything else is done there.

        Raises:
            RunLockedError: Another run is using the output directory.
            ConfigError: The directory cannot be created or written.
        """
        try:
            os.makedirs(self.output_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output directory {self.output_dir}: {exc.strerror}", path="output.dir") from None
        if not os.access(self.output_dir, os.W_OK):
            raise ConfigError(f"the output directory {self.output_dir} is not writable", path="output.dir")
        self._lease = take_lease(self.output_dir, pipeline=self._config.model.pipeline, run_id=self._run_id)

    def open(self, fields: Callable[[], list[str]] | None) -> None:
        """Open the rejects, success and state files (once the lease is taken).

        Args:
            fields: Gives the source's field names: the rejects file's first columns.

        Raises:
            ConfigError: A file cannot be created or the state cannot be read.
        """
        output = self._config.model.output
        try:  # each removes a file left by an earlier run
            self.rejects = RejectsWriter(os.path.join(self.output_dir, output.rejects), columns=fields)
            self.successes = success_file(os.path.join(self.output_dir, output.success)) if output.success else None
        except FatalError as exc:
            raise ConfigError(str(exc), path="output.dir") from None
        self.state = self._open_state()

    def release_lease(self) -> None:
        """Let the next run of the pipeline start (once the report is written)."""
        if self._lease is not None:
            self._lease.release()

    def _open_state(self) -> StateStore | None:
        model = self._config.model
        if model.key is None or not model.state.enabled:
            return None
        if self._dry_run and (self._fresh or not os.path.exists(self.state_path)):
            # A dry run reads earlier checkpoints but never creates or forgets them; with
            # --fresh it shows what a fresh run would send: every record.
            return None
        try:
            state = StateStore(self.state_path, model.pipeline, self._run_id, read_only=self._dry_run)
        except StateError as exc:
            raise ConfigError(str(exc), path="state.path") from None
        if self._fresh and not self._dry_run:
            try:
                forgotten = state.forget()
            except StateError as exc:
                state.close()
                raise ConfigError(str(exc), path="state.path") from None
            self._log.info("state_reset", records=forgotten, path=self.state_path)
        elif state.has_history:
            self._log.info("resuming", path=self.state_path)
        return state

    def remembered_quota(self, destination: str) -> tuple[float, float] | None:
        """The quota (rate per second, burst) measured at ``destination`` by an earlier run.

        Raises:
            ConfigError: The state cannot be read.
        """
        if self.state is None:
            return None
        try:
            quota = self.state.quota(destination)
        except StateError as exc:
            raise ConfigError(str(exc), path="state.path") from None
        if quota is not None:
            self._log.info("quota_remembered", rate=round(quota[0], 2), burst=round(quota[1], 1), destination=destination)
        return quota

    def close(self, *, quota: tuple[float, float] | None, destination: str | None) -> FatalError | None:
        """Close every file, keeping ``quota`` (rate, burst) for ``destination`` (blocks: call in a thread).

        Returns:
            The first write error, if any (each is also logged).
        """
        errors: list[FatalError] = []
        outputs: list[RejectsWriter | CsvFile] = [self.rejects, *([self.successes] if self.successes else [])]
        for output in outputs:
            try:
                output.close()
            except FatalError as exc:  # e.g. a full disk: reported in the run report, never a traceback
                self._log.error("file_write_failed", path=output.path, reason=str(exc))
                errors.append(exc)
        state = self.state
        if state is not None:
            def remember_quota() -> None:
                if destination and quota is not None:
                    state.remember_quota(destination, *quota)

            # Closed even when the quota cannot be kept: close() commits the checkpoints.
            for step in (remember_quota, state.close):
                try:
                    step()
                except StateError as exc:
                    self._log.error("state_write_failed", path=self.state_path, reason=str(exc))
                    errors.append(exc)
        return errors[0] if errors else None
