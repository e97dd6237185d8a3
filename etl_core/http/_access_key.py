"""CXone's legacy access-key token endpoint: JSON in, an OAuth-shaped token out.

``POST {area host}/authentication/v1/token/access-key`` with
``{"accessKeyId", "accessKeySecret"}``; renewed by ``POST {area host}/public/user/refresh``
with ``{"token": refresh_token}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pydantic

from ..logging import register_secret
from ._exchange import Limits
from ._token_cache import DEFAULT_LIMITS, TOKEN_REQUEST_HEADERS, TokenCache
from ._urls import display_url


class AccessKeyTokens(TokenCache):
    """Fetch, cache and refresh a token from CXone's access-key endpoint (see :class:`TokenCache`).

    Args:
        client: The HTTP client to send token requests with.
        token_url: The access-key endpoint.
        refresh_url: The endpoint that renews a token with its ``refresh_token``.
        access_key_id: The access key id.
        access_key_secret: The access key secret.
        credentials_hint: Appended to the error when the endpoint refuses the key.
        limits: The deadline and the byte budget of each token request.
        clock: Monotonic clock in seconds, injectable for tests.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        token_url: str,
        refresh_url: str,
        access_key_id: str,
        access_key_secret: pydantic.SecretStr,
        credentials_hint: str = "check the access key id and secret",
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(client, credentials_hint=credentials_hint, limits=limits, clock=clock)
        self._token_url = token_url
        self._refresh_url = refresh_url
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        register_secret(access_key_secret.get_secret_value())  # masked in every log line from now on

    def __repr__(self) -> str:
        return f"AccessKeyTokens(token_url={display_url(self._token_url)!r}, access_key_id={self._access_key_id!r})"

    async def _grant_request(self) -> httpx.Request:
        body = {"accessKeyId": self._access_key_id, "accessKeySecret": self._access_key_secret.get_secret_value()}
        return self._client.build_request("POST", self._token_url, json=body, headers=TOKEN_REQUEST_HEADERS)

    def _refresh_request(self, refresh_token: str) -> httpx.Request:
        return self._client.build_request("POST", self._refresh_url, json={"token": refresh_token}, headers=TOKEN_REQUEST_HEADERS)
