"""CXone's access-key grants: ``POST /auth/token`` (password and refresh_token grants),
the legacy ``POST /authentication/v1/token/access-key`` and its ``POST /public/user/refresh``.

Every token issued here is JWT-shaped (see :mod:`._jwt`) and comes with a
``refresh_token``, which can be used once: the refresh answers a new one.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from urllib.parse import parse_qsl

from ._http import Request, Response, json_response
from ._jwt import make_token
from ._oauth import TokenStore, client_credentials, oauth_error
from ._settings import SandboxSettings

__all__ = ["ACCESS_KEY_PATH", "REFRESH_PATH", "TOKEN_PATH", "AccessKeyGrants"]

TOKEN_PATH = b"/auth/token"
ACCESS_KEY_PATH = b"/authentication/v1/token/access-key"
REFRESH_PATH = b"/public/user/refresh"
_MAX_REFRESH_TOKENS = 10_000
_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


def _same(given: object, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


class AccessKeyGrants:
    """The token endpoints of access keys, and the refresh tokens they issued.

    Args:
        tokens: Where issued access tokens are remembered (shared with the API's checks).
    """

    def __init__(self, tokens: TokenStore) -> None:
        self._tokens = tokens
        # refresh token -> (the endpoint family that issued it, the access key id)
        self._refresh: dict[str, tuple[str, str]] = {}

    def answer(self, request: Request, settings: SandboxSettings, now: float) -> tuple[Response, str | None]:
        """Answer a request to one of the access-key token endpoints.

        Returns:
            The response, and the grant that issued a token (``password``,
            ``refresh_token``, ``access_key``, ``access_key_refresh``) or None.
        """
        path = request.target.split(b"?", 1)[0]
        if request.method != b"POST":
            return oauth_error(405, "invalid_request", "use POST", [(b"allow", b"POST")]), None
        if path == TOKEN_PATH:
            return self._oauth(request, settings, now)
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return json_response(400, {"error": "invalid_request", "message": "body must be a JSON object"}), None
        if path == ACCESS_KEY_PATH:
            if not _same(body.get("accessKeyId"), settings.access_key_id) or not _same(
                body.get("accessKeySecret"), settings.access_key_secret
            ):
                return json_response(401, {"error": "invalid_client", "message": "invalid access key"}), None
            return self._issue(request, settings, now, "legacy", settings.access_key_id), "access_key"
        subject = self._use_refresh_token(body.get("token"), "legacy")
        if subject is None:
            return json_response(401, {"error": "invalid_grant", "message": "unknown or used refresh token"}), None
        return self._issue(request, settings, now, "legacy", subject), "access_key_refresh"

    def _oauth(self, request: Request, settings: SandboxSettings, now: float) -> tuple[Response, str | None]:
        try:
            form = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            form = {}
        client_id, client_secret = client_credentials(request, form)
        if not _same(client_id, settings.client_id) or not _same(client_secret, settings.client_secret):
            return oauth_error(401, "invalid_client", "client authentication failed"), None
        grant_type = form.get("grant_type")
        if grant_type == "password":
            if not _same(form.get("username"), settings.access_key_id) or not _same(
                form.get("password"), settings.access_key_secret
            ):
                return oauth_error(400, "invalid_grant", "invalid access key"), None
            return self._issue(request, settings, now, "oauth", settings.access_key_id), "password"
        if grant_type == "refresh_token":
            subject = self._use_refresh_token(form.get("refresh_token"), "oauth")
            if subject is None:
                return oauth_error(400, "invalid_grant", "unknown or used refresh token"), None
            return self._issue(request, settings, now, "oauth", subject), "refresh_token"
        if not grant_type:
            return oauth_error(400, "invalid_request", "grant_type is required"), None
        return oauth_error(400, "unsupported_grant_type", "use the password or refresh_token grant"), None

    def _use_refresh_token(self, token: object, family: str) -> str | None:
        if not isinstance(token, str):
            return None
        issued = self._refresh.get(token)
        if issued is None or issued[0] != family:
            return None
        del self._refresh[token]  # used once
        return issued[1]

    def _issue(self, request: Request, settings: SandboxSettings, now: float, family: str, subject: str) -> Response:
        lifetime = settings.token_lifetime
        issued_at = time.time()
        access_token = make_token(request, settings, subject, lifetime, issued_at)
        self._tokens.add(access_token, now + lifetime, now)
        payload: dict[str, object] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": int(lifetime),
            "id_token": make_token(request, settings, subject, lifetime, issued_at),
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        if settings.refresh_tokens:
            if len(self._refresh) >= _MAX_REFRESH_TOKENS:
                self._refresh.clear()
            refresh_token = secrets.token_urlsafe(32)
            self._refresh[refresh_token] = (family, subject)
            payload["refresh_token"] = refresh_token
        return json_response(200, payload, _NO_STORE)
