"""The ``stage`` of a log line: which part of the pipeline decided what it reports.

Each task of a run binds the stage of the lines it logs: the run's own task ``run``,
the reader ``source``, the workers (and the sink's opening and closing) ``sink``. A line
about one record names the stage that decided it (``source``, ``transform``,
``pipeline`` or ``sink``) explicitly, whichever task books it.

An error that stops the run is logged by the run's task, far from where it was raised,
so the stage it escapes from marks it on its way out: ``run_aborted`` then names the
part that failed (an unreadable input is the source's, refused credentials the sink's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, TypeVar

import structlog

from ._outcome import Stage

#: A log line's stage: where a record was decided, or the run as a whole.
LogStage = Stage | Literal["run"]

#: The attribute under which an exception carries the stage it escaped from.
_MARK = "_etl_stage"
_T = TypeVar("_T")


def bind_stage(stage: LogStage) -> None:
    """Tag every line the current task (and the threads it starts) logs from now on with ``stage``."""
    structlog.contextvars.bind_contextvars(stage=stage)


@contextlib.contextmanager
def in_stage(stage: LogStage) -> Iterator[None]:
    """Tag the lines logged within with ``stage``, and mark errors escaping it as ``stage``'s."""
    with structlog.contextvars.bound_contextvars(stage=stage):
        try:
            yield
        except Exception as exc:
            mark_stage(exc, stage)
            raise


def staged(stage: LogStage, produce: Callable[[], Iterable[_T]]) -> Iterator[_T]:
    """Yield what ``produce()`` gives, marking an error raised on the way as ``stage``'s.

    For a stage that runs a step at a time inside another's loop (the source, read a
    batch at a time by the reader), without a ``try`` per item.
    """
    try:
        yield from produce()
    except Exception as exc:
        mark_stage(exc, stage)
        raise


def mark_stage(exc: BaseException, stage: LogStage) -> None:
    """Remember that ``exc`` escaped from ``stage``, unless an inner stage marked it first."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            mark_stage(inner, stage)
    elif not hasattr(exc, _MARK):
        with contextlib.suppress(AttributeError):  # an exception type without a __dict__
            setattr(exc, _MARK, stage)


def stage_of(exc: BaseException) -> LogStage:
    """The stage ``exc`` escaped from: ``run`` when none marked it (the run's own files, the core)."""
    stage: LogStage = getattr(exc, _MARK, "run")
    return stage
