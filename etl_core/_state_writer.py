"""The group commit shared by the state stores: checkpoints queued by the event loop, committed by a thread.

The event loop never waits on the database: :meth:`CheckpointWriter.record` only queues.
A dedicated thread takes whatever has queued up since its last commit and writes it in
one transaction, then wakes the workers waiting for their
checkpoint. A worker takes its next record only once its last one is committed, so a
crash (even ``kill -9``) re-sends at most the records that were in flight.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .logging import redact

if TYPE_CHECKING:
    from .state import Checkpoint, StateError

#: Writes one group of rows in one transaction (in the writer thread).
WriteRows = Callable[[list[tuple[Any, ...]]], None]


class CheckpointWriter:
    """The queue and the writer thread of a state store; the store supplies the connection.

    Subclasses implement :meth:`_writer_session` (open the writer's connection and give
    the function that commits a group of rows) and :meth:`_failure`.

    Attributes:
        recorded: Checkpoints queued so far (by the event loop).
        committed: Checkpoints committed so far (by the writer). A failed writer sets it
            to infinity so nobody waits on it forever.
        written: Rows committed so far.
        on_commit: Called from the writer thread after each commit (e.g. to wake waiting tasks).
    """

    pipeline: str
    run_id: str
    #: The store's connection for reads (the writer thread has its own); closed by :meth:`close`.
    _read: Any

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Checkpoint | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._error: StateError | None = None
        self.written = 0
        self.recorded = 0
        self.committed: float = 0
        self.on_commit: Callable[[], None] | None = None

    def _writer_session(self) -> contextlib.AbstractContextManager[WriteRows]:
        """Open the writer thread's connection; yield what commits a group of rows."""
        raise NotImplementedError

    def _failure(self, doing: str, exc: BaseException) -> StateError:
        """The :class:`StateError` that says what could not be done, and why."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the writer thread."""
        self._writer = threading.Thread(target=self._write_loop, name="etl-state-writer", daemon=True)
        self._writer.start()

    def record(self, checkpoint: Checkpoint) -> None:
        """Queue one checkpoint; the writer thread commits it within milliseconds."""
        self.recorded += 1
        self._queue.put(checkpoint)

    def close(self) -> None:
        """Commit everything queued, stop the writer and close the store's connections. Blocks.

        Raises:
            StateError: A checkpoint could not be written, now or earlier.
        """
        self._stop_writer()
        self._read.close()
        if self._error is not None:
            raise self._error

    def _stop_writer(self) -> None:
        """Commit everything queued and stop the writer thread (blocks)."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    @property
    def failed(self) -> bool:
        """True once the writer has failed (the error is raised by the store's ``close``)."""
        return self._error is not None

    def _write_loop(self) -> None:
        stop = False
        try:
            with self._writer_session() as write:
                while not stop:
                    batch = [self._queue.get()]
                    # Everything that queued up while the last commit ran goes in one transaction.
                    while True:
                        try:
                            batch.append(self._queue.get_nowait())
                        except queue.Empty:
                            break
                    stop = batch[-1] is None
                    rows = self._rows(item for item in batch if item is not None)
                    if rows:
                        write(rows)
                        self.written += len(rows)
                        self.committed += len(rows)
                        self._notify()
        except BaseException as exc:  # noqa: BLE001 - reported by close(); the run must not hang on it
            self._error = self._failure("written", exc)
            self.committed = math.inf
            self._notify()
            # Drain until close() says stop, unless its marker was in the failed batch.
            while not stop:
                stop = self._queue.get() is None

    def _notify(self) -> None:
        if self.on_commit is not None:
            self.on_commit()

    def _rows(self, checkpoints: Iterable[Checkpoint]) -> list[tuple[Any, ...]]:
        """The ``records`` rows of ``checkpoints``, in the column order of both stores' upserts."""
        now, pipeline, run_id = time.time(), self.pipeline, self.run_id
        return [
            (pipeline, o.key, o.hash, o.outcome.value, o.retryable, o.status, o.attempts,
             redact(o.error) if o.error else o.error, o.line, run_id, now)
            for o in checkpoints
        ]


@contextlib.contextmanager
def closing_on_error(close: Callable[[], None]) -> Iterator[None]:
    """Call ``close`` if the block raises (a store half-opened must not leak its connection)."""
    try:
        yield
    except BaseException:
        close()
        raise
