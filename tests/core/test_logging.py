import io
import json

import structlog
from structlog.testing import capture_logs

from etl_core.logging import configure_logging, get_logger, redact_data, register_secret


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
