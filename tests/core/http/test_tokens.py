"""Tests of OAuth 2.0 tokens from a token endpoint (``etl_core.http._tokens``), against the sandbox."""

from __future__ import annotations

import base64
import json
import urllib.parse

import httpx
import pytest
import trio

from etl_core import FatalError, TransientError
from etl_core.http import TokenProvider, token_claims
from etl_core.logging import redact
from tests.core.http.conftest import CLIENT, URL

SECRET = "sandbox+access/key=secret=="  # the sandbox's access key secret: '+', '/' and '='


def password_provider(client, **overrides) -> TokenProvider:
    options = {
        "token_url": URL + "/auth/token",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "grant_type": "password",
        "username": "sandbox-access-key",
        "password": SECRET,
    } | overrides
    return TokenProvider(client, **options)


def form_of(request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.content.decode()))


async def test_password_grant_with_basic_client_authentication(client, recorder):
    token = await password_provider(client).token()
    request = recorder.requests[-1]
    # The secret holds '+', '/' and '=': form encoding keeps it whole.
    assert form_of(request) == {"grant_type": "password", "username": "sandbox-access-key", "password": SECRET}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"sandbox-client:sandbox-secret").decode()
    assert token_claims(token)["tenantId"] == "11111111-2222-4333-8444-555555555555"
    assert SECRET not in redact(f"the secret {SECRET} and the token {token}")
    assert token not in redact(token)


async def test_password_grant_with_client_secret_post(client, recorder):
    await password_provider(client, auth_method="form").token()
    request = recorder.requests[-1]
    assert "Authorization" not in request.headers
    assert form_of(request)["client_id"] == "sandbox-client" and form_of(request)["client_secret"] == "sandbox-secret"


async def test_the_token_endpoint_comes_from_the_issuer(client, recorder):
    provider = password_provider(client, token_url="", issuer=URL)
    await provider.token()
    assert recorder.paths() == ["/.well-known/openid-configuration", "/auth/token"]
    provider.invalidate(await provider.token())
    await provider.token()
    assert recorder.paths()[2:] == ["/auth/token"]  # discovered once


async def test_a_refresh_token_is_used_for_the_next_token(client, recorder, sandbox):
    provider = password_provider(client)
    first = await provider.token()
    provider.invalidate(first)
    second = await provider.token()
    assert second != first
    assert [form_of(r)["grant_type"] for r in recorder.requests] == ["password", "refresh_token"]
    assert sandbox.stats()["grants"] == {"password": 1, "refresh_token": 1}


async def test_a_refused_refresh_token_falls_back_to_the_grant(client, recorder):
    provider = password_provider(client)
    provider.invalidate(await provider.token())
    # Someone else uses the refresh token first: the sandbox refuses it the second time.
    refresh_token = json.loads(recorder.answers[0])["refresh_token"]
    stolen = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    assert (await client.post(URL + "/auth/token", data=stolen, auth=CLIENT)).status_code == 200
    await provider.token()
    grants = [form_of(r)["grant_type"] for r in recorder.requests]
    # The provider's own refresh is refused (400 invalid_grant), and the grant asked again.
    assert grants == ["password", "refresh_token", "refresh_token", "password"]


async def test_many_callers_share_one_refresh(client, sandbox):
    provider = password_provider(client)
    provider.invalidate(await provider.token())
    tokens = []

    async def ask() -> None:
        tokens.append(await provider.token())

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(ask)
    assert len(set(tokens)) == 1
    assert sandbox.stats()["token_requests"] == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"password": "wrong"}, r"refused \(400 invalid_grant\): check the client id and secret"),
        ({"client_secret": "wrong"}, r"refused \(401 invalid_client\)"),
        ({"grant_type": "client_credentials"}, r"refused \(400 unsupported_grant_type\): check the grant_type"),
    ],
)
async def test_refused_credentials_are_fatal_and_not_quoted(client, overrides, message):
    with pytest.raises(FatalError, match=message) as caught:
        await password_provider(client, **overrides).token()
    assert "wrong" not in str(caught.value) and SECRET not in str(caught.value)


async def test_an_issuer_without_openid_configuration_is_fatal(client):
    with pytest.raises(FatalError, match=r"discovery request to http://sandbox/nowhere/.well-known/openid-configuration failed \(HTTP 401\): check the issuer"):
        await password_provider(client, token_url="", issuer=URL + "/nowhere").token()


def test_a_token_url_or_an_issuer_is_needed():
    with pytest.raises(ValueError, match="token_url or an issuer"):
        TokenProvider(httpx.AsyncClient(), client_id="a", client_secret="b")


async def test_an_unreachable_refresh_keeps_the_refresh_token(recorder):
    down = [True]

    class FirstRefreshFails(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if b"grant_type=refresh_token" in await request.aread() and down:
                down.pop()
                raise httpx.ConnectError("connection refused")
            return await recorder.handle_async_request(request)

    async with httpx.AsyncClient(transport=FirstRefreshFails()) as client:
        provider = password_provider(client)
        provider.invalidate(await provider.token())
        with pytest.raises(TransientError, match="connection error"):
            await provider.token()
        await provider.token()
    # The second try used the same refresh token: no new password grant was needed.
    assert [form_of(r)["grant_type"] for r in recorder.requests] == ["password", "refresh_token"]
