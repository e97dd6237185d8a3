"""Tests of CXone's legacy access-key tokens (``etl_core.http._access_key``), against the sandbox."""

from __future__ import annotations

import json

import pydantic
import pytest

from etl_core import FatalError
from etl_core.http._access_key import AccessKeyTokens
from tests.core.http.conftest import URL


def tokens(client, secret: str = "sandbox+access/key=secret==") -> AccessKeyTokens:
    return AccessKeyTokens(
        client,
        token_url=URL + "/authentication/v1/token/access-key",
        refresh_url=URL + "/public/user/refresh",
        access_key_id="sandbox-access-key",
        access_key_secret=pydantic.SecretStr(secret),
    )


async def test_the_key_is_sent_as_json_and_the_token_renewed_with_its_refresh_token(client, recorder, sandbox):
    provider = tokens(client)
    first = await provider.token()
    provider.invalidate(first)
    assert await provider.token() != first
    grant, refresh = recorder.requests
    assert json.loads(grant.content) == {"accessKeyId": "sandbox-access-key", "accessKeySecret": "sandbox+access/key=secret=="}
    assert refresh.url.path == "/public/user/refresh" and set(json.loads(refresh.content)) == {"token"}
    assert sandbox.stats()["grants"] == {"access_key": 1, "access_key_refresh": 1}


async def test_a_wrong_key_is_fatal(client):
    with pytest.raises(FatalError, match=r"refused \(401 invalid_client\): check the access key id and secret"):
        await tokens(client, "wrong").token()


async def test_the_credential_is_a_bearer_header(client):
    credential = await tokens(client).credential()
    assert credential.header == "Authorization" and credential.value == f"Bearer {credential.token}"
    assert credential.token not in repr(credential)
