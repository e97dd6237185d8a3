"""run.processes: the worst shard's exit code, and the shards' reports added up."""

from __future__ import annotations

import pytest

from etl_core._processes import WORST_FIRST, _add, worst_exit_code


@pytest.mark.parametrize(
    ("codes", "worst"),
    [([0, 0], 0), ([0, 1], 1), ([75, 1], 1), ([0, 75], 75), ([1, 130], 130), ([130, 143], 143), ([143, 73], 73),
     ([73, 2, 0], 2), ([0, -9], 1), ([0, 75, -15], 1), ([0, 99], 1), ([], 0)],
)
def test_worst_exit_code(codes, worst):
    assert worst_exit_code(codes) == worst


def test_every_documented_code_is_ordered():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    documented = {int(line.split("`")[1]) for line in text.splitlines() if line.startswith("| `")}
    assert documented == set(WORST_FIRST)


def test_reports_add_up_key_by_key():
    first = {"attempts": 3, "by_status": {"200": 2, "429": 1}, "rate_limit_per_s": None, "paused_s": 0.5}
    second = {"attempts": 4, "by_status": {"200": 4}, "rate_limit_per_s": 10.0, "paused_s": 0.25}
    assert _add([first, second]) == {"attempts": 7, "by_status": {"200": 6, "429": 1}, "rate_limit_per_s": 10.0, "paused_s": 0.75}
