"""``POST /oauth/token``: the client-credentials grant, over real HTTP."""

from __future__ import annotations

import pytest
import trio

from tests.plugins.sandbox.conftest import CID, CREDENTIALS, get_token


async def test_token_with_basic_auth(client, sandbox):
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "contact:write"},
        auth=("sandbox-client", "sandbox-secret"),
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert "date" in r.headers
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "contact:write"
    assert len(body["access_token"]) >= 32
    stats = sandbox.stats()
    assert stats["token_requests"] == 1
    assert stats["tokens_issued"] == 1
    assert stats["requests"] == 0  # token requests are not API requests


async def test_token_with_form_credentials(client):
    r = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        },
    )
    assert r.status_code == 200
    assert r.json()["scope"] == "contact:write"  # missing scope: the required one is granted
    other = await get_token(client)
    assert other != r.json()["access_token"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"auth": ("sandbox-client", "wrong")},
        {"auth": ("someone-else", "sandbox-secret")},
        {},
        {"headers": {"Authorization": "Basic !!!not-base64"}},
    ],
    ids=["wrong-secret", "wrong-id", "no-credentials", "garbled-basic"],
)
async def test_token_bad_credentials(client, sandbox, kwargs):
    r = await client.post("/oauth/token", data={"grant_type": "client_credentials"}, **kwargs)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "error_description" in r.json()
    assert sandbox.stats()["tokens_issued"] == 0


async def test_token_bad_grant_type(client):
    auth = ("sandbox-client", "sandbox-secret")
    r = await client.post("/oauth/token", data={"grant_type": "password"}, auth=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"
    r = await client.post("/oauth/token", data={}, auth=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    r = await client.get("/oauth/token")
    assert r.status_code == 405


async def test_token_scope(client):
    auth = ("sandbox-client", "sandbox-secret")
    data = {"grant_type": "client_credentials", "scope": "contact:read"}
    r = await client.post("/oauth/token", data=data, auth=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "contact:read contact:write"},
        auth=auth,
    )
    assert r.status_code == 200
    assert r.json()["scope"] == "contact:read contact:write"


async def test_token_expires_on_the_sandbox_clock(client, sandbox):
    sandbox.settings.token_lifetime = 60
    token = await get_token(client)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code == 200
    sandbox.advance_clock(59)
    assert (await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code == 200
    sandbox.advance_clock(1.5)
    r = await client.get(f"/api/v2/contacts/{CID}", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "invalid_token", "message": r.json()["message"]}
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    # a fresh token works again
    headers = {"Authorization": f"Bearer {await get_token(client)}"}
    assert (await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code == 200


async def test_token_with_zero_lifetime_is_expired_at_once(client, sandbox):
    sandbox.settings.token_lifetime = 0
    r = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=CREDENTIALS
    )
    assert r.json()["expires_in"] == 0
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code == 401


async def test_token_expires_in_real_time(client, sandbox):
    sandbox.settings.token_lifetime = 0.05
    token = await get_token(client)
    await trio.sleep(0.1)  # a slow machine only makes the token older
    r = await client.get(f"/api/v2/contacts/{CID}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
