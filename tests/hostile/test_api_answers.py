"""An API that answers with endless, compressed, trickled, malformed or echoing bodies.

Each test runs the real ``etl run`` against a hostile API (its token endpoint is sane)
and checks that the record fails with a clear reason in bounded time and memory.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from .conftest import (
    answer,
    endless,
    gzip_bomb,
    gzipped,
    read_out,
    run_measured,
    slow_headers,
    token_answer,
    write_pipeline,
)

SECRET = "hostile-secret-5f1d2c"
TOKEN = "hostile-token-0123456789"
CONTACT = "0b6f1e0c-95d7-4c5c-9d5e-1f8b2a3c4d5e"
OTHER = "1c7a2f1d-a6e8-4d6d-8e6f-2a9c3b4d5e6f"
API = f"/api/v2/contacts/{CONTACT}"


def run_against(tmp_path: Path, server_url: str, *, api_url: str | None = None, rows: int = 1, **extra: str):
    rows_text = [f"{CONTACT},a@example.com", f"{OTHER},b@example.com"][:rows]
    config = write_pipeline(
        tmp_path, base_url=api_url or server_url, token_url=server_url + "/oauth/token", rows=rows_text, **extra
    )
    outcome = run_measured("run", str(config), "--log-format", "json", cwd=tmp_path, env={"CXONE_CLIENT_SECRET": SECRET})
    report, rejects = read_out(tmp_path)
    return outcome, report, rejects


@pytest.mark.parametrize(
    "responder", [endless(200), gzipped(400, gzip_bomb(512))], ids=["endless", "gzip-bomb-as-an-error-body"]
)
def test_a_body_over_max_response_bytes_fails_the_record(tmp_path, hostile_server, responder):
    server = hostile_server({"/oauth/token": token_answer(TOKEN), "/api/": responder})
    outcome, report, rejects = run_against(tmp_path, server.url)
    assert outcome.returncode == 1, outcome.stderr
    assert report["records"]["failed"] == 1
    assert "answer larger than 1,048,576 bytes (max_response_bytes)" in rejects
    assert server.paths("/api/") == [API, API]  # sent, then retried once (max_attempts: 2)
    assert "sink_error" not in outcome.stdout


def test_slow_headers_stop_at_request_timeout(tmp_path, hostile_server):
    # A byte of header every 0.2 s never trips the 2 s read timeout: only the deadline can.
    server = hostile_server({"/oauth/token": token_answer(TOKEN), "/api/": slow_headers()})
    outcome, report, rejects = run_against(tmp_path, server.url, sink_extra="request_timeout: 1.5")
    assert outcome.returncode == 1, outcome.stderr
    assert "no complete answer within 1.5 s (request_timeout)" in rejects
    assert len(server.paths("/api/")) == 2
    assert outcome.seconds < 15


def test_a_bad_gzip_body_is_classified_by_its_status(tmp_path, hostile_server):
    server = hostile_server(
        {
            "/oauth/token": token_answer(TOKEN),
            API: gzipped(400, b"this is not gzip"),
            f"/api/v2/contacts/{OTHER}": gzipped(200, b"neither is this"),
        }
    )
    outcome, report, rejects = run_against(tmp_path, server.url, rows=2)
    assert outcome.returncode == 1, outcome.stderr
    assert (report["records"]["ok"], report["records"]["failed"]) == (1, 1)
    assert "HTTP 400: validation failed" in rejects
    assert "(the body could not be read: not valid gzip)" in rejects
    assert "sink_error" not in outcome.stdout and "Traceback" not in outcome.output()


def test_an_error_body_echoing_the_secret_and_token_is_not_kept(tmp_path, hostile_server):
    echo = f'{{"error": "bad request", "secret": "{SECRET}", "auth": "Bearer {TOKEN}"}}'.encode()
    server = hostile_server({"/oauth/token": token_answer(TOKEN), "/api/": answer(422, echo)})
    outcome, report, rejects = run_against(tmp_path, server.url)
    assert outcome.returncode == 1
    assert "HTTP 422: unprocessable entity" in rejects
    assert "[redacted]" in rejects
    for text in (rejects, outcome.output(), (tmp_path / "out" / "report.json").read_text()):
        assert SECRET not in text and TOKEN not in text


def test_a_redirect_is_not_followed(tmp_path, hostile_server):
    elsewhere = hostile_server({"/": answer(200)})
    server = hostile_server(
        {"/oauth/token": token_answer(TOKEN), "/api/": answer(307, Location=elsewhere.url + API)}
    )
    outcome, report, rejects = run_against(tmp_path, server.url)
    assert outcome.returncode == 1
    assert "HTTP 307: redirected, which is not followed; check base_url" in rejects
    assert elsewhere.requests == []  # the bearer token never went there


def test_a_certificate_that_cannot_be_verified_stops_the_run(tmp_path, hostile_server, self_signed):
    tokens = hostile_server({"/oauth/token": token_answer(TOKEN)})
    api = hostile_server({"/api/": answer(200)}, tls=self_signed)
    outcome, report, rejects = run_against(tmp_path, tokens.url, api_url=api.url, rows=2)
    assert outcome.returncode == 1
    message = "certificate verify failed for 127.0.0.1 (self-signed certificate)"
    assert f"run stopped: {message}" in outcome.stderr
    assert report["aborted"] == message
    assert api.requests == []  # the handshake failed: no request, no retry


def test_pauses_asked_for_without_end_stop_the_run_at_max_paused(tmp_path, hostile_server):
    # Retry-After: 999999 on every answer, each capped at retry_after_max: without a cap on
    # the run's total, every new record would pause the pool again, for days.
    server = hostile_server({"/oauth/token": token_answer(TOKEN), "/api/": answer(429, Retry_After="999999")})
    contacts = [str(uuid.UUID(int=i + 1)) for i in range(6)]
    rows = [f"{contact},user{i}@example.com" for i, contact in enumerate(contacts)]
    retry = "retry_after_max: 0.4, max_paused: 1"
    config = write_pipeline(tmp_path, base_url=server.url, token_url=server.url + "/oauth/token", rows=rows, retry_extra=retry)
    outcome = run_measured("run", str(config), "--log-format", "json", cwd=tmp_path, env={"CXONE_CLIENT_SECRET": SECRET})
    assert outcome.returncode == 75, outcome.stderr
    assert outcome.stderr == (
        "etl: error: run stopped: the destination asked for more than 1 s of pauses in all (run.retry.max_paused), "
        "so it looks unavailable: run again later to send the records left\n"
    )
    report, _ = read_out(tmp_path)
    assert report["exit_code"] == 75
    # Two pauses of 0.4 s (the first record and its retry); the third would go over 1 s.
    assert report["requests"]["paused_s"] == pytest.approx(0.8)
    assert report["records"] == {"read": 6, "ok": 0, "rejected": 0, "failed": 1, "skipped": 0, "not_processed": 5}
    assert len(server.paths("/api/")) == 3
    assert outcome.seconds < 15

    # The state is committed: a rerun, once the destination answers again, sends all six.
    sane = hostile_server({"/oauth/token": token_answer(TOKEN), "/api/": answer(200)})
    config = write_pipeline(tmp_path, base_url=sane.url, token_url=sane.url + "/oauth/token", rows=rows, retry_extra=retry)
    again = run_measured("run", str(config), cwd=tmp_path, env={"CXONE_CLIENT_SECRET": SECRET})
    assert again.returncode == 0, again.stderr
    assert sorted(sane.paths("/api/")) == sorted(f"/api/v2/contacts/{contact}" for contact in contacts)


def test_an_answer_quoting_credentials_in_its_reason_is_masked_everywhere(tmp_path, hostile_server):
    # The field names of a 400 answer and the reason phrase of another status are the
    # server's text, quoted in the record's reason: they reach the rejects and the state.
    fields = json.dumps({"fields": {SECRET: "echoed", TOKEN: "echoed"}}).encode()
    server = hostile_server(
        {
            "/oauth/token": token_answer(TOKEN),
            API: answer(400, fields, Content_Type="application/json"),
            f"/api/v2/contacts/{OTHER}": lambda request, reply: reply.send(
                f"HTTP/1.1 418 {SECRET}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            ),
        }
    )
    outcome, report, rejects = run_against(tmp_path, server.url, rows=2)
    assert outcome.returncode == 1, outcome.stderr
    assert "HTTP 400: validation failed: ***, ***" in rejects
    assert "HTTP 418: ***" in rejects
    with sqlite3.connect(tmp_path / "out" / "state.db") as db:
        errors = sorted(error for (error,) in db.execute("SELECT error FROM records"))
    assert errors == ["HTTP 400: validation failed: ***, ***", "HTTP 418: ***"]
    for text in (rejects, outcome.output(), (tmp_path / "out" / "report.json").read_text()):
        assert SECRET not in text and TOKEN not in text
