"""The sandbox's discovery documents and its Accept check on the admin API."""

from __future__ import annotations

import pytest

from tests.plugins.sandbox.conftest import authed


async def test_openid_configuration_names_the_token_endpoint(client, sandbox):
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["issuer"] == sandbox.url
    assert document["token_endpoint"] == sandbox.url + "/auth/token"
    assert {"client_secret_basic", "client_secret_post"} <= set(document["token_endpoint_auth_methods_supported"])


async def test_cxone_configuration_names_the_api_host_of_a_tenant(client, sandbox):
    tenant = sandbox.settings.tenant_id
    answer = await client.get("/.well-known/cxone-configuration", params={"tenantId": tenant})
    assert answer.json() == {"tenantId": tenant, "api_endpoint": sandbox.url, "area": "na1", "domain": "127.0.0.1"}


@pytest.mark.parametrize(("params", "status"), [({}, 400), ({"tenantId": ""}, 400), ({"tenantId": "other"}, 404)])
async def test_cxone_configuration_needs_a_known_tenant(client, params, status):
    assert (await client.get("/.well-known/cxone-configuration", params=params)).status_code == status


async def test_unknown_documents_and_methods(client):
    assert (await client.get("/.well-known/nothing")).status_code == 404
    assert (await client.post("/.well-known/openid-configuration")).status_code == 405


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (None, 406),
        ("text/html", 406),
        ("application/json;q=0", 406),
        ("application/json", 200),
        ("text/html, application/*;q=0.5", 200),
        ("*/*", 200),
    ],
)
async def test_the_admin_api_wants_accept_json(client, sandbox, accept, status):
    await authed(client)
    headers = {"Accept": accept} if accept is not None else {}
    if accept is None:
        client.headers.pop("Accept", None)
    answer = await client.get("/inContactAPI/services/v34.0/dnc-groups/1/records", headers=headers)
    if status == 406:
        assert (answer.status_code, answer.json()["message"]) == (406, "No known way to render data")
    else:
        assert answer.status_code != 406
    sandbox.settings.require_accept = False
    assert (await client.get("/inContactAPI/services/v34.0/dnc-groups/1/records", headers=headers)).status_code != 406
