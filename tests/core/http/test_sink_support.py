"""Tests of what HTTP sinks share (``etl_core.http._sink_support``)."""

from __future__ import annotations

import pytest

from etl_core import ConfigError, FatalError, TransientError, __version__
from etl_core.http import Credential, Limits, SinkConnections, check_ca_bundle, find_api_host, make_authenticator, retry_open
from tests.core.http.conftest import URL
from tests.core.http.test_auth import ACCESS_KEY, auth_options

LIMITS = Limits(deadline=10.0, max_bytes=1 << 20)


def connections(recorder, **extra) -> SinkConnections:
    return SinkConnections(limits=LIMITS, timeout=5.0, connect_timeout=5.0, max_connections=2, transport=recorder, **extra)


async def test_a_request_carries_the_default_headers_the_body_kind_and_the_credential(recorder):
    pool = connections(recorder, headers={"X-Tenant": "acme"})
    try:
        credential = Credential(header="Authorization", value="Bearer one", token="one")
        answer = await pool.request("PATCH", URL + "/api/v2/contacts/x", b'{"a": 1}', credential)
        await pool.request("DELETE", URL + "/api/v2/contacts/x", None, None)
    finally:
        await pool.aclose()
    with_body, without = recorder.requests
    assert answer.status == 401  # the sandbox does not know the token: the answer is returned as it is
    assert (with_body.method, with_body.content) == ("PATCH", b'{"a": 1}')
    assert with_body.headers["User-Agent"] == f"etl/{__version__}"
    assert with_body.headers["Accept"] == "application/json"
    assert with_body.headers["Content-Type"] == "application/json"
    assert with_body.headers["Authorization"] == "Bearer one"
    assert with_body.headers["X-Tenant"] == without.headers["X-Tenant"] == "acme"
    assert "Content-Type" not in without.headers and "Authorization" not in without.headers


async def test_the_token_client_sends_the_same_default_headers(recorder):
    pool = connections(recorder, headers={"X-Tenant": "acme"})
    try:
        await pool.client.get(URL + "/.well-known/openid-configuration")
    finally:
        await pool.aclose()
    assert recorder.requests[0].headers["X-Tenant"] == "acme"
    assert recorder.requests[0].headers["User-Agent"] == f"etl/{__version__}"


def test_a_ca_bundle_that_is_not_a_file_is_a_config_error(tmp_path):
    check_ca_bundle(None)
    with pytest.raises(ConfigError) as caught:
        check_ca_bundle(str(tmp_path / "missing.pem"))
    assert caught.value.path == "sink.ca_bundle"


async def test_an_open_request_is_tried_three_times(autojump_clock):
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("HTTP 503: service unavailable")
        return "token"

    assert await retry_open(flaky, "could not get a token") == "token"
    assert len(calls) == 3

    async def down() -> str:
        raise TransientError("connection refused")

    with pytest.raises(FatalError, match="^could not get a token: connection refused$"):
        await retry_open(down, "could not get a token")


async def test_the_discovered_host_must_be_secure_unless_allowed(client):
    token = (await make_authenticator(auth_options(type="password", issuer=URL, **ACCESS_KEY), client).credential()).token
    found = await find_api_host(client, token, LIMITS, issuer=None, allow_insecure_http=True, failure="could not find")
    assert found == URL
    with pytest.raises(FatalError, match=f"^the discovered API host {URL}: "):
        await find_api_host(client, token, LIMITS, issuer=None, allow_insecure_http=False, failure="could not find")
