"""Tests of authenticators and the 401 handling every HTTP sink shares (``etl_core.http._auth``)."""

from __future__ import annotations

import pydantic
import pytest

from etl_core import FatalError
from etl_core.http import AuthOptions, Credential, exchange, make_authenticator, send_authorized
from etl_core.http._exchange import Limits
from etl_core.logging import redact
from etl_cxone.sandbox import contact_id
from tests.core.http.conftest import URL

LIMITS = Limits(deadline=10.0, max_bytes=1 << 20)
ACCESS_KEY = {"client_id": "sandbox-client", "client_secret": "sandbox-secret", "username": "sandbox-access-key", "password": "sandbox+access/key=secret=="}


def auth_options(**data) -> AuthOptions:
    return pydantic.TypeAdapter(AuthOptions).validate_python(data)


def getter(client):
    """Send GET of a contact with a credential, as a sink's request function does."""

    async def send(credential: Credential):
        request = client.build_request("GET", f"{URL}/api/v2/contacts/{contact_id(1)}", headers={credential.header: credential.value})
        return await exchange(client, request, LIMITS, what="", oversize=FatalError)

    return send


@pytest.mark.parametrize(
    "options",
    [
        {"type": "password", "issuer": URL, **ACCESS_KEY},
        {"type": "password", "token_url": URL + "/auth/token", "client_auth": "post", **ACCESS_KEY},
        {
            "type": "cxone_access_key",
            "token_url": URL + "/authentication/v1/token/access-key",
            "access_key_id": "sandbox-access-key",
            "access_key_secret": "sandbox+access/key=secret==",
        },
        {"type": "client_credentials", "token_url": URL + "/oauth/token", "client_id": "sandbox-client", "client_secret": "sandbox-secret", "scope": "contact:write"},
    ],
    ids=["password-issuer", "password-post", "cxone_access_key", "client_credentials"],
)
async def test_each_token_provider_survives_one_401(client, sandbox, options):
    sandbox.settings.token_max_uses = 1  # every token is refused after its first use
    auth = make_authenticator(auth_options(**options), client)
    for _ in range(3):
        answer, credential = await send_authorized(auth, getter(client))
        assert answer.status == 200
    stats = sandbox.stats()
    assert stats["by_status"] == {"200": 3, "401": 2}
    assert stats["tokens_issued"] == 3
    for name in ("client_secret", "password", "access_key_secret"):
        if name in options:
            assert options[name] not in redact(f"x {options[name]} x")


async def test_a_second_401_is_fatal(client, sandbox):
    auth = make_authenticator(auth_options(type="password", issuer=URL, **ACCESS_KEY), client)
    sandbox.settings.token_max_uses = 1
    assert (await send_authorized(auth, getter(client)))[0].status == 200
    sandbox.settings.token_lifetime = 0  # every new token is born expired
    with pytest.raises(FatalError, match=r"refused a freshly issued token \(HTTP 401\)"):
        await send_authorized(auth, getter(client))


async def test_a_fixed_bearer_token_is_sent_and_a_401_is_fatal_at_once(client, sandbox):
    issued = await make_authenticator(auth_options(type="password", issuer=URL, **ACCESS_KEY), client).credential()
    auth = make_authenticator(auth_options(type="bearer", token=issued.token), client)
    sandbox.settings.token_max_uses = 1
    answer, credential = await send_authorized(auth, getter(client))
    assert answer.status == 200 and credential.value == f"Bearer {issued.token}"
    with pytest.raises(FatalError, match=r"refused the configured credential \(HTTP 401\): check auth"):
        await send_authorized(auth, getter(client))
    assert sandbox.stats()["by_status"] == {"200": 1, "401": 1}  # not sent twice


async def test_an_api_key_goes_in_its_header(client):
    issued = await make_authenticator(auth_options(type="password", issuer=URL, **ACCESS_KEY), client).credential()
    auth = make_authenticator(auth_options(type="api_key", header="Authorization", value=f"Bearer {issued.token}"), client)
    answer, credential = await send_authorized(auth, getter(client))
    assert answer.status == 200 and credential.header == "Authorization"
    key = make_authenticator(auth_options(type="api_key", value="key-of-the-api-123"), client)
    assert (await key.credential()).header == "X-API-Key"
    assert "key-of-the-api-123" not in redact("key-of-the-api-123")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"type": "password", "client_id": "a", "client_secret": "b", "username": "u", "password": "p"}, "give token_url or issuer"),
        ({"type": "password", "issuer": "https://x.example", "client_id": "a", "client_secret": "b", "username": "u"}, "password"),
        ({"type": "bearer", "token": "two words"}, "visible ASCII without spaces"),
        ({"type": "api_key", "header": "X Key", "value": "k"}, "must be a header name"),
        ({"type": "api_key", "value": "bad\nvalue"}, "visible ASCII"),
        ({"type": "cxone_access_key", "token_url": "ftp://x", "access_key_id": "a", "access_key_secret": "b"}, "http:// or https://"),
        ({"type": "saml"}, "does not match any of the expected tags"),
    ],
)
def test_invalid_auth_options_say_what_is_wrong(data, problem):
    with pytest.raises(pydantic.ValidationError, match=problem):
        auth_options(**data)


def test_urls_list_every_endpoint_for_the_security_check():
    legacy = auth_options(type="cxone_access_key", token_url="https://na1.example/authentication/v1/token/access-key?x=1", access_key_id="a", access_key_secret="b")
    assert legacy.urls() == {
        "token_url": "https://na1.example/authentication/v1/token/access-key?x=1",
        "refresh_url": "https://na1.example/public/user/refresh",
    }
    assert auth_options(type="password", issuer="https://cxone.example", **ACCESS_KEY).urls() == {"issuer": "https://cxone.example"}
    assert auth_options(type="bearer", token="t").urls() == {}
