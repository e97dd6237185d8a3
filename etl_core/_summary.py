"""The end-of-run summary `etl run` prints on a terminal, under its progress bar.

One screen for a person, built from the run report: what happened to the records, how
long it took, where the files are and what to do next. It is drawn only where the
progress bar is (stderr is a terminal, no ``--no-progress``), so logs stay machine-readable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

#: The exit code of a run stopped because the destination looks unavailable.
_EXIT_UNAVAILABLE = 75


def run_summary(report: Mapping[str, Any], *, resumes: bool = True) -> RenderableType:
    """Return the summary of a finished run.

    Args:
        report: The run report (see :func:`etl_core.report.run_report`).
        resumes: Whether running the same command again resumes (False for ``--sandbox``
            runs, which always start afresh).

    Returns:
        Something to print on a rich console.
    """
    records = report["records"]
    outcomes = Table.grid(padding=(0, 2))
    outcomes.add_column(no_wrap=True)
    outcomes.add_column(justify="right", no_wrap=True)
    outcomes.add_column()
    dry_run = report["dry_run"]
    rows = [
        ("valid" if dry_run else "ok", records["ok"], "green", "would be sent" if dry_run else "delivered"),
        ("rejected", records["rejected"], "yellow", "refused before sending (invalid data)"),
        ("failed", records["failed"], "red", "not valid for the sink" if dry_run else "refused by the destination or given up"),
        ("skipped", records["skipped"], "", "delivered by an earlier run and unchanged"),
        ("not sent", records["not_processed"], "red", "read but not sent: the run stopped first"),
    ]
    for name, count, style, meaning in rows:
        if count or name in ("ok", "valid", "rejected", "failed"):
            outcomes.add_row(Text(name, style=style), f"{count:,}", Text(meaning, style="dim"))
    if splits := report.get("requests", {}).get("batch_splits"):
        outcomes.add_row("batch splits", f"{splits:,}", Text("batches refused as a whole, sent again in halves", style="dim"))
    files = Table.grid(padding=(0, 2))
    files.add_column(no_wrap=True)
    files.add_column(overflow="fold")
    paths = report["files"]
    for name in ("report", "rejects", "success"):
        if paths.get(name):
            files.add_row(name, Text(paths[name]))
    if paths.get("report") is None:
        files.add_row("report", Text("not written (see the error above)", style="red"))
    steps = Table.grid(padding=(0, 1))
    steps.add_column(no_wrap=True)
    steps.add_column()
    for step in next_steps(report, resumes=resumes):
        steps.add_row("-", Text(step))
    return Group(_headline(report), outcomes, *_shards(report), files, Text("Next:", style="bold"), steps)


def _shards(report: Mapping[str, Any]) -> list[RenderableType]:
    """What each shard did (``run.processes``), or which shard this run was (``--shard``)."""
    if report.get("shard"):
        shard = report["shard"]
        others = f"{shard['other_shards']:,} rows read belong to the other shards (not counted above)"
        return [Text(f"shard {shard['index']}/{shard['count']}: {others}", style="dim")]
    table = Table.grid(padding=(0, 2))
    for _ in range(3):
        table.add_column(no_wrap=True)
    for shard in report.get("shards") or ():
        records = shard["records"]
        done = (
            f"ok {records['ok']:,}, rejected {records['rejected']:,}, failed {records['failed']:,}, skipped {records['skipped']:,}"
            if records else "no report: it was killed or crashed"
        )
        table.add_row(f"shard {shard['shard']}", f"exit code {shard['exit_code']}", Text(done, style="" if records else "red"))
    return [table] if report.get("shards") else []


def _headline(report: Mapping[str, Any]) -> Text:
    """What became of the run, how long it took and how fast it went."""
    took = _duration(report["duration_s"])
    if report["interrupted_by"]:
        headline = Text(f"Interrupted by {report['interrupted_by']} after {took}", style="bold yellow")
    elif report["aborted"]:
        headline = Text(f"Stopped early after {took} (the reason is above)", style="bold red")
    elif report["dry_run"]:
        headline = Text(f"Dry run finished in {took}: nothing was sent", style="bold")
    else:
        headline = Text(f"Finished in {took}", style="bold green" if report["exit_code"] == 0 else "bold yellow")
    if report["rate_per_s"] and not report["dry_run"]:
        headline.append(f", {report['rate_per_s']:,.1f} records delivered per second")
    return headline


def next_steps(report: Mapping[str, Any], *, resumes: bool = True) -> list[str]:
    """Say what to do after this run, most urgent first.

    Args:
        report: The run report.
        resumes: Whether running the same command again resumes.

    Returns:
        One sentence per step; a single "nothing left to do" when every record got through.
    """
    records, files = report["records"], report["files"]
    # Its path is listed above the steps: its name is enough here.
    rejects = os.path.basename(files["rejects"]) if files.get("rejects") else "the rejects file"
    # A rerun skips what was delivered only with checkpoints (state) and without --sandbox.
    skips = resumes and files.get("state") is not None
    if skips:
        rerun = "rerun the same command; records already delivered are skipped"
    else:
        why = "--sandbox runs always start afresh" if not resumes else "state is off"
        rerun = f"rerun the same command; it sends every record again ({why})"
    steps: list[str] = []
    if report["interrupted_by"]:
        steps.append(f"another run is needed, this one was interrupted: {rerun}")
    elif report["aborted"]:
        when = "once the destination is back" if report["exit_code"] == _EXIT_UNAVAILABLE else "once the cause above is fixed"
        steps.append(f"another run is needed, this one stopped early: {when}, {rerun}")
    if report["dry_run"]:
        invalid = records["rejected"] + records["failed"]
        if invalid:
            steps.append(f"fix the {invalid:,} invalid rows in the input ({rejects} gives each line and reason)")
        steps.append("run again without --dry-run to send")
        return steps
    if records["rejected"]:
        only = ": only they are sent again" if skips and not records["failed"] else ""
        steps.append(
            f"fix the {records['rejected']:,} rejected rows in the input ({rejects} gives each line and reason) and rerun{only}"
        )
    if records["failed"]:
        steps.append(
            f"{records['failed']:,} failed ({rejects} says why): those that failed for now (_retryable = yes) are sent "
            "again by a rerun; fix the others in the input first, or rerun with --retry-rejected"
        )
    if not steps:
        steps.append("nothing left to do: every record got through")
    return steps


def _duration(seconds: float) -> str:
    """``12.3 s`` under a minute, ``h:mm:ss`` above."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
