"""Access tokens cached and refreshed for every concurrent request of a sink.

:class:`TokenCache` holds what every token grant shares: the cache, the refresh
ahead of expiry, one request at a time to the token endpoint, the ``refresh_token``
a token may come with, and reading the answer without trusting it. Subclasses only
say how to ask for a token.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import math
import re
import time
from collections.abc import Callable
from typing import NoReturn

import httpx
import trio

from .._errors import EtlError, FatalError, ThrottledError, TransientError
from .._headers import parse_retry_after
from ..logging import register_secret
from ._credential import Credential
from ._exchange import ACCEPT_ENCODING, Answer, Limits, exchange
from ._urls import display_url

# Refresh ahead of expiry by the larger of these, so a token never expires mid-request...
_REFRESH_MARGIN = 60.0
_REFRESH_FRACTION = 0.1
# ...but use every token for at least half its lifetime, or short-lived tokens would
# be refreshed on every request.
_MAX_REFRESH_FRACTION = 0.5
# After a failed early refresh, seconds to wait before trying again (the old token is kept).
_REFRESH_RETRY = 5.0
# Only the OAuth ``error`` codes of RFC 6749 and RFC 6750 are quoted back: any other
# text could be anything, the client secret included.
_ERROR_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
        "invalid_token",
        "insufficient_scope",
    }
)
# What an access token may be made of: visible ASCII, the characters an HTTP header can
# carry (RFC 6749 §A.12); a line break or a non-ASCII character could not be sent.
_TOKEN = re.compile(r"[!-~]+", re.ASCII)
_ERROR_HINTS = {
    "invalid_scope": "check the scope",
    "unsupported_grant_type": "check the grant_type",
    "unauthorized_client": "check that the client may use this grant_type and scope",
}
# A refused refresh token (expired, revoked, already used) is not fatal: the grant
# itself is asked again.
_REFRESH_REFUSED = frozenset({400, 401, 403})

#: The token endpoint's answer: read within a minute and a mebibyte.
DEFAULT_LIMITS = Limits(deadline=60.0, max_bytes=1 << 20)
#: The headers of every token request.
TOKEN_REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}


@dataclasses.dataclass(slots=True, frozen=True)
class _Token:
    value: str
    refresh_at: float
    expires_at: float


class _Flight:
    """One token request that concurrent callers wait for instead of repeating it."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.token: _Token | None = None
        self.error: EtlError | None = None


