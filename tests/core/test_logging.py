import io
import json
import subprocess
import time

import pytest
import structlog
from structlog.testing import capture_logs

from etl_core._log_formats import ECS_VERSION
from etl_core._log_messages import message_for
from etl_core.logging import configure_logging, get_logger, redact_data, register_secret
from tests.conftest import ETL, run_etl


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_standard_fields():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    structlog.contextvars.bind_contextvars(run_id="r1", pipeline="p")
    try:
        get_logger().info("run_started", workers=3)
    finally:
        structlog.contextvars.clear_contextvars()
    (event,) = lines(stream)
    assert list(event)[:3] == ["timestamp", "level", "event"]
    assert event["timestamp"].endswith("Z")
    assert event == {**event, "level": "info", "event": "run_started", "run_id": "r1", "pipeline": "p", "workers": 3}


def test_level_filter():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, level="warning")
    get_logger().info("hidden")
    get_logger().warning("shown")
    assert [e["event"] for e in lines(stream)] == ["shown"]


def test_registered_secrets_and_credential_fields_are_masked():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    register_secret("tok-0123456789abcdef")
    get_logger().warning(
        "record_failed",
        detail="server said: bad token tok-0123456789abcdef",
        nested={"headers": ["Bearer tok-0123456789abcdef"]},
        client_secret="anything",
        authorization="Bearer x",
        token_url="https://auth.example.com/token",
    )
    text = stream.getvalue()
    assert "tok-0123456789abcdef" not in text
    (event,) = lines(stream)
    assert event["client_secret"] == "***" and event["authorization"] == "***"
    assert event["token_url"] == "https://auth.example.com/token"
    assert event["detail"] == "server said: bad token ***"


def test_only_text_is_masked_by_name():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    get_logger().info("sandbox_stats", token_requests=12, tokens_issued=3, token_type="Bearer", api_key=["k1", "k2"])
    (event,) = lines(stream)
    assert event["token_requests"] == 12 and event["tokens_issued"] == 3
    assert event["token_type"] == "***" and event["api_key"] == ["***", "***"]


def test_urls_are_logged_without_the_credentials_they_carry():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    register_secret("s3cret-in-a-path")
    get_logger().info(
        "dry_run_request",
        url="https://api.example.com/contacts?page=2&access_token=tok-abc&X-Api-Key=k9",
        token_url="https://client:hunter2@auth.example.com/token?client_secret=pw;scope=contacts",
        callback_url="https://hooks.example.com/s3cret-in-a-path/notify",
        endpoints={"base_url": "https://bob@api.example.com/v2"},
    )
    text = stream.getvalue()
    for secret in ("tok-abc", "k9", "hunter2", "client:", "pw", "s3cret-in-a-path", "bob"):
        assert secret not in text
    (event,) = lines(stream)
    assert event["url"] == "https://api.example.com/contacts?page=2&access_token=***&X-Api-Key=***"
    assert event["token_url"] == "https://***@auth.example.com/token?client_secret=***;scope=contacts"
    assert event["callback_url"] == "https://hooks.example.com/***/notify"
    assert event["endpoints"] == {"base_url": "https://***@api.example.com/v2"}


def test_exceptions_render_without_frame_locals():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)

    def fail(password="hunter2-hunter2"):
        raise ValueError("boom")

    try:
        fail()
    except ValueError:
        get_logger().exception("sink_error")
    text = stream.getvalue()
    assert "hunter2" not in text
    (event,) = lines(stream)
    assert event["exception"][0]["exc_type"] == "ValueError"


def test_pii_masking():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, mask_pii=True)
    get_logger().info("dry_run_request", body={"email": "ann@example.com", "lastName": "Lee", "city": "Oslo"}, reason="x ann@example.com")
    (event,) = lines(stream)
    assert event["body"] == {"email": "***", "lastName": "***", "city": "Oslo"}
    assert "ann@example.com" not in json.dumps(event)


def test_console_format():
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream)
    get_logger().info("run_finished", exit_code=0)
    assert "run_finished" in stream.getvalue() and "exit_code=0" in stream.getvalue()


def test_capture_logs_works_for_plugin_tests():
    configure_logging(fmt="json", stream=io.StringIO())
    with capture_logs() as captured:
        get_logger().info("paused", seconds=2)
    assert captured == [{"event": "paused", "seconds": 2, "log_level": "info"}]


def test_redact_data_masks_registered_secrets_in_strings_at_any_depth():
    register_secret("data-secret-6f0a1b")
    report = {
        "aborted": "refused the key data-secret-6f0a1b",
        "records": {"ok": 3, "reasons": ["x data-secret-6f0a1b y", ("data-secret-6f0a1b",)]},
        "data-secret-6f0a1b": None,
        "rate": 1.5,
    }
    assert redact_data(report) == {
        "aborted": "refused the key ***",
        "records": {"ok": 3, "reasons": ["x *** y", ["***"]]},
        "***": None,
        "rate": 1.5,
    }
    # Unlike log fields, nothing is masked by its name: a report's text is not a credential.
    assert redact_data({"token_url": "https://auth.example.com/token"}) == {"token_url": "https://auth.example.com/token"}


