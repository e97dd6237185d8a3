"""JWT-shaped access tokens, like CXone's: their claims name the tenant."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from ._http import Request
from ._settings import SandboxSettings

__all__ = ["issuer_of", "make_token"]

# The sandbox signs nothing: the signature is random bytes, and the sandbox knows its
# tokens by their whole text (see TokenStore), as a real server knows its keys.
_HEADER = {"alg": "RS256", "typ": "JWT"}


def _segment(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def issuer_of(request: Request) -> str:
    """The sandbox's own URL as the client reached it (``http://`` + the Host header)."""
    host = (request.header(b"host") or b"127.0.0.1").decode("ascii", "replace")
    return f"http://{host}"


def make_token(request: Request, settings: SandboxSettings, subject: str, lifetime: float, issued_at: float) -> str:
    """Return a new JWT-shaped access token with CXone's tenant claims.

    Args:
        request: The token request (its Host gives the ``iss`` claim).
        settings: The tenant's ``tenant_id``, ``area`` and ``bu_id``.
        subject: The ``sub`` claim (the access key id or client id).
        lifetime: Seconds until ``exp``.
        issued_at: The ``iat`` claim, in seconds since the epoch.
    """
    claims = {
        "iss": issuer_of(request),
        "sub": subject,
        "tenantId": settings.tenant_id,
        "area": settings.area,
        "icBUId": settings.bu_id,
        "iat": int(issued_at),
        "exp": int(issued_at + lifetime),
        "jti": secrets.token_hex(8),
    }
    signature = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    return f"{_segment(_HEADER)}.{_segment(claims)}.{signature}"
