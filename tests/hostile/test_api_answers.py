"""An API that answers with endless, compressed, trickled, malformed or echoing bodies.

Each test runs the real ``etl run`` against a hostile API (its token endpoint is sane)
and checks that the record fails with a clear reason in bounded time and memory.
"""

from __future__ import annotations

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
