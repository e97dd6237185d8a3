"""A token endpoint that answers with bombs, trickles, junk tokens, echoes or redirects.

The first tests run the real ``etl validate --check-auth``; the others ask the sink for a
token in this process (the socket is real, the command line is not what they are about).
Whatever the answer, the check ends quickly with a clear error and no record is sent.
"""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import trio

from etl_core import FatalError
from etl_core.logging import redact
from etl_cxone import CxoneSink

from .conftest import (
    HostileServer,
    answer,
    endless,
    gzip_bomb,
    gzipped,
    run_measured,
    slow_body,
    token_answer,
    write_pipeline,
)

SECRET = "hostile-secret-5f1d2c"


def check_auth(tmp_path: Path, server: HostileServer, api: HostileServer, *, sink_extra: str = ""):
    config = write_pipeline(
        tmp_path, base_url=api.url, token_url=server.url + "/oauth/token", rows=[], sink_extra=sink_extra
    )
    return run_measured(
        "validate", str(config), "--check-auth", cwd=tmp_path, env={"CXONE_CLIENT_SECRET": SECRET}, timeout=30
    )


@pytest.fixture
def api(hostile_server) -> HostileServer:
    """The API the tokens would be for: it must never hear a word."""
    return hostile_server({"/": answer(200)})


def test_a_gzip_bomb_stops_the_check(tmp_path, hostile_server, api):
    server = hostile_server({"/oauth/token": gzipped(200, gzip_bomb(512))})
    outcome = check_auth(tmp_path, server, api)
    assert outcome.returncode == 2
    assert outcome.stderr.strip().endswith(": answer larger than 1,048,576 bytes (max_response_bytes)")
    assert len(server.requests) == 1  # fatal: not retried
    assert api.requests == []


def test_a_trickled_token_response_stops_at_request_timeout(tmp_path, hostile_server, api):
    body = b'{"access_token": "hostile-token-0123456789", "token_type": "bearer", "expires_in": 3600}'
    server = hostile_server({"/oauth/token": slow_body(body, interval=0.1)})
    outcome = check_auth(tmp_path, server, api, sink_extra="request_timeout: 0.5")
    assert outcome.returncode == 2
    assert "could not get a token: token request to" in outcome.stderr
    assert outcome.stderr.strip().endswith(": no complete answer within 0.5 s (request_timeout)")
    assert len(server.requests) == 3  # the sink tries three times before it gives up
    assert outcome.seconds < 15
    assert api.requests == []


def test_an_error_echoing_the_secret_is_not_quoted(tmp_path, hostile_server, api):
    echo = f'{{"error": "{SECRET}", "error_description": "{SECRET}"}}'.encode()
    server = hostile_server({"/oauth/token": answer(401, echo, Content_Type="application/json")})
    outcome = check_auth(tmp_path, server, api)
    assert outcome.returncode == 2
    assert "was refused (401): check CXONE_CLIENT_ID / CXONE_CLIENT_SECRET" in outcome.stderr
    assert SECRET not in outcome.output()


# -- in this process ---------------------------------------------------------------------------


def sink_for(server: HostileServer, api: HostileServer, **options: Any) -> CxoneSink:
    values = {
        "base_url": api.url,
        "token_url": server.url + "/oauth/token",
        "client_id": "hostile-client",
        "client_secret": SECRET,
        "timeout": 2,
        **options,
    }
    return CxoneSink(CxoneSink.Options(**values))


async def refused(server: HostileServer, api: HostileServer, **options: Any) -> str:
    """The message of the FatalError that the credentials check ends with."""
    with pytest.raises(FatalError) as caught, trio.fail_after(20):
        await sink_for(server, api, **options).check_auth()
    assert api.requests == []
    message = str(caught.value)
    assert SECRET not in message
    return message


async def test_an_endless_token_response_is_cut_at_max_response_bytes(hostile_server, api):
    server = hostile_server({"/oauth/token": endless(200)})
    tracemalloc.start()
    try:
        message = await refused(server, api, max_response_bytes=100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message.endswith(": answer larger than 100,000 bytes (max_response_bytes)")
    assert peak < 8 << 20


@pytest.mark.parametrize(
    ("responder", "problem"),
    [
        (gzipped(200, b"not gzip at all"), "cannot be read (body not valid gzip)"),
        (token_answer("caf\u00e9-token-0123456789"), "has an access_token that is not visible ASCII"),
        (token_answer("token-0123456789\r\nX-Injected: 1"), "has an access_token that is not visible ASCII"),
        (token_answer(token_type="mac"), "is not for a bearer token (token_type)"),
        (token_answer(token_type="MAC"), "is not for a bearer token (token_type)"),
        (answer(307, Location="https://elsewhere.invalid/token"), "failed (HTTP 307): check the token URL"),
    ],
    ids=["bad-gzip", "non-ascii-token", "crlf-token", "mac", "MAC", "redirect"],
)
async def test_a_bad_token_response_stops_at_once(hostile_server, api, responder, problem):
    server = hostile_server({"/oauth/token": responder})
    message = await refused(server, api)
    assert problem in message
    assert message.startswith(f"token response from {server.url}/oauth/token") or "token request" in message
    assert len(server.requests) == 1  # fatal: never retried


@pytest.mark.parametrize("token_type", ["Bearer", None])
async def test_bearer_in_any_case_or_no_token_type_is_accepted(hostile_server, api, token_type):
    server = hostile_server({"/oauth/token": token_answer(token_type=token_type)})
    assert "a token was issued" in await sink_for(server, api).check_auth()


async def test_a_token_endpoint_whose_certificate_cannot_be_verified(hostile_server, api, self_signed):
    server = hostile_server({"/oauth/token": token_answer()}, tls=self_signed)
    message = await refused(server, api)
    assert message == f"token request to {server.url}/oauth/token: certificate verify failed for 127.0.0.1 (self-signed certificate)"
    assert server.requests == []


async def test_the_basic_credential_is_masked_like_the_secret_it_encodes(hostile_server, api):
    server = hostile_server({"/oauth/token": token_answer()})
    with trio.fail_after(20):
        await sink_for(server, api).check_auth()
    (request,) = server.requests
    scheme, credential = request.headers["authorization"].split(" ")
    assert (scheme, base64.b64decode(credential)) == ("Basic", f"hostile-client:{SECRET}".encode())
    # An echo of the header (in an error body, a proxy's message...) reveals the secret as plainly.
    assert redact(f"echoed: Basic {credential}") == "echoed: Basic ***"
