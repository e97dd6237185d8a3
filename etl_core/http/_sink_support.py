"""What every HTTP sink does the same way: its clients, its CA bundle, its first requests."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import httpx
import structlog
import trio

from .._errors import ConfigError, FatalError, TransientError
from .._version import __version__
from ._clients import ClientPool
from ._connection import ConnectionTransport
from ._credential import Credential
from ._cxone_discovery import discover_cxone_api
from ._exchange import ACCEPT_ENCODING, Answer, Limits, exchange
from ._urls import check_secure

_T = TypeVar("_T")
#: Tries of each request a sink makes when it opens (a token, the API host).
_OPEN_ATTEMPTS = 3


class SinkConnections:
    """The HTTP clients of one sink: one for tokens and discovery, a pool for the API requests.

    Every client shares one SSL context (building one costs tens of milliseconds), the
    timeouts and the default headers (``User-Agent``, ``Accept: application/json``,
    ``Accept-Encoding``, then ``headers``).

    Args:
        limits: The deadline and byte budget of each API request.
        timeout: Seconds to wait for each read or write, and for a free connection.
        connect_timeout: Seconds to wait for a connection.
        max_connections: Most connections open to the API at once.
        ca_bundle: PEM file of CA certificates to trust instead of the system's.
        headers: More headers for every request (tokens and discovery included).
        transport: The httpx transport of every client, e.g. a sandbox's in-process
            one in tests; httpx's own when None.
    """

    def __init__(
        self,
        *,
        limits: Limits,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        ca_bundle: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if ca_bundle:
            verify = ssl.create_default_context(cafile=ca_bundle)
        else:
            verify = httpx.create_ssl_context(verify=True, trust_env=True)
        timeouts = httpx.Timeout(timeout, connect=connect_timeout)
        defaults = {"User-Agent": f"etl/{__version__}", "Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}
        defaults.update(headers or {})
        self._limits = limits
        self._timeout_extension = timeouts.as_dict()

        def new_client(connections: int) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                timeout=timeouts,
                limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                verify=verify,
                trust_env=True,
                headers=defaults,
                transport=transport,
            )

        #: The client of token and discovery requests.
        self.client = new_client(max_connections)

        def new_api_client() -> httpx.AsyncClient:
            client = new_client(1)
            if transport is None:
                # A client of one connection: that connection is all its transport needs to
                # be. Set in place of httpx's own after the client is built, because a
                # transport given to the constructor turns off the proxies that the
                # environment names (a proxied URL still goes through its proxy transport).
                client._transport = ConnectionTransport(verify)
            return client

        self._pool = ClientPool(new_api_client, max_connections)
        # httpx's defaults (e.g. Connection: keep-alive) with ours, as every client sends them.
        self._static_headers = self.client.headers.copy()
        self._static_headers["Content-Type"] = "application/json"
        # Built once per credential and body kind: (credential, has a body) -> headers.
        self._headers: dict[tuple[Credential | None, bool], httpx.Headers] = {}

    async def request(self, method: str, url: str, content: bytes | None, credential: Credential | None) -> Answer:
        """Send one API request on a pooled client and read its whole answer.

        Args:
            method: The HTTP method.
            url: The full URL.
            content: The JSON body, or None for none (then no ``Content-Type`` either).
            credential: Sent in its header, unless None.

        Returns:
            The answer, whatever its status.

        Raises:
            TransientError: A timeout, a dropped connection, or an answer over the limits.
            FatalError: The server's certificate could not be verified.
        """
        key = (credential, content is not None)
        headers = self._headers.get(key)
        if headers is None:
            headers = self._static_headers.copy()
            if content is None:
                del headers["Content-Type"]
            if credential is not None:
                headers[credential.header] = credential.value
            if len(self._headers) > 8:  # old credentials are never used again
                self._headers.clear()
            self._headers[key] = headers
        # What client.build_request would make, without merging the client's defaults
        # into a new request each time: the headers and timeout above already hold them.
        request = httpx.Request(method, url, content=content, headers=headers, extensions={"timeout": self._timeout_extension})
        client = await self._pool.take()
        try:
            if client.cookies:  # as build_request would: cookies a server set on this client
                client.cookies.set_cookie_header(request)
            send = functools.partial(_send, client)
            return await exchange(client, request, self._limits, what="", oversize=TransientError, send=send)
        finally:
            self._pool.give(client)

    async def aclose(self) -> None:
        """Close every client and its connections."""
        await self._pool.aclose()
        await self.client.aclose()


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """``client.send(request, stream=True)``, straight to its connection unless a proxy carries the URL.

    What the client would add on the way costs a third of a request's CPU in httpx and
    is not needed here: no auth flow, redirects or event hooks; the request already has
    the client's headers, cookies and timeouts. Only the cookies a server sets are kept,
    as the client would.
    """
    transport = client._transport_for_url(request.url)
    if not isinstance(transport, ConnectionTransport):
        return await client.send(request, stream=True)
    response = await transport.handle_async_request(request)
    response.request = request
    if "set-cookie" in response.headers:
        client.cookies.extract_cookies(response)
    return response


def check_ca_bundle(path: str | None) -> None:
    """Check that the ``ca_bundle`` option names a readable PEM file of CA certificates.

    Args:
        path: The option's value; None passes.

    Raises:
        ConfigError: The file is missing or holds no certificate (``path`` is ``sink.ca_bundle``).
    """
    if path is None:
        return
    # The path is not quoted: after interpolation, any value may be a secret.
    if not os.path.isfile(path):
        raise ConfigError("not a file (a PEM file of CA certificates is expected)", path="sink.ca_bundle")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError):
        raise ConfigError("holds no certificate that can be read (a PEM file of CA certificates is expected)", path="sink.ca_bundle") from None


async def retry_open(attempt: Callable[[], Awaitable[_T]], failure: str) -> _T:
    """Run a request a sink makes when it opens, retrying a transient failure twice.

    Args:
        attempt: Makes the request, e.g. ``auth.credential``.
        failure: What failed, e.g. ``could not get a token``, for the error.

    Returns:
        What ``attempt`` returned.

    Raises:
        FatalError: The third try failed too (``<failure>: <reason>``).
    """
    for number in range(1, _OPEN_ATTEMPTS + 1):
        try:
            return await attempt()
        except TransientError as exc:
            if number == _OPEN_ATTEMPTS:
                raise FatalError(f"{failure}: {exc.reason}") from None
            await trio.sleep(0.5 * number)
    raise AssertionError("unreachable")


async def find_api_host(
    client: httpx.AsyncClient,
    token: str,
    limits: Limits,
    *,
    issuer: str | None,
    allow_insecure_http: bool,
    failure: str,
) -> str:
    """Discover the CXone tenant's API host (``base_url: discover``) and log it.

    Args:
        client: The client of token and discovery requests.
        token: The access token whose ``tenantId`` names the tenant.
        limits: The deadline and byte budget of each request.
        issuer: The token issuer; None: the token's ``iss``.
        allow_insecure_http: Accept a plain http:// host that is not loopback.
        failure: What failed, for the error after three tries.

    Returns:
        The API host, e.g. ``https://api-na1.niceincontact.com`` (logged as ``api_endpoint_discovered``).

    Raises:
        FatalError: The host could not be found, or is not secure.
    """
    found = await retry_open(lambda: discover_cxone_api(client, token, limits, issuer=issuer), failure)
    try:
        check_secure(found.api_endpoint, allow_insecure_http=allow_insecure_http)
    except ValueError as exc:
        raise FatalError(f"the discovered API host {found.api_endpoint}: {exc}") from None
    structlog.get_logger("etl").info(
        "api_endpoint_discovered",
        api_endpoint=found.api_endpoint,
        tenant_id=found.tenant_id,
        issuer=found.issuer,
        area=found.area,
    )
    return found.api_endpoint
