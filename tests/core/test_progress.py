"""The progress bar, drawn into a console of a fixed width, and the count behind its total."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from rich.console import Console
from structlog.testing import capture_logs

from etl_core import hookimpl
from etl_core.progress import InputCount, ProgressBar
from etl_core.testing import ListSource, RecordingSink, plugin_of, run_pipeline_from_dict


def snapshot(
    *,
    ok: int = 20,
    rejected: int = 1,
    failed: int = 2,
    skipped: int = 0,
    read: int = 30,
    total: int | None = 100,
    end_of_input: bool = False,
    bytes_done: int = 30,
    bytes_total: int | None = 100,
    in_flight: int = 4,
    retrying: int = 0,
    retries: int = 3,
    paused_s: float = 0.0,
    outage_s: float = 0.0,
    elapsed_s: float = 2.0,
) -> dict[str, Any]:
    return {
        "records": {
            "read": read,
            "ok": ok,
            "rejected": rejected,
            "failed": failed,
            "skipped": skipped,
            "in_flight": in_flight,
            "retrying": retrying,
            "total": total,
        },
        "requests": {"retries": retries},
        "paused_s": paused_s,
        "outage_s": outage_s,
        "progress": {"done": bytes_done, "total": bytes_total, "end_of_input": end_of_input},
        "elapsed_s": elapsed_s,
    }


def draw(*snapshots: dict[str, Any], width: int = 200, dry_run: bool = False) -> str:
    """The last frame as drawn, in plain text (a console that is not a terminal draws it once, at the end)."""
    out = io.StringIO()
    with ProgressBar(Console(file=out, width=width, color_system=None), dry_run=dry_run) as bar:
        for state in snapshots:
            bar.update(state)
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
    text = draw(snapshot(**state))
    assert shown in text and hidden not in text
    assert "23/100 rows" in text and "failed 2" in text


def test_the_percentage_counts_records_finished_not_bytes_read():
    # The whole file is read, 880 of its 1,000 rows are finished: 88 %, not 100 %.
    text = draw(snapshot(ok=860, rejected=10, failed=5, skipped=5, read=1000, total=1000, bytes_done=5000, bytes_total=5000))
    assert " 88%" in text and "880/1,000 rows" in text
    assert "100%" not in text


def test_never_100_percent_while_the_input_may_hold_more_records():
    # The source's count said 100 and 100 are finished, but the input is not all read yet.
    text = draw(snapshot(ok=100, rejected=0, failed=0, read=100, total=100))
    assert " 99%" in text and "100%" not in text
    done = draw(snapshot(ok=100, rejected=0, failed=0, read=100, total=100, end_of_input=True))
    assert "100%" in done and "ETA 0:00:00" in done


def test_more_records_read_than_counted_raise_the_total():
    text = draw(snapshot(ok=50, rejected=0, failed=0, read=150, total=120))
    assert "50/150 rows" in text and " 33%" in text


def test_until_the_total_is_known_only_the_share_of_the_input_read_is_shown():
    text = draw(snapshot(total=None, bytes_done=45, bytes_total=100))
    assert "input 45% read" in text and "23 rows" in text and "ETA -:--:--" in text
    assert not re.search(r"\d% +[\d,]+/", text)  # no share of records
    unknown_size = draw(snapshot(total=None, bytes_total=None))
    assert "input being read" in unknown_size


def test_the_eta_comes_from_the_recent_rate_of_records_finished():
    # 100 finished in the first 10 s, then 100 more in 10 s: 10 records a second, 800 left.
    text = draw(
        snapshot(ok=100, rejected=0, failed=0, read=1000, total=1000, elapsed_s=10.0),
        snapshot(ok=200, rejected=0, failed=0, read=1000, total=1000, elapsed_s=20.0),
    )
    assert "10/s" in text and "elapsed 0:00:20" in text and "ETA 0:01:20" in text


def test_a_stalled_run_has_no_eta():
    text = draw(snapshot(ok=0, rejected=0, failed=0, total=1000, elapsed_s=5.0))
    assert "ETA -:--:--" in text


def test_retrying_is_the_records_waiting_for_a_retry_now_not_the_retries_so_far():
    text = draw(snapshot(in_flight=12, retrying=3, retries=57))
    assert "in flight 12" in text and "retrying 3" in text and "57" not in text


@pytest.mark.parametrize("width", [80, 120])
def test_eta_and_elapsed_stay_visible_on_a_narrow_terminal(width):
    state = snapshot(
        ok=4_200_000,
        rejected=12_345,
        failed=6_789,
        skipped=1_000_000,
        read=6_000_000,
        total=10_000_000,
        in_flight=256,
        retrying=31,
        paused_s=0.4,
        elapsed_s=3725.0,
    )
    text = draw(state, width=width)
    assert len(text.splitlines()) == 1  # one line: log lines printed between two drawings stay
    assert len(text.rstrip("\n")) <= width
    assert "52%" in text and "elapsed 1:02:05" in text and "ETA 0:56:53" in text
    assert "paused: rate limited, 0.4 s left" in text  # what is happening now stays too
    assert "in flight" not in text  # lower-priority parts made room
    if width == 120:
        assert "5,219,134/10,000,000 rows" in text and "ok 4,200,000" in text
    calm = draw(snapshot(ok=4_100, rejected=50, failed=50, read=5_000, total=10_000, elapsed_s=12.0), width=width)
    assert "42%  4,200/10,000 rows  ok 4,100" in calm and "failed 50" in calm and "ETA 0:00:17" in calm


def test_a_very_narrow_terminal_still_gets_the_most_important_parts():
    text = draw(snapshot(), width=20)
    assert all(len(line) <= 20 for line in text.splitlines())
    assert " 23%" in text and "ETA 0:00:07" in text
    cut = draw(snapshot(), width=3)  # not even room for the percentage alone: it is cut
    assert cut.rstrip("\n") == " 2…"


def test_a_dry_run_is_labelled():
    assert "dry run" in draw(snapshot(), dry_run=True)
    assert "sending" in draw(snapshot())


class CountedSource(ListSource):
    """A list source that counts its records as a file source would (or fails to)."""

    name = "counted_list"
    extra = 0
    error: Exception | None = None

    def count(self, time_limit: float) -> int | None:
        if CountedSource.error is not None:
            raise CountedSource.error
        return len(self.options.items) + CountedSource.extra


async def test_the_count_runs_in_a_thread_and_the_records_read_replace_it():
    source = CountedSource(CountedSource.Options(items=[{"id": "1"}, {"id": "2"}]))
    count = InputCount(source)
    assert count.total(read=0, all_read=False) is None  # not counted yet
    await count.run()
    assert count.total(read=1, all_read=False) == 2
    assert count.total(read=3, all_read=False) == 3  # the count was too low
    assert count.total(read=2, all_read=True) == 2


async def test_a_failing_count_leaves_the_total_unknown(monkeypatch):
    monkeypatch.setattr(CountedSource, "error", OSError("disk on fire"))
    count = InputCount(CountedSource(CountedSource.Options(items=[{"id": "1"}])))
    with capture_logs() as logs:
        await count.run()
    assert count.total(read=1, all_read=False) is None
    assert [(log["event"], log["reason"]) for log in logs] == [("input_count_failed", "OSError: disk on fire")]


async def test_a_run_reports_records_in_flight_retrying_and_the_total(tmp_path, monkeypatch):
    monkeypatch.setattr(CountedSource, "extra", 5)  # a count that is a little too high, as a CSV's may be
    snapshots: list[dict[str, Any]] = []

    class Watcher:
        @hookimpl
        def run_progress(self, run_id: str, snapshot: dict[str, Any]) -> None:
            snapshots.append(snapshot)

    items = [{"id": str(i)} for i in range(40)]
    result = await run_pipeline_from_dict(
        {"pipeline": "p", "key": "id", "source": {"type": "counted_list", "items": items}, "run": {"workers": 4}},
        plugins=[plugin_of(CountedSource), Watcher()],
        tmp_dir=tmp_path,
        sink=RecordingSink(RecordingSink.Options(delay=0.05)),
    )
    assert result.exit_code == 0
    last = snapshots[-1]
    assert last["records"]["total"] == 40 and last["progress"]["end_of_input"]  # the records read, exactly
    assert (last["records"]["in_flight"], last["records"]["retrying"]) == (0, 0)
    for state in snapshots:
        records = state["records"]
        finished = records["ok"] + records["rejected"] + records["failed"] + records["skipped"]
        shown = re.search(r"(\d+)% +([\d,]+)/([\d,]+) rows", draw(state))
        if shown is not None:
            assert int(shown[1]) < 100 or finished == 40
