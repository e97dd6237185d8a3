"""Hook specifications: the contract between the core and every plugin.

A plugin is a module (or object) with functions decorated by :data:`hookimpl`
whose names match the specs below. Every hook is optional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from ._commands import CommandLine
    from ._outcome import Outcome
    from .base import Sink, Source, Transform

#: The project name that ties pluggy's markers and the entry-point group together.
PROJECT_NAME = "etl"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_sources() -> list[type[Source]]:  # type: ignore[empty-body]
    """Return the source classes this plugin provides."""


@hookspec
def register_transforms() -> list[type[Transform]]:  # type: ignore[empty-body]
    """Return the transform classes this plugin provides."""


@hookspec
def register_sinks() -> list[type[Sink]]:  # type: ignore[empty-body]
    """Return the sink classes this plugin provides."""


@hookspec
def register_commands(cli: CommandLine) -> None:
    """Add commands to ``etl`` (``cli.add_command``), sandboxes to ``etl sandbox``
    (``cli.add_sandbox``) or options to an existing command (``cli.command("run")``).

    Called once by the ``etl`` command, before it parses its arguments. A new command
    sets ``parser.set_defaults(handler=function)``; ``function(args)`` gets the parsed
    arguments and returns the exit code. Return value ignored.
    """


@hookspec
def command_started(command: str, options: argparse.Namespace) -> None:
    """Called once by the ``etl`` command after it parsed its arguments, before it runs.

    ``command`` is the command's name (``run``, ``validate``, ``sandbox``...); ``options``
    holds every parsed argument, including the options plugins added with
    ``register_commands`` (absent ones have their default). A run started from Python
    has no command line: this hook is not called. Return value ignored.
    """


@hookspec
def run_started(run_id: str, pipeline: str, config: dict[str, Any]) -> None:
    """Called once before the first record is read.

    ``config`` is the validated configuration with secrets masked. Return value ignored.
    """


@hookspec
def record_done(run_id: str, line: int, key: str | None, outcome: Outcome, status: int | None, attempts: int) -> None:
    """Called once per record when its outcome is final.

    ``outcome`` is an :class:`Outcome`, a ``str`` enum: ``ok``, ``rejected``, ``failed``,
    ``skipped`` or ``dry_run``.
    Runs on the event loop: keep it fast and never block. Return value ignored.
    """


@hookspec
def run_progress(run_id: str, snapshot: dict[str, Any]) -> None:
    """Called about once a second during a run with a snapshot of its statistics.

    ``snapshot`` holds ``records`` (read/ok/rejected/failed/skipped/in_flight),
    ``requests`` (attempts, retries, throttled, by_status), ``retry_budget`` (balance,
    capacity), ``rate_limit_per_s`` (None when unlimited), ``paused_s`` (seconds left
    in a shared pause), ``paused_total_s`` and ``progress`` (source done/total units).
    Runs on the event loop: keep it fast. Return value ignored.
    """


@hookspec
def run_finished(run_id: str, report: dict[str, Any]) -> None:
    """Called once after the run, with the run report (as written to ``report.json``)."""