# -- the message -----------------------------------------------------------------------


def test_every_line_has_a_message_for_people_after_the_event_name():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    get_logger().info("record_rejected", line=42, stage="transform", plugin="validate", reason="email: not a valid address")
    get_logger().info(
        "run_finished", exit_code=1, duration_s=12.3, records_ok=980, records_rejected=12, records_failed=8
    )
    rejected, finished = lines(stream)
    assert list(rejected)[:4] == ["timestamp", "level", "event", "message"]
    assert rejected["message"] == "line 42 rejected by validate: email: not a valid address"
    assert finished["message"] == "run finished: 980 ok, 12 rejected, 8 failed in 12.3 s"


def test_a_message_uses_the_first_template_whose_fields_are_all_there():
    assert message_for("paused", {"seconds": 2.5, "status": 429, "key": "k"}) == "every worker paused for 2.5 s: HTTP 429"
    assert message_for("paused", {"seconds": 4, "status": None, "reason": "rate limit window spent"}) == (
        "every worker paused for 4 s: rate limit window spent"
    )
    assert message_for("run_started", {"source": "csv", "sink": "jsonl", "workers": "auto", "dry_run": True}) == (
        "run started: csv to jsonl, workers: auto, dry run: yes"
    )
    assert message_for("failure_rate_exceeded", {"share": 0.25, "records": 200, "max_failure_rate": 0.1}) == (
        "run stopping: 25% of 200 records rejected or failed, over 10%"
    )


def test_an_event_without_a_template_or_its_fields_gets_its_name_as_a_sentence():
    assert message_for("cache_warmed", {"entries": 3}) == "cache warmed"
    assert message_for("record_rejected", {"line": 3}) == "record rejected"
    assert message_for("failure_rate_exceeded", {"share": "most", "records": 3, "max_failure_rate": 0.1}) == (
        "failure rate exceeded"
    )
    assert message_for("sandbox: a plain sentence", {}) == "sandbox: a plain sentence"


def test_the_message_shows_nothing_the_masking_hides():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, mask_pii=True)
    register_secret("msg-secret-4f1e2d")
    get_logger().info("record_rejected", line=7, plugin="validate", reason="ann@example.com refused by msg-secret-4f1e2d")
    (event,) = lines(stream)
    assert event["message"] == "line 7 rejected by validate: a***@e***.com refused by ***"


# -- ECS and OpenTelemetry -------------------------------------------------------------


def test_ecs_lines_use_the_elastic_common_schema_names():
    stream = io.StringIO()
    configure_logging(fmt="ecs", stream=stream)
    structlog.contextvars.bind_contextvars(run_id="r1", pipeline="p", stage="sink")
    get_logger().warning("record_failed", key="k1", line=28, status=404, reason="HTTP 404: contact not found", source="csv")
    (event,) = lines(stream)
    assert list(event)[:4] == ["@timestamp", "log.level", "message", "ecs.version"]
    assert event["@timestamp"].endswith("Z") and event["log.level"] == "warning"
    assert event["message"] == "line 28 failed: HTTP 404: contact not found"
    assert event["ecs.version"] == ECS_VERSION
    assert event["event"]["action"] == "record_failed"
    assert event["labels"] == {"run_id": "r1", "pipeline": "p", "stage": "sink"}
    # The event's own fields keep their names, under etl: `source` is an ECS field set.
    assert event["etl"] == {"key": "k1", "line": 28, "status": 404, "reason": "HTTP 404: contact not found", "source": "csv"}


def test_otel_lines_follow_the_log_data_model():
    stream = io.StringIO()
    configure_logging(fmt="otel", stream=stream, level="debug")
    structlog.contextvars.bind_contextvars(run_id="r1", pipeline="p", stage="run")
    before = time.time_ns()
    for method in ("debug", "info", "warning", "error", "critical"):
        getattr(get_logger(), method)("run_aborted", reason="token refused")
    after = time.time_ns()
    events = lines(stream)
    assert [(e["severity_text"], e["severity_number"]) for e in events] == [
        ("debug", 5), ("info", 9), ("warning", 13), ("error", 17), ("critical", 21)
    ]
    event = events[0]
    assert list(event) == ["timestamp", "severity_text", "severity_number", "body", "event_name", "attributes", "resource"]
    assert isinstance(event["timestamp"], str) and before <= int(event["timestamp"]) <= after
    assert event["body"] == "run aborted: token refused" and event["event_name"] == "run_aborted"
    assert event["attributes"] == {"reason": "token refused", "run_id": "r1", "pipeline": "p", "stage": "run"}
    assert event["resource"] == {"service.name": "etl"}


