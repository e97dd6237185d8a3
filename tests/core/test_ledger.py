"""The ledger: one record() books an outcome everywhere it belongs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from etl_core import Outcome, Record, hookimpl
from etl_core._ledger import Ledger
from etl_core._outcome import Result
from etl_core.config import RunSettings
from etl_core.registry import make_plugin_manager
from etl_core.report import RejectsWriter, success_file
from etl_core.state import StateStore


class Hooks:
    def __init__(self) -> None:
        self.done: list[tuple[str, Outcome, int]] = []

    @hookimpl
    def record_done(self, run_id, line, key, outcome, status, attempts):
        self.done.append((key, outcome, attempts))


@pytest.fixture
def books(tmp_path: Path):
    hooks = Hooks()
    state = StateStore(str(tmp_path / "state.db"), "p", "run-1")
    stops: list[str] = []
    ledger = Ledger(
        make_plugin_manager(extra_plugins=(hooks,)),
        "run-1",
        RunSettings(max_failure_rate=0.5, min_records_for_failure_rate=4),
        rejects=RejectsWriter(str(tmp_path / "rejects.csv")),
        successes=success_file(str(tmp_path / "ok.csv")),
        state=state,
        on_limit=stops.append,
    )
    yield ledger, hooks, stops
    ledger.rejects.close()
    assert ledger.successes is not None
    ledger.successes.close()
    state.close()


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_each_outcome_lands_where_it_belongs(books, tmp_path: Path) -> None:
    ledger, hooks, stops = books
    sent = Record({"id": "a"}, line=2, raw={"id": "a"}, key="a")
    refused = Record({"id": "b"}, line=3, raw={"id": "b"}, key="b")
    invalid = Record({}, line=4, raw={"id": "?"})
    with capture_logs() as logs:
        ledger.record(sent, Result(Outcome.OK, "sink", "cxone", status=200, attempts=1))
        ledger.record(refused, Result(Outcome.FAILED, "sink", "cxone", status=404, attempts=1, reason="HTTP 404"))
        ledger.record(invalid, Result(Outcome.REJECTED, "transform", "validate", reason="id: not a uuid"))
    assert ledger.summary() == {"read": 0, "ok": 1, "rejected": 1, "failed": 1, "skipped": 0, "not_processed": 0}
    ledger.rejects.flush()
    assert [(r["_key"], r["_stage"], r["_plugin"], r["_status"]) for r in rows(tmp_path / "rejects.csv")] == [
        ("b", "sink", "cxone", "404"),
        ("", "transform", "validate", ""),
    ]
    assert ledger.successes is not None
    ledger.successes.flush()
    assert [r["key"] for r in rows(tmp_path / "ok.csv")] == ["a"]
    # The two sent records are checkpointed; the rejected one never reached the sink.
    assert ledger.state is not None and ledger.state.recorded == 2
    assert hooks.done == [("a", Outcome.OK, 1), ("b", Outcome.FAILED, 1), (None, Outcome.REJECTED, 0)]
    assert [(e["event"], e["stage"]) for e in logs] == [("record_failed", "sink"), ("record_rejected", "transform")]
    assert stops == []


def test_the_failure_rate_guard_stops_the_run_once(books) -> None:
    ledger, _, stops = books
    for line in range(10):
        ledger.record(Record({}, line=line), Result(Outcome.REJECTED, "transform", "validate", reason="bad"))
    assert len(stops) == 1 and "run.max_failure_rate is 50%" in stops[0]
