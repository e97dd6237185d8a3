"""The sandbox's access-key grants: /auth/token (password, refresh_token), the legacy endpoint and its refresh."""

from __future__ import annotations

import base64
import json

import pytest

from etl_core.http import token_claims
from tests.plugins.sandbox.conftest import CID, CREDENTIALS

KEY = {"username": "sandbox-access-key", "password": "sandbox+access/key=secret=="}
LEGACY = {"accessKeyId": "sandbox-access-key", "accessKeySecret": "sandbox+access/key=secret=="}


async def password_grant(client, **form):
    return await client.post("/auth/token", data={"grant_type": "password", **KEY, **form}, auth=CREDENTIALS)


async def test_the_password_grant_issues_a_jwt_with_the_tenant_claims(client, sandbox):
    answer = await password_grant(client)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "id_token", "issued_token_type"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    claims = token_claims(body["access_token"])
    settings = sandbox.settings
    assert (claims["tenantId"], claims["area"], claims["icBUId"]) == (settings.tenant_id, settings.area, settings.bu_id)
    assert claims["iss"] == sandbox.url and claims["sub"] == "sandbox-access-key"
    api = await client.get(f"/api/v2/contacts/{CID}", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert api.status_code == 200


async def test_client_secret_post_is_accepted_too(client):
    form = {"grant_type": "password", **KEY, "client_id": CREDENTIALS[0], "client_secret": CREDENTIALS[1]}
    assert (await client.post("/auth/token", data=form)).status_code == 200


@pytest.mark.parametrize(
    ("form", "auth", "status", "error"),
    [
        ({"password": "wrong"}, CREDENTIALS, 400, "invalid_grant"),
        ({}, ("sandbox-client", "wrong"), 401, "invalid_client"),
        ({}, None, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, CREDENTIALS, 400, "unsupported_grant_type"),
        ({"grant_type": ""}, CREDENTIALS, 400, "invalid_request"),
    ],
)
async def test_refusals_are_oauth_errors(client, form, auth, status, error):
    answer = await client.post("/auth/token", data={"grant_type": "password", **KEY, **form}, auth=auth)
    assert (answer.status_code, answer.json()["error"]) == (status, error)


async def test_a_refresh_token_works_once(client, sandbox):
    refresh_token = (await password_grant(client)).json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    again = await client.post("/auth/token", data=form, auth=CREDENTIALS)
    assert again.status_code == 200 and again.json()["refresh_token"] != refresh_token
    replay = await client.post("/auth/token", data=form, auth=CREDENTIALS)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert sandbox.stats()["grants"] == {"password": 1, "refresh_token": 1}


async def test_refresh_tokens_can_be_switched_off(client, sandbox):
    sandbox.settings.refresh_tokens = False
    assert "refresh_token" not in (await password_grant(client)).json()


async def test_the_legacy_access_key_endpoint_and_its_refresh(client, sandbox):
    answer = await client.post("/authentication/v1/token/access-key", json=LEGACY)
    assert answer.status_code == 200
    refreshed = await client.post("/public/user/refresh", json={"token": answer.json()["refresh_token"]})
    assert refreshed.status_code == 200
    assert token_claims(refreshed.json()["access_token"])["tenantId"] == sandbox.settings.tenant_id
    # A refresh token of one endpoint family is not good at the other.
    form = {"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]}
    assert (await client.post("/auth/token", data=form, auth=CREDENTIALS)).status_code == 400
    assert sandbox.stats()["grants"] == {"access_key": 1, "access_key_refresh": 1}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/authentication/v1/token/access-key", {**LEGACY, "accessKeySecret": "wrong"}, 401),
        ("/authentication/v1/token/access-key", ["not", "an", "object"], 400),
        ("/public/user/refresh", {"token": "never-issued"}, 401),
    ],
)
async def test_legacy_refusals(client, path, body, status):
    assert (await client.post(path, json=body)).status_code == status


async def test_only_post_is_allowed(client):
    answer = await client.get("/auth/token")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"


async def test_a_token_is_refused_after_token_max_uses(client, sandbox):
    sandbox.settings.token_max_uses = 2
    token = (await password_grant(client)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    statuses = [(await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code for _ in range(3)]
    assert statuses == [200, 200, 401]


def test_the_id_token_is_jwt_shaped_too():
    from etl_cxone.sandbox import SandboxSettings
    from etl_cxone.sandbox._http import Request
    from etl_cxone.sandbox._jwt import make_token

    request = Request(b"POST", b"/auth/token", [(b"host", b"example:1")], b"")
    token = make_token(request, SandboxSettings(), "someone", 60, 1000.0)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "JWT" and token_claims(token)["exp"] == 1060
