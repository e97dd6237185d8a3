"""Authenticators: the credential each request carries, whatever the ``auth:`` type.

:func:`make_authenticator` turns an ``auth:`` mapping into an :class:`Authenticator`;
:func:`send_authorized` sends with its credential and handles HTTP 401 the same way
for every sink: one new credential, one retry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx

from .._errors import FatalError
from ..logging import register_secret
from ._access_key import AccessKeyTokens
from ._auth_options import ApiKeyAuth, AuthOptions, BearerAuth, ClientCredentialsAuth, CxoneAccessKeyAuth, PasswordAuth
from ._credential import Credential
from ._exchange import Answer, Limits
from ._token_cache import DEFAULT_LIMITS
from ._tokens import TokenProvider


class Authenticator(Protocol):
    """Where a sink gets the credential of each request."""

    async def credential(self) -> Credential:
        """Return the credential to send now (fetching or renewing a token when needed).

        Raises:
            FatalError: The credentials were refused, or the token endpoint answered nonsense.
            ThrottledError: The token endpoint is rate limiting.
            TransientError: The token endpoint is unreachable, failing or too slow.
        """
        ...

    def refused(self, credential: Credential) -> bool:
        """Tell the authenticator that the API answered 401 to ``credential``.

        Returns:
            Whether a new credential may be accepted (False for a fixed one).
        """
        ...


class _FixedCredential:
    """A credential that never changes: a bearer token or an API key."""

    def __init__(self, credential: Credential, what: str) -> None:
        self._credential = credential
        self._what = what

    def __repr__(self) -> str:
        return f"FixedCredential({self._what})"

    async def credential(self) -> Credential:
        return self._credential

    def refused(self, credential: Credential) -> bool:
        return False


def make_authenticator(
    options: AuthOptions,
    client: httpx.AsyncClient,
    *,
    limits: Limits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.monotonic,
) -> Authenticator:
    """Return the authenticator of an ``auth:`` mapping, with every secret in it registered for masking.

    Nothing is sent until the first :meth:`Authenticator.credential`.

    Args:
        options: The validated ``auth:`` mapping.
        client: The client token requests are sent with.
        limits: The deadline and the byte budget of each token request.
        clock: Monotonic clock in seconds, injectable for tests.
    """
    for name in ("client_secret", "password", "access_key_secret", "token", "value"):
        secret = getattr(options, name, None)
        if secret is not None:
            register_secret(secret.get_secret_value())
    if isinstance(options, BearerAuth):
        token = options.token.get_secret_value()
        return _FixedCredential(Credential("Authorization", f"Bearer {token}", token), "bearer")
    if isinstance(options, ApiKeyAuth):
        key = options.value.get_secret_value()
        return _FixedCredential(Credential(options.header, key, key), f"api_key in {options.header}")
    if isinstance(options, CxoneAccessKeyAuth):
        return AccessKeyTokens(
            client,
            token_url=options.token_url,
            refresh_url=options.refresh_endpoint(),
            access_key_id=options.access_key_id,
            access_key_secret=options.access_key_secret,
            credentials_hint="check auth.access_key_id and auth.access_key_secret",
            limits=limits,
            clock=clock,
        )
    assert isinstance(options, ClientCredentialsAuth | PasswordAuth)
    password = options if isinstance(options, PasswordAuth) else None
    hint = "check auth.client_id and auth.client_secret"
    if password is not None:
        hint = "check auth.client_id, auth.client_secret, auth.username and auth.password"
    return TokenProvider(
        client,
        token_url=options.token_url or "",
        issuer=options.issuer,
        client_id=options.client_id,
        client_secret=options.client_secret,
        scope=options.scope,
        grant_type=options.type,
        auth_method="basic" if options.client_auth == "basic" else "form",
        username=password.username if password else None,
        password=password.password if password else None,
        credentials_hint=hint,
        limits=limits,
        clock=clock,
    )


async def send_authorized(
    auth: Authenticator, send: Callable[[Credential], Awaitable[Answer]]
) -> tuple[Answer, Credential]:
    """Send with the current credential; on HTTP 401, once more with a new one.

    Args:
        auth: Where the credential comes from.
        send: Sends the request with a credential and returns the answer.

    Returns:
        The answer (any status but a 401 that a new credential could not cure) and the
        credential it was sent with.

    Raises:
        FatalError: The API refused a fresh credential, or a fixed one (HTTP 401).
        ThrottledError: The token endpoint is rate limiting.
        TransientError: The token endpoint is unreachable, failing or too slow.
    """
    credential = await auth.credential()
    answer = await send(credential)
    if answer.status != 401:
        return answer, credential
    if not auth.refused(credential):
        raise FatalError("the API refused the configured credential (HTTP 401): check auth")
    credential = await auth.credential()
    answer = await send(credential)
    if answer.status == 401:
        raise FatalError(
            "the API refused a freshly issued token (HTTP 401): check that the API client still has access to this tenant"
        )
    return answer, credential
