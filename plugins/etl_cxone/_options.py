"""Options of the ``cxone`` sink."""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic

from etl_core import PluginOptions
from etl_core.http import (
    DISCOVER,
    AuthOptions,
    CaBundle,
    ConnectTimeout,
    KeyFormat,
    MaxConnections,
    check_base_url,
    check_http_url,
    template_fields,
)

__all__ = ["DISCOVER", "CxoneOptions", "option_secrets"]

_FLAT_AUTH_KEYS = ("token_url", "client_id", "client_secret")


class CxoneOptions(PluginOptions):
    """Options of the ``cxone`` sink."""

    #: ``etl guess`` writes these as environment variables: the client-credentials form.
    guess_variables: ClassVar[tuple[str, ...]] = _FLAT_AUTH_KEYS

    base_url: str = pydantic.Field(
        description=(
            "Base URL of your tenant's CXone API, e.g. https://api-na1.niceincontact.com "
            "(may include a path prefix), or discover: read the tenant from the token and "
            "its API host from the issuer's cxone-configuration. Must be https:// unless the "
            "host is loopback or allow_insecure_http is set."
        )
    )
    base_path: str = pydantic.Field(
        default="",
        description=(
            "Path prefix appended to a discovered API host (base_url: discover), e.g. "
            "/inContactAPI/services/v34.0; empty for none."
        ),
    )
    token_url: str | None = pydantic.Field(
        default=None,
        description=(
            "Full URL of the OAuth 2.0 token endpoint that issues client-credentials tokens "
            "(without auth; with auth, its own keys say where tokens come from)."
        ),
    )
    client_id: str | None = pydantic.Field(
        default=None, description="OAuth client id, usually ${CXONE_CLIENT_ID} (without auth)."
    )
    client_secret: pydantic.SecretStr | None = pydantic.Field(
        default=None, description="OAuth client secret, usually ${CXONE_CLIENT_SECRET} (without auth). Never logged."
    )
    scope: str = pydantic.Field(
        default="contact:write", description="Space-separated scopes to request; empty to request none."
    )
    grant_type: str = pydantic.Field(default="client_credentials", description="OAuth grant_type sent to token_url.")
    auth_method: Literal["basic", "form"] = pydantic.Field(
        default="basic",
        description="How the client id and secret reach token_url: an HTTP Basic header, or fields of the form body.",
    )
    auth: AuthOptions | None = pydantic.Field(
        default=None,
        validate_default=True,
        description=(
            "The credentials, chosen by type: client_credentials, password (a CXone access key), "
            "cxone_access_key (the legacy access-key endpoint), bearer or api_key. Without it, "
            "token_url, client_id and client_secret give client-credentials tokens."
        ),
    )
    path_template: str = pydantic.Field(
        default="/api/v2/contacts/{contactId}",
        description=(
            "Path appended to base_url. {name} placeholders are record field names; each value "
            "is validated and percent-encoded as exactly one path segment."
        ),
    )
    method: Literal["PATCH", "PUT", "POST"] = pydantic.Field(
        default="PATCH", description="HTTP method of each request."
    )
    key_field: str = pydantic.Field(
        default="contactId", description="Record field that identifies the record; it must be present."
    )
    key_format: KeyFormat = pydantic.Field(
        default="uuid",
        description=(
            "What a valid key looks like: a uuid (8-4-4-4-12 hex digits), an integer (digits "
            "only) or any non-empty value. Records with an invalid key are rejected, never sent."
        ),
    )
    body_fields: list[str] | None = pydantic.Field(
        default=None,
        description=(
            "Record fields sent in the JSON body. Default: every field not used in path_template. "
            "Empty values (null, \"\") are left out, so an update only changes what the row has."
        ),
    )
    allow_insecure_http: bool = pydantic.Field(
        default=False, description="Allow plain http:// to a non-loopback host (credentials travel unencrypted)."
    )
    timeout: float = pydantic.Field(
        default=30.0,
        gt=0,
        description="Seconds to wait for each read or write, and for a free connection (request_timeout bounds the whole request).",
    )
    request_timeout: float = pydantic.Field(
        default=60.0,
        gt=0,
        description=(
            "Seconds one request may take in all, from sending it to the last byte of the answer, however "
            "slowly the server trickles it; token requests included. A send over it is a transient failure."
        ),
    )
    max_response_bytes: int = pydantic.Field(
        default=1_048_576,
        ge=1,
        description=(
            "Most bytes of one answer's body, counted after decompression (a gzip bomb stops here), error "
            "answers and token responses included. A larger API answer is a transient failure; a larger "
            "token response stops the run."
        ),
    )
    connect_timeout: ConnectTimeout
    max_connections: MaxConnections
    ca_bundle: CaBundle
    missing_file: str = pydantic.Field(
        default="missing-contacts.csv",
        description=(
            "CSV file (columns key,line) listing keys the API answered 404 for, relative to the "
            "run's output directory; empty to write none."
        ),
    )

    _check_base_url = pydantic.field_validator("base_url")(check_base_url)

    @pydantic.field_validator("base_path")
    @classmethod
    def _check_base_path(cls, value: str) -> str:
        if value and template_fields(value):
            raise ValueError("must not have {placeholders}")
        return value.rstrip("/")

    @pydantic.field_validator("token_url")
    @classmethod
    def _check_token_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value, allow_query=True)
        return value

    @pydantic.field_validator("auth")
    @classmethod
    def _check_auth(cls, value: AuthOptions | None, info: pydantic.ValidationInfo) -> AuthOptions | None:
        flat = [name for name in _FLAT_AUTH_KEYS if info.data.get(name) is not None]
        if value is not None and flat:
            raise ValueError(f"give auth or {', '.join(flat)}, not both")
        if value is None and len(flat) < len(_FLAT_AUTH_KEYS):
            missing = [name for name in _FLAT_AUTH_KEYS if name not in flat]
            raise ValueError(f"no credentials: give auth (e.g. type: password), or {' and '.join(missing)}")
        return value

    @pydantic.model_validator(mode="after")
    def _no_flat_settings_with_auth(self) -> CxoneOptions:
        stray = sorted({"scope", "grant_type", "auth_method"} & self.model_fields_set)
        if self.auth is not None and stray:
            raise ValueError(f"{', '.join(stray)} only apply without auth: set them inside auth")
        return self

    @pydantic.field_validator("path_template")
    @classmethod
    def _check_path_template(cls, value: str) -> str:
        template_fields(value)
        return value


def option_secrets(options: CxoneOptions) -> tuple[str, ...]:
    """The secret values of the options (``client_secret``, or those inside ``auth``)."""
    holder: pydantic.BaseModel = options.auth if options.auth is not None else options
    values = (getattr(holder, name) for name in type(holder).model_fields)
    return tuple(value.get_secret_value() for value in values if isinstance(value, pydantic.SecretStr))

