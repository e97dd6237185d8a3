"""Options of the ``http`` sink."""

from __future__ import annotations

import re
from typing import Any, Literal

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
    template_fields,
)

from ._results import check_pointer
from ._status import Action, parse_status_key
from ._templates import ITEMS, Template

__all__ = ["DISCOVER", "BatchOptions", "HttpOptions", "ResultsOptions"]

# An HTTP header name (RFC 9110 token) and a value without line breaks or other controls.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Set by the sink for every request: a config cannot replace them.
_RESERVED_HEADERS = frozenset({"accept-encoding", "authorization", "content-length", "content-type", "host", "transfer-encoding"})


class ResultsOptions(PluginOptions):
    """Where a batch answer says what happened to each item."""

    pointer: str = pydantic.Field(
        description="JSON pointer to the array of per-item results in the answer, e.g. /entryResults."
    )
    match: str = pydantic.Field(
        default="index",
        description=(
            "How a result finds its record: index (the n-th result is the n-th item sent) or the name "
            "of a field every result and every item sent (or its record) have, e.g. externalId."
        ),
    )
    success: str | None = pydantic.Field(
        default="success",
        description=(
            "Field (or JSON pointer inside a result, /a/b) that is true for an applied item; null: an "
            "item without an error was applied."
        ),
    )
    error: str | None = pydantic.Field(
        default="error", description="Field (or JSON pointer inside a result) holding the item's error message."
    )

    @pydantic.field_validator("pointer")
    @classmethod
    def _check_pointer(cls, value: str) -> str:
        return check_pointer(value)

    @pydantic.field_validator("success", "error")
    @classmethod
    def _check_field(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("/"):
            check_pointer(value)
        return value


class BatchOptions(PluginOptions):
    """Several records per request."""

    size: int = pydantic.Field(ge=1, le=100_000, description="Most records in one request.")
    max_bytes: int | None = pydantic.Field(
        default=None,
        ge=256,
        description="Most bytes of one request's body (the API's limit); a batch that would be larger is cut short.",
    )
    body: Any = pydantic.Field(
        description=(
            "JSON template of the request body, with the string \"{items}\" where the list of items goes, "
            "e.g. {addressBookEntries: \"{items}\"}; each item is the sink's body template filled from one record."
        )
    )
    results: ResultsOptions | None = pydantic.Field(
        default=None,
        description="Where the answer gives each item's outcome; null: every item shares the outcome of the whole answer.",
    )

    @pydantic.field_validator("body")
    @classmethod
    def _check_body(cls, value: Any) -> Any:
        fields = Template(value).fields
        if fields != (ITEMS,):
            raise ValueError('must hold "{items}" once and no other placeholder')
        if _count_items(value) != 1:
            raise ValueError('must hold "{items}" exactly once, as a whole string')
        return value


class HttpOptions(PluginOptions):
    """Options of the ``http`` sink."""

    base_url: str = pydantic.Field(
        description=(
            "Base URL of the API, e.g. https://api.example.com/v1 (may include a path prefix). Must be "
            "https:// unless the host is loopback or allow_insecure_http is set. discover: the NICE CXone "
            "API host of the token's tenant, from the issuer's cxone-configuration document."
        )
    )
    auth: AuthOptions | None = pydantic.Field(
        default=None,
        description=(
            "How requests are authenticated: {type: client_credentials | password | cxone_access_key | bearer | "
            "api_key, ...} (see Authentication in docs/cxone.md); none when null."
        ),
    )
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = pydantic.Field(
        default="POST", description="HTTP method of each request."
    )
    path: str = pydantic.Field(
        default="/",
        description=(
            "Path appended to base_url. {name} placeholders are record field names; each value is validated "
            "and percent-encoded as exactly one path segment. In batch mode it may hold none."
        ),
    )
    query: dict[str, str] = pydantic.Field(
        default_factory=dict,
        description=(
            "Query parameters: name to a text template ({field} placeholders allowed outside batch mode; a "
            "parameter whose field is empty is left out). Values are percent-encoded."
        ),
    )
    body: Any = pydantic.Field(
        default=None,
        description=(
            "JSON template of the body (of each item in batch mode): strings \"{field}\" are replaced by the "
            "record's values, and a string whose field is empty is left out. Default: every field not used in "
            "path or query, empty ones left out."
        ),
    )
    headers: dict[str, str] = pydantic.Field(
        default_factory=dict,
        description=(
            "Headers of every request, added to User-Agent, Accept: application/json and Content-Type: "
            "application/json (an Accept here replaces the default)."
        ),
    )
    key_field: str | None = pydantic.Field(
        default=None,
        description="Record field that identifies the record (validated by key_format, listed in missing_file); none when null.",
    )
    key_format: KeyFormat = pydantic.Field(
        default="any",
        description="What a valid key looks like: uuid, integer or any non-empty value. Records with an invalid key are rejected, never sent.",
    )
    status: dict[str, Action] = pydantic.Field(
        default_factory=dict,
        description=(
            "What each status means, added to the defaults (2xx ok, 3xx/4xx reject, 401 stop after one token "
            "refresh, 404 missing, 429 and 503 throttle, 5xx retry): keys are a status (409), a class (4xx) "
            "or a range (500-504), values ok, retry, throttle, reject, missing or stop; the narrowest key wins."
        ),
    )
    batch: BatchOptions | None = pydantic.Field(
        default=None, description="Send several records per request (see Batch mode); null: one record per request."
    )
    allow_insecure_http: bool = pydantic.Field(
        default=False, description="Allow plain http:// to a non-loopback host (credentials travel unencrypted)."
    )
    timeout: float = pydantic.Field(
        default=30.0, gt=0, description="Seconds to wait for each read or write, and for a free connection."
    )
    request_timeout: float = pydantic.Field(
        default=60.0,
        gt=0,
        description="Seconds one request may take in all, to the last byte of the answer; over it is a transient failure.",
    )
    connect_timeout: ConnectTimeout
    max_response_bytes: int = pydantic.Field(
        default=1_048_576,
        ge=1,
        description="Most bytes of one answer's body, counted after decompression; a larger answer is a transient failure.",
    )
    max_connections: MaxConnections
    ca_bundle: CaBundle
    missing_file: str = pydantic.Field(
        default="missing.csv",
        description=(
            "CSV file (columns key,line) listing the key_field of records answered with a status whose action "
            "is missing, relative to the run's output directory; empty to write none."
        ),
    )

    _check_base_url = pydantic.field_validator("base_url")(check_base_url)

    @pydantic.field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        template_fields(value)
        return value

    @pydantic.field_validator("query")
    @classmethod
    def _check_query(cls, value: dict[str, str]) -> dict[str, str]:
        for template in value.values():
            Template(template)
        return value

    @pydantic.field_validator("body")
    @classmethod
    def _check_body(cls, value: Any) -> Any:
        Template(value)
        return value

    @pydantic.field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name} is set by the sink and cannot be configured")
            if not _HEADER_VALUE.fullmatch(text):
                raise ValueError(f"the value of {name} has a line break or a control character")
        return value

    @pydantic.field_validator("status")
    @classmethod
    def _check_status(cls, value: dict[str, Action]) -> dict[str, Action]:
        for key in value:
            parse_status_key(key)
        return value

    @pydantic.model_validator(mode="after")
    def _check_discovery(self) -> HttpOptions:
        if self.base_url == DISCOVER and (self.auth is None or self.auth.type == "api_key"):
            raise ValueError("base_url: discover reads the tenant from an access token: it needs auth other than api_key")
        return self

    @pydantic.model_validator(mode="after")
    def _check_batch(self) -> HttpOptions:
        if self.batch is not None:
            per_record = set(template_fields(self.path))
            for template in self.query.values():
                per_record.update(Template(template).fields)
            if per_record:
                raise ValueError(
                    f"in batch mode, path and query are shared by every record of a request: "
                    f"they cannot use {{{sorted(per_record)[0]}}}"
                )
        return self


def _count_items(value: Any) -> int:
    if value == "{" + ITEMS + "}":
        return 1
    if isinstance(value, dict):
        return sum(_count_items(item) for item in value.values())
    if isinstance(value, list):
        return sum(_count_items(item) for item in value)
    return 0
