"""OAuth 2.0 access tokens from a token endpoint (RFC 6749).

:class:`TokenProvider` does not depend on any one API: any sink that talks to an API
protected by OAuth 2.0 client credentials (§4.4) or a resource-owner password grant
(§4.3, e.g. CXone access keys) can use it. Tokens that come with a ``refresh_token``
are renewed with it (§6).
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Callable
from typing import Literal

import httpx
import pydantic

from ..logging import register_secret
from ._discovery import openid_token_endpoint
from ._exchange import Limits
from ._token_cache import DEFAULT_LIMITS, TOKEN_REQUEST_HEADERS, TokenCache
from ._urls import display_url


class TokenProvider(TokenCache):
    """Fetch, cache and refresh an OAuth 2.0 access token (see :class:`TokenCache`).

    Args:
        client: The HTTP client to send token requests with.
        token_url: The token endpoint; empty to read it from ``issuer``'s OpenID
            configuration on the first request.
        client_id: The OAuth client id.
        client_secret: The OAuth client secret.
        scope: Space-separated scopes to request; empty to request none.
        grant_type: The ``grant_type`` form value.
        auth_method: ``basic`` sends the client credentials in an HTTP Basic
            ``Authorization`` header, ``form`` in the request body
            (``client_secret_post``).
        username: The ``username`` of a ``password`` grant (a CXone access key id).
        password: The ``password`` of a ``password`` grant (the access key secret).
        issuer: The OpenID issuer whose ``/.well-known/openid-configuration`` names
            the token endpoint, when ``token_url`` is empty.
        credentials_hint: Appended to the error when the endpoint refuses the
            credentials, e.g. which settings or variables to check.
        limits: The deadline and the byte budget of each token request; an answer
            over the budget stops the run.
        clock: Monotonic clock in seconds, injectable for tests.

    Raises:
        ValueError: Neither ``token_url`` nor ``issuer`` was given.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        token_url: str = "",
        client_id: str,
        client_secret: str | pydantic.SecretStr,
        scope: str = "",
        grant_type: str = "client_credentials",
        auth_method: Literal["basic", "form"] = "basic",
        username: str | None = None,
        password: str | pydantic.SecretStr | None = None,
        issuer: str | None = None,
        credentials_hint: str = "check the client id and secret",
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token_url and not issuer:
            raise ValueError("a token_url or an issuer is needed")
        super().__init__(client, credentials_hint=credentials_hint, limits=limits, clock=clock)
        self._token_url = token_url
        self._issuer = issuer
        self._client_id = client_id
        self._client_secret = _secret(client_secret)
        self._scope = scope
        self._grant_type = grant_type
        self._auth_method = auth_method
        self._username = username
        self._password = None if password is None else _secret(password)
        for secret in (self._client_secret, self._password):
            if secret is not None:
                register_secret(secret.get_secret_value())  # masked in every log line from now on

    def __repr__(self) -> str:
        where = display_url(self._token_url) if self._token_url else f"issuer {display_url(self._issuer or '')}"
        return f"TokenProvider(token_url={where!r}, client_id={self._client_id!r})"

    async def _grant_request(self) -> httpx.Request:
        form = {"grant_type": self._grant_type}
        if self._username is not None:
            form["username"] = self._username
        if self._password is not None:
            form["password"] = self._password.get_secret_value()
        if self._scope:
            form["scope"] = self._scope
        return await self._token_request(form)

    def _refresh_request(self, refresh_token: str) -> httpx.Request:
        # The token URL is known by now: the token being refreshed came from it.
        return self._build({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def _token_request(self, form: dict[str, str]) -> httpx.Request:
        if not self._token_url:
            assert self._issuer is not None
            self._token_url = await openid_token_endpoint(self._client, self._issuer, self._limits)
        return self._build(form)

    def _build(self, form: dict[str, str]) -> httpx.Request:
        headers = dict(TOKEN_REQUEST_HEADERS)
        secret = self._client_secret.get_secret_value()
        if self._auth_method == "basic":
            headers["Authorization"] = f"Basic {_basic_credential(self._client_id, secret)}"
        else:
            form = form | {"client_id": self._client_id, "client_secret": secret}
        return self._client.build_request("POST", self._token_url, data=form, headers=headers)


def _secret(value: str | pydantic.SecretStr) -> pydantic.SecretStr:
    return value if isinstance(value, pydantic.SecretStr) else pydantic.SecretStr(value)


def _basic_credential(client_id: str, secret: str) -> str:
    """The credential of an HTTP Basic header (RFC 7617), registered as a secret.

    Its base64 text reveals the secret as plainly as the secret itself, so it is
    masked wherever it might appear.
    """
    # RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    credential = base64.b64encode(pair.encode("ascii")).decode("ascii")
    register_secret(credential)
    return credential
