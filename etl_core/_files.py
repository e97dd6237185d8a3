"""The files of one run: the output directory, rejects, successes, the state store.

Opened before a record is read, closed (in a thread) however the run ends, so that
every checkpoint and every rejected row written so far is on disk when the report is.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._errors import ConfigError, FatalError
from ._lease import RunLease, take_lease
from ._shard import Shard, forget_shard
from ._state_store import Lease, StateBackend, open_state
from .logging import get_logger
from .report import CsvFile, RejectsWriter, success_file
from .state import StateError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._quota_board import QuotaBoard
    from .config import PipelineConfig


class RunFiles:
    """Where a run writes, and the files it has open.

    Args:
        config: The pipeline's configuration (``output``, ``state``, ``key``).
        run_id: The run's id, recorded with its checkpoints.
        output_dir: Write here instead of ``output.dir``.
        dry_run: A dry run keeps its report and rejects apart from the real runs' and
            reads their checkpoints (to show what a real run would skip), never writing one.
        fresh: Forget every checkpoint first (a shard: every checkpoint of its keys).
        shard: A shard's run: its own lease, report, rejects and success files (their
            names end in ``-shard-K-of-N``), and one state shared with the other shards.
    """

    def __init__(
        self, config: PipelineConfig, run_id: str, *, output_dir: str | None, dry_run: bool, fresh: bool, shard: Shard | None = None
    ) -> None:
        model = config.model
        self._config = config
        self._run_id = run_id
        self._dry_run = dry_run
        self._fresh = fresh
        self._shard = shard
        base_dir = os.path.abspath(output_dir or model.output.dir)
        self.output_dir = os.path.join(base_dir, "dry-run") if dry_run else base_dir
        self.report_path = os.path.join(self.output_dir, self._own(model.output.report))
        self.state_path = os.path.join(base_dir, model.state.path)
        # A run given its own directory (the sandbox's) keeps its state there, never in the shared database.
        self._state_url = model.state.url.get_secret_value() if model.state.url and output_dir is None else None
        self._log = get_logger()
        # Set by open().
        self.rejects: RejectsWriter
        self.successes: CsvFile | None = None
        self.state: StateBackend | None = None
        self._board: QuotaBoard | None = None
        self._lease: RunLease | None = None
        self._state_lease: Lease | None = None

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
        self._lease = take_lease(self.output_dir, pipeline=self._config.model.pipeline, run_id=self._run_id, shard=self._shard)

    def open(self, fields: Callable[[], list[str]] | None) -> None:
        """Open the rejects, success and state files (once the lease is taken).

        Args:
            fields: Gives the source's field names: the rejects file's first columns.

        Raises:
            ConfigError: A file cannot be created or the state cannot be read.
        """
        output = self._config.model.output
        try:  # each removes a file left by an earlier run
            self.rejects = RejectsWriter(os.path.join(self.output_dir, self._own(output.rejects)), columns=fields)
            self.successes = success_file(os.path.join(self.output_dir, self._own(output.success))) if output.success else None
        except FatalError as exc:
            raise ConfigError(str(exc), path="output.dir") from None
        self.state = self._open_state()

    def _own(self, name: str) -> str:
        """The name of one of the run's files: a shard's own (``report-shard-1-of-4.json``)."""
        return name if self._shard is None else self._shard.file_name(name)

    def release_lease(self) -> None:
        """Let the next run of the pipeline start (once the report is written)."""
        if self._state_lease is not None:
            self._state_lease.release()
        if self._lease is not None:
            self._lease.release()

    def _open_state(self) -> StateBackend | None:
        model = self._config.model
        if model.key is None or not model.state.enabled:
            return None
        if self._dry_run and (self._fresh or (self._state_url is None and not os.path.exists(self.state_path))):
            # A dry run reads earlier checkpoints but never creates or forgets them; with
            # --fresh it shows what a fresh run would send: every record.
            return None
        try:
            state = open_state(self._state_url, self.state_path, model.pipeline, self._run_id, read_only=self._dry_run)
        except StateError as exc:
            raise ConfigError(str(exc), path="state.url" if self._state_url else "state.path") from None
        if not self._dry_run:
            # The state may be shared beyond this output directory (a database): one run of the pipeline at a time.
            shard = self._shard
            try:
                self._state_lease = state.take_lease(None if shard is None else f"shard-{shard.index}-of-{shard.count}")
            except BaseException as exc:
                state.close()
                if isinstance(exc, StateError):
                    raise ConfigError(str(exc), path="state.url" if self._state_url else "state.path") from None
                raise
        if self._fresh and not self._dry_run:
            try:
                forgotten = state.forget() if self._shard is None else forget_shard(state, self._shard)
            except StateError as exc:
                state.close()
                raise ConfigError(str(exc), path="state.url" if self._state_url else "state.path") from None
            self._log.info("state_reset", records=forgotten, path=state.path)
        elif state.has_history:
            self._log.info("resuming", path=state.path)
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

    def quota_board(self) -> QuotaBoard | None:
        """Open the state's board for a quota shared by shards (closed with the files); None without a state.

        Raises:
            ConfigError: The state cannot be written.
        """
        if self.state is None:
            return None
        try:
            self._board = self.state.quota_board()
        except StateError as exc:
            raise ConfigError(str(exc), path="state") from None
        return self._board

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
        if self._board is not None:
            self._board.close()
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
                    self._log.error("state_write_failed", path=state.path, reason=str(exc))
                    errors.append(exc)
        return errors[0] if errors else None
