"""The ``auth:`` mapping of an HTTP sink: which credentials, and how they are presented.

One model per ``type``, joined in :data:`AuthOptions`, a union tagged by ``type``:
a config error names the key of the chosen type that is wrong.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import pydantic

from ._urls import check_http_url

# An HTTP header name (an RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
# What a fixed token may be made of to be sent in a header: visible ASCII (RFC 6750 §2.1)...
_TOKEN_VALUE = re.compile(r"[!-~]+", re.ASCII)
# ...and a header value: visible ASCII words separated by single spaces (e.g. "ApiKey abc").
_HEADER_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*", re.ASCII)


def _check_token(value: pydantic.SecretStr) -> pydantic.SecretStr:
    # The value is not quoted: it is a secret.
    if not _TOKEN_VALUE.fullmatch(value.get_secret_value()):
        raise ValueError("must be visible ASCII without spaces (it is sent in a header)")
    return value


def _check_header_value(value: pydantic.SecretStr) -> pydantic.SecretStr:
    if not _HEADER_VALUE.fullmatch(value.get_secret_value()):
        raise ValueError("must be visible ASCII, words separated by single spaces (it is sent in a header)")
    return value


class _AuthModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    def urls(self) -> dict[str, str]:
        """Return ``{option key: URL}`` of every URL this configuration sends to (for security checks)."""
        return {
            name: value
            for name in ("issuer", "token_url", "refresh_url")
            if isinstance(value := getattr(self, name, None), str) and value
        }


def _check_url(value: str | None) -> str | None:
    return None if value is None else check_http_url(value, allow_query=True)


def _check_issuer(value: str | None) -> str | None:
    return None if value is None else check_http_url(value)


class _OAuthModel(_AuthModel):
    token_url: str | None = pydantic.Field(
        default=None, description="The OAuth 2.0 token endpoint; give it or `issuer`."
    )
    issuer: str | None = pydantic.Field(
        default=None,
        description=(
            "OpenID issuer, e.g. https://cxone.niceincontact.com: the token endpoint is read from "
            "{issuer}/.well-known/openid-configuration when token_url is not given."
        ),
    )
    client_id: str = pydantic.Field(description="OAuth client id of the registered application.")
    client_secret: pydantic.SecretStr = pydantic.Field(description="OAuth client secret. Never logged.")
    scope: str = pydantic.Field(default="", description="Space-separated scopes to request; empty to request none.")
    client_auth: Literal["basic", "post"] = pydantic.Field(
        default="basic",
        description=(
            "How the client id and secret reach the token endpoint: an HTTP Basic header "
            "(client_secret_basic) or fields of the form body (client_secret_post)."
        ),
    )

    _check_token_url = pydantic.field_validator("token_url")(_check_url)
    _check_issuer = pydantic.field_validator("issuer")(_check_issuer)

    @pydantic.model_validator(mode="after")
    def _one_source_of_token_url(self) -> _OAuthModel:
        if not self.token_url and not self.issuer:
            raise ValueError("give token_url or issuer (whose OpenID configuration names the token endpoint)")
        return self


class ClientCredentialsAuth(_OAuthModel):
    """OAuth 2.0 client credentials (RFC 6749 §4.4): the application authenticates as itself."""

    type: Literal["client_credentials"]


class PasswordAuth(_OAuthModel):
    """OAuth 2.0 password grant (RFC 6749 §4.3), as CXone back-end apps use it with an access key."""

    type: Literal["password"]
    username: str = pydantic.Field(description="The grant's username: a CXone access key id.")
    password: pydantic.SecretStr = pydantic.Field(description="The grant's password: the access key secret. Never logged.")


class CxoneAccessKeyAuth(_AuthModel):
    """CXone's legacy access-key endpoint: JSON ``{accessKeyId, accessKeySecret}``, renewed by ``/public/user/refresh``."""

    type: Literal["cxone_access_key"]
    token_url: str = pydantic.Field(
        description="The access-key endpoint, e.g. https://na1.nice-incontact.com/authentication/v1/token/access-key."
    )
    refresh_url: str | None = pydantic.Field(
        default=None,
        description="Where a token is renewed with its refresh_token; default: /public/user/refresh on token_url's host.",
    )
    access_key_id: str = pydantic.Field(description="The access key id.")
    access_key_secret: pydantic.SecretStr = pydantic.Field(description="The access key secret. Never logged.")

    _check_token_url = pydantic.field_validator("token_url", "refresh_url")(_check_url)

    def urls(self) -> dict[str, str]:
        """Return ``{option key: URL}`` of every URL this configuration sends to, the default refresh_url included."""
        return {"token_url": self.token_url, "refresh_url": self.refresh_endpoint()}

    def refresh_endpoint(self) -> str:
        """The refresh URL: ``refresh_url``, or ``/public/user/refresh`` on the token endpoint's host."""
        if self.refresh_url:
            return self.refresh_url
        scheme, _, rest = self.token_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}/public/user/refresh"


class BearerAuth(_AuthModel):
    """A fixed bearer token, sent as ``Authorization: Bearer <token>``; it cannot be renewed."""

    type: Literal["bearer"]
    token: pydantic.SecretStr = pydantic.Field(description="The token, usually ${API_TOKEN}. Never logged.")

    _check_token = pydantic.field_validator("token")(_check_token)


class ApiKeyAuth(_AuthModel):
    """A fixed API key sent in a header of every request."""

    type: Literal["api_key"]
    header: str = pydantic.Field(default="X-API-Key", description="Name of the header that carries the key.")
    value: pydantic.SecretStr = pydantic.Field(description="The key, usually ${API_KEY}. Never logged.")

    @pydantic.field_validator("header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be a header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or colon)")
        return value

    _check_value = pydantic.field_validator("value")(_check_header_value)


#: The ``auth:`` mapping of an HTTP sink, chosen by its ``type``.
AuthOptions = Annotated[
    ClientCredentialsAuth | PasswordAuth | CxoneAccessKeyAuth | BearerAuth | ApiKeyAuth,
    pydantic.Field(discriminator="type"),
]
