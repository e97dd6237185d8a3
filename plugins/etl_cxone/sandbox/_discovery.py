"""``GET /.well-known/openid-configuration`` and ``/.well-known/cxone-configuration?tenantId=...``."""

from __future__ import annotations

from urllib.parse import parse_qs

from ._http import Request, Response, json_response
from ._jwt import issuer_of
from ._settings import SandboxSettings

__all__ = ["DISCOVERY_PREFIX", "discovery_document"]

DISCOVERY_PREFIX = b"/.well-known/"


def discovery_document(request: Request, settings: SandboxSettings) -> Response:
    """Answer a request for a discovery document.

    The sandbox is its own issuer, token endpoint and API host: every URL in the
    documents is the sandbox's, as the client reached it.

    Returns:
        200 with the document; 400 without a ``tenantId`` (cxone-configuration); 404
        for an unknown tenant or document; 405 for a method other than GET.
    """
    if request.method != b"GET":
        return json_response(405, {"error": "method_not_allowed"}, [(b"allow", b"GET")])
    path, _, query = request.target.partition(b"?")
    base = issuer_of(request)
    if path == DISCOVERY_PREFIX + b"openid-configuration":
        return json_response(
            200,
            {
                "issuer": base,
                "token_endpoint": base + "/auth/token",
                "authorization_endpoint": base + "/auth/authorize",
                "grant_types_supported": ["password", "refresh_token", "client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "response_types_supported": ["code"],
            },
        )
    if path == DISCOVERY_PREFIX + b"cxone-configuration":
        tenants = parse_qs(query.decode("ascii", "replace")).get("tenantId", [])
        if not tenants or not tenants[0]:
            return json_response(400, {"error": "invalid_request", "message": "tenantId is required"})
        if tenants[0] != settings.tenant_id:
            return json_response(404, {"error": "not_found", "message": "unknown tenant"})
        host = base.partition("://")[2].rsplit(":", 1)[0]
        return json_response(200, {"tenantId": tenants[0], "api_endpoint": base, "area": settings.area, "domain": host})
    return json_response(404, {"error": "not_found", "message": "no such document"})
