"""Discovery documents: JSON a server publishes under ``/.well-known/`` to say where things are."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx

from .._errors import FatalError, ThrottledError, TransientError
from .._headers import parse_retry_after
from ._exchange import Limits, exchange
from ._token_cache import TOKEN_REQUEST_HEADERS
from ._urls import check_http_url, display_url, is_loopback


async def fetch_document(
    client: httpx.AsyncClient, url: str, limits: Limits, *, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """GET a JSON discovery document.

    Args:
        client: The client to send with.
        url: The document's URL.
        limits: The deadline and the byte budget.
        params: Query parameters.

    Returns:
        The document, a JSON object.

    Raises:
        FatalError: The server answered something other than a JSON object (after a
            4xx, the URL or the parameters are wrong: retrying cannot help).
        ThrottledError: The server is rate limiting.
        TransientError: The server is unreachable, failing or too slow.
    """
    where = display_url(url)
    request = client.build_request("GET", url, params=params, headers=TOKEN_REQUEST_HEADERS)
    answer = await exchange(client, request, limits, what=f"discovery request to {where}: ", oversize=FatalError)
    status = answer.status
    if status == 429:
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), date=answer.headers.get("Date"))
        raise ThrottledError(f"discovery request to {where} was rate limited", retry_after=retry_after, status=status)
    if status >= 500:
        raise TransientError(f"discovery request to {where} failed (HTTP {status})", status=status)
    if status != 200:
        raise FatalError(f"discovery request to {where} failed (HTTP {status}): check the issuer")
    document = answer.json()
    if not isinstance(document, dict):
        raise FatalError(f"discovery document at {where} is not a JSON object: check the issuer")
    return document


def discovered_url(document: dict[str, Any], name: str, *, source: str, issuer: str) -> str:
    """Return the URL ``document[name]``, checked like a configured one.

    A document fetched over https must not send credentials to a plain http:// URL
    (unless it is loopback, like the issuer of a local test server).

    Raises:
        FatalError: The value is missing or not a usable URL.
    """
    value = document.get(name)
    if not isinstance(value, str):
        raise FatalError(f"discovery document at {display_url(source)} has no {name}: check the issuer")
    try:
        url = check_http_url(value, allow_query=True)
    except ValueError as exc:
        raise FatalError(f"discovery document at {display_url(source)}: {name} {exc}") from None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and urllib.parse.urlsplit(issuer).scheme == "https" and not is_loopback(parts.hostname or ""):
        raise FatalError(f"discovery document at {display_url(source)}: {name} is plain http:// while the issuer is https://")
    return url


def well_known(issuer: str, name: str) -> str:
    """The URL of the issuer's ``/.well-known/{name}`` document."""
    return f"{issuer.rstrip('/')}/.well-known/{name}"


async def openid_token_endpoint(client: httpx.AsyncClient, issuer: str, limits: Limits) -> str:
    """Read the token endpoint from ``{issuer}/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0).

    Raises:
        FatalError: No such document, or it names no usable ``token_endpoint``.
        ThrottledError: The issuer is rate limiting.
        TransientError: The issuer is unreachable, failing or too slow.
    """
    source = well_known(issuer, "openid-configuration")
    document = await fetch_document(client, source, limits)
    return discovered_url(document, "token_endpoint", source=source, issuer=issuer)
