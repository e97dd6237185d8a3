"""Reading the claims of a JSON Web Token, without verifying it."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


def token_claims(token: str) -> dict[str, Any]:
    """Return the claims (the payload) of a JWT (RFC 7519), or ``{}`` when ``token`` is not one.

    The signature is not checked: the claims are only read to find where to send
    requests (e.g. a CXone token's ``tenantId``), and the API the token is sent to
    checks the token itself. Never use them to decide what a caller may do.

    Args:
        token: An access token.

    Returns:
        The payload's JSON object; ``{}`` for an opaque token or a malformed payload.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1]
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(decoded)
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
