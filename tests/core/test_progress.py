"""The progress bar's status line, drawn into a console that records it."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from etl_core.progress import ProgressBar


def snapshot(*, paused_s: float = 0.0, outage_s: float = 0.0) -> dict[str, Any]:
    return {
        "records": {"read": 30, "ok": 20, "rejected": 1, "failed": 2, "skipped": 0, "in_flight": 4},
        "requests": {"retries": 3},
        "paused_s": paused_s,
        "outage_s": outage_s,
        "progress": {"done": 30, "total": 100},
        "elapsed_s": 2.0,
    }


def draw(**state: float) -> str:
    out = io.StringIO()
    with ProgressBar(Console(file=out, width=200, force_terminal=True, color_system=None)) as bar:
        bar.update(snapshot(**state))
    return out.getvalue()


@pytest.mark.parametrize(
    ("state", "shown", "hidden"),
    [
        ({}, "ok 20", "paused"),
        ({"paused_s": 0.4}, "paused: rate limited, 0.4 s left", "destination down"),
        ({"outage_s": 12.4, "paused_s": 3.0}, "destination down for 12 s: probing", "paused"),
    ],
    ids=["sending", "paused", "outage"],
)
def test_the_status_says_whether_the_run_is_paused_or_the_destination_down(state, shown, hidden):
    text = draw(**state)
    assert shown in text and hidden not in text
    assert "23 rows" in text and "failed 2" in text
