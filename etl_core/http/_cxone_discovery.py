"""Finding a CXone tenant's API host from its access token.

CXone tokens are JWTs whose claims name the tenant (``tenantId``). The issuer's
``/.well-known/cxone-configuration?tenantId=...`` document names the tenant's API
host (``api_endpoint``), so no area host (``api-na1``...) is hard-coded.
"""

from __future__ import annotations

import dataclasses

import httpx

from .._errors import FatalError
from ._claims import token_claims
from ._discovery import discovered_url, fetch_document, well_known
from ._exchange import Limits


@dataclasses.dataclass(frozen=True, slots=True)
class CxoneEndpoint:
    """Where a CXone tenant's API lives.

    Attributes:
        api_endpoint: The API host's URL, e.g. ``https://api-na1.niceincontact.com``.
        tenant_id: The token's ``tenantId`` claim.
        issuer: The issuer whose configuration document named the host.
        area: The document's ``area`` (e.g. ``na1``), or ``""``.
    """

    api_endpoint: str
    tenant_id: str
    issuer: str
    area: str = ""


async def discover_cxone_api(
    client: httpx.AsyncClient, token: str, limits: Limits, *, issuer: str | None = None
) -> CxoneEndpoint:
    """Find the API host of the tenant a CXone access token belongs to.

    Args:
        client: The client to send the discovery request with.
        token: An access token (a JWT) of the tenant; its claims are read, not verified.
        limits: The deadline and the byte budget of the request.
        issuer: Where ``/.well-known/cxone-configuration`` is, e.g.
            ``https://cxone.niceincontact.com``; the token's ``iss`` claim when None.

    Returns:
        The tenant's API endpoint.

    Raises:
        FatalError: The token names no tenant (or, without ``issuer``, no issuer), or
            the document names no usable ``api_endpoint``.
        ThrottledError: The issuer is rate limiting.
        TransientError: The issuer is unreachable, failing or too slow.
    """
    claims = token_claims(token)
    tenant_id = claims.get("tenantId")
    if not isinstance(tenant_id, str) or not tenant_id:
        raise FatalError("base_url: discover needs a token with a tenantId claim: set base_url to the API host")
    if issuer is None:
        claimed = claims.get("iss")
        if not isinstance(claimed, str) or not claimed.startswith(("https://", "http://")):
            raise FatalError("base_url: discover needs auth.issuer (the token names no issuer): set auth.issuer")
        issuer = claimed
    source = well_known(issuer, "cxone-configuration")
    document = await fetch_document(client, source, limits, params={"tenantId": tenant_id})
    api_endpoint = discovered_url(document, "api_endpoint", source=source, issuer=issuer)
    if "?" in api_endpoint:
        raise FatalError(f"discovery document at {source}: api_endpoint must not contain a query")
    area = document.get("area")
    return CxoneEndpoint(api_endpoint.rstrip("/"), tenant_id, issuer, area if isinstance(area, str) else "")