@pytest.mark.parametrize(
    ("fmt", "fields_of"),
    [
        ("ecs", lambda event: (event["error"]["type"], event["error"]["message"], event["error"]["stack_trace"])),
        ("otel", lambda event: tuple(event["attributes"][f"exception.{k}"] for k in ("type", "message", "stacktrace"))),
    ],
)
def test_exceptions_in_ecs_and_otel_are_text_without_frame_locals(fmt, fields_of):
    stream = io.StringIO()
    configure_logging(fmt=fmt, stream=stream)
    register_secret("exc-secret-77aa01")

    def fail(password="hunter2-hunter2"):
        raise ValueError("refused exc-secret-77aa01")

    try:
        fail()
    except ValueError:
        get_logger().exception("sink_error", key="k", line=3)
    assert "hunter2" not in stream.getvalue() and "exc-secret-77aa01" not in stream.getvalue()
    exc_type, exc_message, stacktrace = fields_of(lines(stream)[0])
    assert (exc_type, exc_message) == ("ValueError", "refused ***")
    assert "in fail" in stacktrace and stacktrace.endswith("ValueError: refused ***")


@pytest.mark.parametrize("fmt", ["json", "console", "ecs", "otel"])
def test_secrets_and_personal_data_are_masked_in_every_format(fmt):
    stream = io.StringIO()
    configure_logging(fmt=fmt, stream=stream, mask_pii=True)
    register_secret("fmt-secret-0a9b8c7d")
    get_logger().info(
        "dry_run_request",
        line=2,
        key="ann.lee@example.com",
        request={"url": "https://u:pw-in-url@api.example.com/c?access_token=tok-in-url", "body": {"lastName": "Leeford"}},
        reason="refused fmt-secret-0a9b8c7d",
        client_secret="plain-credential",
    )
    text = stream.getvalue()
    for hidden in ("fmt-secret-0a9b8c7d", "pw-in-url", "tok-in-url", "plain-credential", "ann.lee@example.com", "Leeford"):
        assert hidden not in text, (fmt, hidden)
    assert "line 2 would be sent (key a***@e***.com)" in text


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging(fmt="xml", stream=io.StringIO())


# -- from the command line ---------------------------------------------------------------


def csv_to_jsonl(tmp_path, logging_section=""):
    (tmp_path / "contacts.csv").write_text(
        "id,email\n1,ann@example.com\n2,not an address\n3,cy@example.com\n", encoding="utf-8"
    )
    (tmp_path / "pipeline.yaml").write_text(
        "pipeline: logs\n"
        "key: id\n"
        "source: {type: csv, path: contacts.csv}\n"
        "transforms:\n"
        "  - {type: validate, fields: {email: [email]}}\n"
        "sink: {type: jsonl, path: out/contacts.jsonl}\n"
        "output: {dir: out}\n" + logging_section,
        encoding="utf-8",
    )


def test_etl_run_with_ecs_logs_writes_one_ecs_object_per_line(tmp_path):
    csv_to_jsonl(tmp_path)
    done = run_etl("run", "pipeline.yaml", "--log-format", "ecs", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # one row rejected
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events
    for event in events:
        assert {"@timestamp", "log.level", "message", "ecs.version", "event", "labels"} <= set(event), event
        assert event["labels"]["pipeline"] == "logs" and event["labels"]["stage"] in ("run", "transform", "sink")
    actions = [event["event"]["action"] for event in events]
    assert actions[0] == "run_started" and actions[-1] == "run_finished"
    (rejected,) = [event for event in events if event["event"]["action"] == "record_rejected"]
    assert rejected["labels"]["stage"] == "transform" and rejected["etl"]["line"] == 3
    assert events[-1]["message"].startswith("run finished: 2 ok, 1 rejected, 0 failed in ")


def test_the_config_file_can_choose_the_otel_format(tmp_path):
    csv_to_jsonl(tmp_path, "logging: {format: otel}\n")
    done = run_etl("run", "pipeline.yaml", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [event["event_name"] for event in (events[0], events[-1])] == ["run_started", "run_finished"]
    assert all(event["attributes"]["pipeline"] == "logs" and int(event["timestamp"]) > 0 for event in events)


def test_a_run_whose_log_reader_goes_away_finishes_without_a_traceback(tmp_path):
    # `etl run ... | head -1`: the pipe closes after the first line, long before the end.
    (tmp_path / "contacts.csv").write_text("id,email\n" + "".join(f"{i},p{i}@example.com\n" for i in range(2000)), encoding="utf-8")
    (tmp_path / "pipeline.yaml").write_text(
        "pipeline: logs\nkey: id\nsource: {type: csv, path: contacts.csv}\n"
        "sink: {type: jsonl, path: out/contacts.jsonl}\noutput: {dir: out}\nlogging: {level: debug}\n",
        encoding="utf-8",
    )
    process = subprocess.Popen([*ETL, "run", "pipeline.yaml"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    assert json.loads(process.stdout.readline())["event"] == "run_started"
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0, stderr
    assert stderr == "etl: warning: the log output was closed; the run goes on without its log lines\n"
    assert len((tmp_path / "out" / "contacts.jsonl").read_text(encoding="utf-8").splitlines()) == 2000
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["records"]["ok"] == 2000