class TokenCache(abc.ABC):
    """Fetch, cache and refresh an access token shared by all tasks.

    The token is refreshed ahead of expiry (by the larger of 60 s and 10% of its
    lifetime, at most half its lifetime) and only one request to the token endpoint
    is in flight at a time: the other callers wait for it and share its result. While
    a still-valid token is being refreshed, callers keep using it instead of waiting.
    When a token comes with a ``refresh_token``, the next token is asked for with it;
    if that is refused, with the original grant again.

    Args:
        client: The HTTP client to send token requests with.
        credentials_hint: Appended to the error when the endpoint refuses the
            credentials, e.g. which settings or variables to check.
        limits: The deadline and the byte budget of each token request; an answer
            over the budget stops the run.
        clock: Monotonic clock in seconds, injectable for tests.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        credentials_hint: str,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._credentials_hint = credentials_hint
        self._limits = limits
        self._clock = clock
        self._current: _Token | None = None
        self._credential: Credential | None = None
        self._refresh_token: str | None = None
        self._flight: _Flight | None = None

    @abc.abstractmethod
    async def _grant_request(self) -> httpx.Request:
        """Build the request for a new token from the configured credentials."""

    @abc.abstractmethod
    def _refresh_request(self, refresh_token: str) -> httpx.Request:
        """Build the request for a new token from the last token's ``refresh_token``."""

    async def token(self) -> str:
        """Return a valid access token, fetching a new one when needed.

        Raises:
            FatalError: The token endpoint refused the credentials, answered nonsense
                (no usable bearer token, a body over the byte budget) or has a
                certificate that cannot be verified.
            ThrottledError: The token endpoint is rate limiting.
            TransientError: The token endpoint is unreachable, failing or too slow.
        """
        while True:
            current = self._current
            now = self._clock()
            if current is not None and now < current.refresh_at:
                return current.value
            flight = self._flight
            if flight is None:
                try:
                    return await self._refresh()
                except TransientError:
                    if current is None or self._clock() >= current.expires_at:
                        raise
                    # The token is still good: keep using it, and try the refresh again
                    # a little later instead of on the very next request.
                    retry_at = min(self._clock() + _REFRESH_RETRY, current.expires_at)
                    self._current = dataclasses.replace(current, refresh_at=retry_at)
                    return current.value
            if current is not None and now < current.expires_at:
                return current.value
            await flight.done.wait()
            if flight.token is not None:
                return flight.token.value
            if flight.error is not None:
                raise copy.copy(flight.error)
            # The refreshing task was cancelled: loop, and one waiter takes over.

    async def credential(self) -> Credential:
        """Return the ``Authorization: Bearer`` header of a valid token (see :meth:`token`)."""
        token = await self.token()
        credential = self._credential
        if credential is None or credential.token != token:
            credential = self._credential = Credential("Authorization", f"Bearer {token}", token)
        return credential

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after the API refused it (HTTP 401).

        Only the current token is dropped, so many requests that fail with the same
        token cause one refresh, not one each.
        """
        if self._current is not None and self._current.value == token:
            self._current = None

    def refused(self, credential: Credential) -> bool:
        """Forget a token the API refused (HTTP 401); a new one may be accepted.

        Returns:
            True: the next :meth:`credential` asks the token endpoint again.
        """
        self.invalidate(credential.token)
        return True

    async def _refresh(self) -> str:
        flight = self._flight = _Flight()
        try:
            flight.token = self._current = await self._fetch()
            return flight.token.value
        except EtlError as exc:
            flight.error = exc
            raise
        finally:
            self._flight = None
            flight.done.set()

    async def _fetch(self) -> _Token:
        started = self._clock()
        refresh_token, self._refresh_token = self._refresh_token, None
        if refresh_token is not None:
            request = self._refresh_request(refresh_token)
            try:
                answer = await self._send(request)
            except TransientError:
                self._refresh_token = refresh_token  # not refused, only unreachable: keep it
                raise
            if answer.status == 200:
                return self._parse(answer, display_url(str(request.url)), started)
            if answer.status not in _REFRESH_REFUSED:
                self._refresh_token = refresh_token
                self._raise_for(answer, display_url(str(request.url)))
        request = await self._grant_request()
        answer = await self._send(request)
        where = display_url(str(request.url))
        if answer.status == 200:
            return self._parse(answer, where, started)
        self._raise_for(answer, where)

    async def _send(self, request: httpx.Request) -> Answer:
        what = f"token request to {display_url(str(request.url))}: "
        return await exchange(self._client, request, self._limits, what=what, oversize=FatalError)

    def _raise_for(self, answer: Answer, where: str) -> NoReturn:
        status = answer.status
        code = _error_code(answer)
        label = f"{status} {code}" if code else str(status)
        if status == 429:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"), date=answer.headers.get("Date"))
            raise ThrottledError(f"token request to {where} was rate limited", retry_after=retry_after, status=status)
        if status >= 500:
            raise TransientError(f"token request to {where} failed (HTTP {label})", status=status)
        if status in (400, 401, 403):
            hint = _ERROR_HINTS.get(code or "", self._credentials_hint)
            raise FatalError(f"token request to {where} was refused ({label}): {hint}")
        raise FatalError(f"token request to {where} failed (HTTP {label}): check the token URL")

    def _parse(self, answer: Answer, where: str, started: float) -> _Token:
        if answer.unreadable:
            raise FatalError(f"token response from {where} cannot be read (body {answer.unreadable}): check the token URL")
        payload = answer.json()
        value = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(value, str) or not value:
            raise FatalError(f"token response from {where} has no access_token: check the token URL")
        register_secret(value)  # masked in every log line from now on
        if not _TOKEN.fullmatch(value):
            raise FatalError(
                f"token response from {where} has an access_token that is not visible ASCII "
                "(it could not be sent in a header): check the token URL"
            )
        assert isinstance(payload, dict)
        token_type = payload.get("token_type")
        if token_type is not None and (not isinstance(token_type, str) or token_type.lower() != "bearer"):
            # The value is not quoted: it is the server's text, and could be anything.
            raise FatalError(f"token response from {where} is not for a bearer token (token_type): check the token URL")
        for name in ("refresh_token", "id_token"):
            other = payload.get(name)
            if isinstance(other, str):
                register_secret(other)
        refresh_token = payload.get("refresh_token")
        if isinstance(refresh_token, str) and _TOKEN.fullmatch(refresh_token):
            self._refresh_token = refresh_token
        lifetime = _lifetime(payload.get("expires_in"))
        if lifetime is None:
            # No known lifetime: keep the token until the API answers 401.
            return _Token(value, refresh_at=math.inf, expires_at=math.inf)
        margin = min(max(_REFRESH_MARGIN, _REFRESH_FRACTION * lifetime), _MAX_REFRESH_FRACTION * lifetime)
        # Measured from when the request was sent, so time in flight counts against it.
        return _Token(value, refresh_at=started + lifetime - margin, expires_at=started + lifetime)


def _lifetime(expires_in: object) -> float | None:
    if isinstance(expires_in, bool):
        return None
    try:
        lifetime = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return lifetime if math.isfinite(lifetime) and lifetime > 0 else None


def _error_code(answer: Answer) -> str | None:
    payload = answer.json()
    code = payload.get("error") if isinstance(payload, dict) else None
    return code if isinstance(code, str) and code in _ERROR_CODES else None
