"""Tests of finding a CXone tenant's API host from its token (``etl_core.http._cxone_discovery``)."""

from __future__ import annotations

import base64
import json

import pytest

from etl_core import FatalError
from etl_core.http import discover_cxone_api, make_authenticator
from etl_core.http._exchange import Limits
from tests.core.http.conftest import URL
from tests.core.http.test_auth import ACCESS_KEY, auth_options

LIMITS = Limits(deadline=10.0, max_bytes=1 << 20)


def jwt(claims: dict) -> str:
    return "e30." + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + ".sig"


async def test_the_host_comes_from_the_tenant_of_the_token(client, recorder, sandbox):
    token = (await make_authenticator(auth_options(type="password", issuer=URL, **ACCESS_KEY), client).credential()).token
    found = await discover_cxone_api(client, token, LIMITS)  # the issuer from the token's iss claim
    assert (found.api_endpoint, found.issuer, found.area) == (URL, URL, "na1")
    assert found.tenant_id == sandbox.settings.tenant_id
    assert recorder.paths()[-1] == f"/.well-known/cxone-configuration?tenantId={sandbox.settings.tenant_id}"


async def test_an_unknown_tenant_is_fatal(client):
    with pytest.raises(FatalError, match=r"cxone-configuration failed \(HTTP 404\): check the issuer"):
        await discover_cxone_api(client, jwt({"tenantId": "someone-else"}), LIMITS, issuer=URL)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("opaque", "needs a token with a tenantId claim"),
        (jwt({"tenantId": "t"}), "needs auth.issuer"),
        (jwt({"tenantId": "t", "iss": "urn:not-a-url"}), "needs auth.issuer"),
    ],
)
async def test_a_token_that_names_no_tenant_or_issuer_is_fatal(client, token, message):
    with pytest.raises(FatalError, match=message):
        await discover_cxone_api(client, token, LIMITS)
    assert not client.is_closed
