"""Every line of a run names the stage that decided what it reports (etl_core._log_stage).

Real runs: the csv source on real files, the map and validate transforms, the cxone
sink against the bundled sandbox (in this test's Trio loop, on 127.0.0.1) or in a dry
run, and the jsonl sink from the real command line.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from etl_core import FatalError
from etl_core._log_stage import in_stage, mark_stage, stage_of, staged
from etl_core.config import load_config
from etl_core.logging import configure_logging
from etl_core.pipeline import RunOptions, RunResult, run_pipeline
from etl_core.registry import Registry, make_plugin_manager
from etl_cxone.sandbox import SandboxSettings, contact_id, open_sandbox
from tests.conftest import pipeline_config, run_etl

#: A contact the sandbox does not hold: answered 404.
UNKNOWN_CONTACT = "00000000-0000-4000-8000-000000000000"
RUN_EVENTS = {"run_started", "run_finished"}
STAGES = {"source", "transform", "pipeline", "sink", "run"}


def sandbox_sink(url: str, *, client_secret: str = "sandbox-secret") -> dict[str, str]:
    return {
        "base_url": url,
        "token_url": url + "/oauth/token",
        "client_id": "sandbox-client",
        "client_secret": client_secret,
        "path_template": "/api/v2/contacts/{contactId}",
    }


def dry_run_sink() -> dict[str, str]:
    return sandbox_sink("https://api.example.com")


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["contact_id", "email"], *rows])
    return path


async def run_logged(tmp_path: Path, config_text: str, *, dry_run: bool = False) -> tuple[RunResult, list[dict[str, Any]]]:
    """Run a pipeline in this process with JSON logs; return its result and its log lines."""
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    path = tmp_path / "pipeline.yaml"
    path.write_text(config_text, encoding="utf-8")
    pm = make_plugin_manager()
    config = load_config(str(path), Registry(pm), env={})
    result = await run_pipeline(config, pm, RunOptions(dry_run=dry_run, handle_signals=False))
    return result, [json.loads(line) for line in stream.getvalue().splitlines()]


def stages(lines: list[dict[str, Any]], event: str) -> list[str]:
    return [line["stage"] for line in lines if line["event"] == event]


def assert_every_line_has_a_stage_and_a_message(lines: list[dict[str, Any]]) -> None:
    for line in lines:
        assert line["stage"] in STAGES, line
        assert line["message"] and line["message"] != line["event"].replace("_", " "), line
    assert {line["stage"] for line in lines if line["event"] in RUN_EVENTS} == {"run"}


def config_for(tmp_path: Path, csv_path: Path, sink_options: dict[str, str], *, validate: bool = True, run_extra: str = "") -> str:
    return pipeline_config(
        name="stages",
        csv=csv_path,
        out=tmp_path / "out",
        fields={"contactId": "{from: contact_id}", "email": "{from: email}"},
        validate={"contactId": "[required, uuid]", "email": "[email]"} if validate else None,
        sink_options={name: json.dumps(value) for name, value in sink_options.items()},
        workers=2,
        run_extra=run_extra,
    )


# -- records: each line names the stage that decided the record ------------------------


async def test_source_transform_and_sink_decisions_each_name_their_stage(tmp_path):
    rows = [
        [contact_id(1), "ann@example.com"],
        [contact_id(2), "not an address"],  # refused by validate
        [contact_id(3), "bob@example.com", "a third field"],  # refused by the csv source
        [UNKNOWN_CONTACT, "cy@example.com"],  # refused by the destination: 404
    ]
    csv_path = write_csv(tmp_path / "contacts.csv", rows)
    async with open_sandbox(SandboxSettings(port=0, seed_count=10)) as sandbox:
        result, lines = await run_logged(tmp_path, config_for(tmp_path, csv_path, sandbox_sink(sandbox.url)))
    assert result.exit_code == 1
    rejected = {line["line"]: line for line in lines if line["event"] == "record_rejected"}
    assert (rejected[3]["stage"], rejected[3]["plugin"]) == ("transform", "validate")
    assert (rejected[4]["stage"], rejected[4]["plugin"]) == ("source", "csv")
    (failed,) = [line for line in lines if line["event"] == "record_failed"]
    assert (failed["stage"], failed["line"], failed["status"]) == ("sink", 5, 404)
    assert_every_line_has_a_stage_and_a_message(lines)


async def test_a_dry_run_names_the_sink_for_the_record_it_cannot_describe(tmp_path):
    csv_path = write_csv(tmp_path / "contacts.csv", [[contact_id(1), "ann@example.com"], ["not-a-uuid", "bob@example.com"]])
    config = config_for(tmp_path, csv_path, dry_run_sink(), validate=False)
    result, lines = await run_logged(tmp_path, config, dry_run=True)
    assert result.exit_code == 1 and result.report["dry_run"] is True
    (failed,) = [line for line in lines if line["event"] == "record_failed"]
    assert (failed["stage"], failed["line"], failed["reason"]) == ("sink", 3, "contactId: not a valid uuid")
    assert stages(lines, "dry_run_request") == ["sink"]
    assert_every_line_has_a_stage_and_a_message(lines)


async def test_a_run_stopped_by_its_guard_says_so_as_the_run(tmp_path):
    csv_path = write_csv(tmp_path / "contacts.csv", [[contact_id(i), "not an address"] for i in range(20)])
    config = config_for(tmp_path, csv_path, dry_run_sink(), run_extra="stop_if_first_rejected: 5")
    result, lines = await run_logged(tmp_path, config, dry_run=True)
    assert result.exit_code == 1
    assert stages(lines, "all_rejected") == ["run"]
    assert set(stages(lines, "record_rejected")) == {"transform"}
    assert_every_line_has_a_stage_and_a_message(lines)


# -- a run that stops: run_aborted names the part that failed -------------------------


async def test_an_input_that_turns_unreadable_mid_run_is_the_sources_failure(tmp_path):
    # UTF-16 text that ends in a lone surrogate, after more rows than the input check reads.
    rows = [[contact_id(i), f"user{i}@example.com"] for i in range(3000)]
    text = "\n".join(",".join(row) for row in [["contact_id", "email"], *rows]) + "\n"
    csv_path = tmp_path / "contacts.csv"
    csv_path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le") + b"\x00\xd8" + "x,y\n".encode("utf-16-le"))
    config = config_for(tmp_path, csv_path, dry_run_sink()).replace(
        f"  path: {json.dumps(str(csv_path))}\n", f"  path: {json.dumps(str(csv_path))}\n  encoding: utf-16\n"
    )
    result, lines = await run_logged(tmp_path, config, dry_run=True)
    assert "not valid utf-16 on line 3002" in result.report["aborted"]
    (aborted,) = [line for line in lines if line["event"] == "run_aborted"]
    assert aborted["stage"] == "source"
    assert aborted["message"] == f"run aborted: {aborted['reason']}"
    assert_every_line_has_a_stage_and_a_message(lines)


async def test_refused_credentials_are_the_sinks_failure(tmp_path):
    csv_path = write_csv(tmp_path / "contacts.csv", [[contact_id(1), "ann@example.com"]])
    async with open_sandbox(SandboxSettings(port=0, seed_count=10)) as sandbox:
        sink = sandbox_sink(sandbox.url, client_secret="not-the-secret")
        result, lines = await run_logged(tmp_path, config_for(tmp_path, csv_path, sink))
    assert result.report["aborted"]
    assert stages(lines, "run_aborted") == ["sink"]
    assert "not-the-secret" not in json.dumps(lines)
    assert_every_line_has_a_stage_and_a_message(lines)


def test_a_stray_quote_in_a_multi_line_cell_stops_the_run_as_the_sources_failure(tmp_path):
    # Past the rows the input check reads: the run has started sending when reading stops.
    lines_of_csv = ["contact_id,email", *(f"{contact_id(i)},user{i}@example.com" for i in range(1500))]
    lines_of_csv += [f'{contact_id(2000)},"two\nlines with a "stray" quote"', f"{contact_id(2001)},late@example.com"]
    csv_path = tmp_path / "contacts.csv"
    csv_path.write_text("\n".join(lines_of_csv) + "\n", encoding="utf-8")
    (tmp_path / "pipeline.yaml").write_text(
        pipeline_config(
            name="stray-quote",
            csv=csv_path,
            out=tmp_path / "out",
            fields={"contactId": "{from: contact_id}", "email": "{from: email}"},
            sink="jsonl",
            sink_options={"path": json.dumps(str(tmp_path / "out" / "contacts.jsonl"))},
        ),
        encoding="utf-8",
    )
    done = run_etl("run", "pipeline.yaml", "--log-format", "json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "malformed quoting on line 1503" in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    (aborted,) = [line for line in lines if line["event"] == "run_aborted"]
    assert aborted["stage"] == "source" and "malformed quoting on line 1503" in aborted["message"]
    assert_every_line_has_a_stage_and_a_message(lines)


# -- the marks themselves -------------------------------------------------------------


def test_an_error_escaping_a_stage_carries_it_and_the_innermost_stage_wins():
    with pytest.raises(FatalError) as info, in_stage("sink"), in_stage("source"):
        raise FatalError("cannot read")
    assert stage_of(info.value) == "source"
    assert stage_of(FatalError("raised outside any stage")) == "run"


def test_staged_marks_what_the_producer_raises_on_the_way():
    def produce():
        yield 1
        raise OSError("the disk went away")

    items = staged("source", produce)
    assert next(items) == 1
    with pytest.raises(OSError) as info:
        next(items)
    assert stage_of(info.value) == "source"


def test_every_exception_of_a_group_is_marked():
    group = ExceptionGroup("two", [ValueError("a"), ExceptionGroup("inner", [KeyError("b")])])
    mark_stage(group, "sink")
    assert [stage_of(exc) for exc in (group.exceptions[0], group.exceptions[1].exceptions[0])] == ["sink", "sink"]


def test_a_stage_tags_the_lines_logged_within_and_is_left_on_the_way_out():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    structlog.contextvars.bind_contextvars(stage="run")
    log = structlog.get_logger("etl")
    with in_stage("sink"):
        log.info("inside")
    log.info("after")
    assert [(line["event"], line["stage"]) for line in map(json.loads, stream.getvalue().splitlines())] == [
        ("inside", "sink"),
        ("after", "run"),
    ]
