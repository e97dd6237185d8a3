"""A live progress bar on stderr, drawn only when stderr is a terminal.

Log lines keep going to stdout, so piping or shipping the JSON logs is never disturbed.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressBar:
    """Rows done, share of the input read, rate, outcomes, ETA and any rate-limit pause.

    Args:
        console: Where to draw (a terminal).
        dry_run: Label the bar as a dry run.
    """

    def __init__(self, console: Console, *, dry_run: bool = False) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]}"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            auto_refresh=False,
            transient=False,
            # Log lines go to stdout untouched; only the bar is drawn on stderr.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task("dry run" if dry_run else "sending", total=None, rows="", status="")

    @classmethod
    def for_terminal(cls, *, dry_run: bool = False) -> ProgressBar | None:
        """Return a bar drawing on stderr, or None when stderr is not a terminal."""
        if not sys.stderr.isatty():
            return None
        return cls(Console(file=sys.stderr), dry_run=dry_run)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.refresh()
        self._progress.stop()

    def update(self, snapshot: dict[str, Any]) -> None:
        """Redraw from a run snapshot (see :meth:`etl_core.pipeline` ``snapshot()``)."""
        records = snapshot["records"]
        done = records["ok"] + records["rejected"] + records["failed"] + records["skipped"]
        elapsed = max(snapshot["elapsed_s"], 1e-9)
        rows = f"{done:,} rows  {done / elapsed:,.0f}/s"
        status = (
            f"[green]ok {records['ok']:,}[/] [yellow]rejected {records['rejected']:,}[/] "
            f"[red]failed {records['failed']:,}[/] retrying {snapshot['requests']['retries']:,}"
        )
        if records["skipped"]:
            status += f" skipped {records['skipped']:,}"
        if snapshot["outage_s"] > 0:
            status += f"  [bold red]destination down for {snapshot['outage_s']:.0f} s: probing[/]"
        elif snapshot["paused_s"] > 0:
            # A Retry-After of 1 s is mostly under a second left: whole seconds would read "0 s".
            status += f"  [bold magenta]paused: rate limited, {snapshot['paused_s']:.1f} s left[/]"
        progress = snapshot["progress"]
        self._progress.update(self._task, completed=progress["done"], total=progress["total"], rows=rows, status=status)
        self._progress.refresh()
