"""``POST /oauth/token``: the OAuth 2.0 client-credentials grant of the sandbox."""

from __future__ import annotations

import base64
import hmac
import secrets
from urllib.parse import parse_qsl, unquote_plus

from ._http import Request, Response, json_response
from ._settings import SandboxSettings

__all__ = ["TokenStore", "client_credentials", "issue_token", "oauth_error"]

_MAX_TOKENS = 10_000


class TokenStore:
    """The tokens issued, with the sandbox time each one expires."""

    __slots__ = ("_expiry", "_uses")

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._uses: dict[str, int] = {}  # API requests per token, counted only under a max_uses

    def add(self, token: str, expires: float, now: float) -> None:
        """Remember a new token (expired ones are forgotten when there are many)."""
        expiry = self._expiry
        if len(expiry) >= _MAX_TOKENS:
            for key in [k for k, at in expiry.items() if at <= now]:
                del expiry[key]
                self._uses.pop(key, None)
        expiry[token] = expires

    def is_valid(self, authorization: bytes | None, now: float, max_uses: int | None = None) -> bool:
        """Return whether an ``Authorization`` header carries a known, unexpired bearer token.

        Args:
            authorization: The request's ``Authorization`` header.
            now: The sandbox clock.
            max_uses: Most API requests a token is accepted for; it is revoked after them.
        """
        if authorization is None or authorization[:7].lower() != b"bearer ":
            return False
        token = authorization[7:].strip().decode("latin-1")
        expires = self._expiry.get(token)
        if expires is None:
            return False
        if now >= expires:
            del self._expiry[token]
            self._uses.pop(token, None)
            return False
        if max_uses is not None:
            uses = self._uses[token] = self._uses.get(token, 0) + 1
            if uses > max_uses:
                del self._expiry[token], self._uses[token]
                return False
        return True


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """The client id and secret, from an HTTP Basic header or else from the form."""
    auth = request.header(b"authorization")
    if auth is None or auth[:6].lower() != b"basic ":
        return form.get("client_id"), form.get("client_secret")
    try:
        decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    name, sep, secret = decoded.partition(":")
    if not sep:
        return None, None
    return unquote_plus(name), unquote_plus(secret)


def oauth_error(status: int, error: str, description: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return json_response(status, {"error": error, "error_description": description}, headers)


def issue_token(request: Request, settings: SandboxSettings, tokens: TokenStore, now: float) -> Response:
    """Answer a token request.

    Args:
        request: The request to ``/oauth/token``.
        settings: The live settings (credentials, scope, token lifetime).
        tokens: Where an issued token is remembered.
        now: The sandbox clock.

    Returns:
        200 with a new token, or the OAuth error (401 ``invalid_client``, 400
        ``invalid_request``, ``unsupported_grant_type`` or ``invalid_scope``, 405).
    """
    if request.method != b"POST":
        return oauth_error(405, "invalid_request", "use POST", [(b"allow", b"POST")])
    try:
        form = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        form = {}
    client_id, client_secret = client_credentials(request, form)
    if (
        client_id is None
        or client_secret is None
        or not hmac.compare_digest(client_id.encode(), settings.client_id.encode())
        or not hmac.compare_digest(client_secret.encode(), settings.client_secret.encode())
    ):
        return oauth_error(
            401,
            "invalid_client",
            "client authentication failed",
            [(b"www-authenticate", b'Basic realm="cxone-sandbox"')],
        )
    grant_type = form.get("grant_type")
    if not grant_type:
        return oauth_error(400, "invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        return oauth_error(400, "unsupported_grant_type", f"grant type {grant_type!r} is not supported")
    required = settings.required_scope.split()
    scope = form.get("scope", "").strip()
    if not scope:
        scope = " ".join(required)
    else:
        granted = scope.split()
        missing = [s for s in required if s not in granted]
        if missing:
            return oauth_error(400, "invalid_scope", "scope must include " + " ".join(missing))
    token = secrets.token_urlsafe(32)
    tokens.add(token, now + settings.token_lifetime, now)
    return json_response(
        200,
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(settings.token_lifetime),
            "scope": scope,
        },
        [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")],
    )
