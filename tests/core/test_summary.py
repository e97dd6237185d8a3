"""The end-of-run summary, drawn from run reports into an 80-column console."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from etl_core._summary import next_steps, run_summary


def report(**changes: Any) -> dict[str, Any]:
    """A run report as a run writes it (see docs/logging.md), with ``changes``."""
    records = {"read": 300, "ok": 284, "rejected": 10, "failed": 6, "skipped": 0, "not_processed": 0}
    records.update(changes.pop("records", {}))
    files = {
        "report": "out/contacts/report.json",
        "rejects": "out/contacts/rejects.csv",
        "success": None,
        "state": "out/contacts/state.sqlite",
    }
    files.update(changes.pop("files", {}))
    base = {
        "dry_run": False,
        "duration_s": 12.34,
        "exit_code": 1,
        "interrupted_by": None,
        "aborted": None,
        "records": records,
        "rate_per_s": 23.0,
        "files": files,
    }
    return {**base, **changes}


def draw(data: dict[str, Any], *, resumes: bool = True) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(run_summary(data, resumes=resumes))
    return out.getvalue()


def test_a_run_with_bad_rows_says_what_happened_where_the_files_are_and_what_to_do():
    text = draw(report())
    assert "Finished in 12.3 s, 23.0 records delivered per second" in text
    for name, count in (("ok", "284"), ("rejected", "10"), ("failed", "6")):
        assert any(line.split()[:2] == [name, count] for line in text.splitlines()), name
    assert "out/contacts/report.json" in text and "out/contacts/rejects.csv" in text
    flat = " ".join(text.split())
    assert "fix the 10 rejected rows in the input (rejects.csv gives each line and reason) and rerun" in flat
    assert "6 failed" in flat and "--retry-rejected" in flat
    assert len(text.splitlines()) <= 20  # one screen


def test_a_clean_run_has_nothing_left_to_do():
    text = draw(report(exit_code=0, records={"ok": 300, "rejected": 0, "failed": 0}, files={"rejects": None}))
    assert "nothing left to do" in text and "rejects" not in text
    assert "skipped" not in text and "not sent" not in text  # only outcomes that happened, beyond the three


def test_only_the_rejected_rows_are_sent_again_when_checkpoints_skip_the_rest():
    steps = next_steps(report(records={"failed": 0}))
    assert steps == [
        "fix the 10 rejected rows in the input (rejects.csv gives each line and reason) "
        "and rerun: only they are sent again"
    ]
    assert "only they" not in next_steps(report(records={"failed": 0}, files={"state": None}))[0]
    assert "only they" not in next_steps(report(records={"failed": 0}), resumes=False)[0]


def test_an_interrupted_run_says_another_run_is_needed():
    data = report(interrupted_by="SIGINT", exit_code=130, records={"rejected": 0, "failed": 0, "not_processed": 40})
    text = draw(data)
    assert "Interrupted by SIGINT after 12.3 s" in text and "not sent" in text
    assert next_steps(data)[0] == (
        "another run is needed, this one was interrupted: rerun the same command; records already delivered are skipped"
    )
    sandbox = next_steps(data, resumes=False)[0]
    assert sandbox.endswith("it sends every record again (--sandbox runs always start afresh)")


def test_a_run_stopped_because_the_destination_is_down_says_to_rerun_once_it_is_back():
    data = report(aborted="the destination looks unavailable", exit_code=75, records={"rejected": 0, "failed": 0})
    assert "Stopped early after 12.3 s" in draw(data)
    assert next_steps(data)[0].startswith("another run is needed, this one stopped early: once the destination is back")


def test_a_long_run_shows_hours_minutes_and_seconds():
    assert "Finished in 1:02:05" in draw(report(duration_s=3725.2))


def test_a_dry_run_says_nothing_was_sent_and_how_to_send():
    data = report(dry_run=True, rate_per_s=None, files={"state": None})
    text = draw(data)
    assert "Dry run finished in 12.3 s: nothing was sent" in text and "valid" in text
    assert next_steps(data) == [
        "fix the 16 invalid rows in the input (rejects.csv gives each line and reason)",
        "run again without --dry-run to send",
    ]


def test_an_unwritten_report_is_said():
    assert "not written" in draw(report(files={"report": None}))


def test_batch_splits_are_counted_when_there_were_any():
    text = draw(report(requests={"attempts": 40, "batch_splits": 1234}))
    assert any(line.split()[:3] == ["batch", "splits", "1,234"] for line in text.splitlines())
    assert "batch splits" not in draw(report(requests={"attempts": 300, "batch_splits": 0}))
