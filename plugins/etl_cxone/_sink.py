"""The ``cxone`` sink: one HTTP request per record to the NICE CXone REST API."""

from __future__ import annotations

import contextlib
import json
import math
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import httpx
import pydantic
import trio

from etl_core import (
    ConfigError,
    CsvFile,
    FatalError,
    PermanentError,
    PluginOptions,
    Record,
    RecordRejected,
    RunContext,
    SendResult,
    Sink,
    SinkField,
    ThrottledError,
    TransientError,
    __version__,
    parse_rate_limit,
    parse_retry_after,
    register_secret,
)

from ._auth import TokenProvider
from ._clients import ClientPool
from ._exchange import ACCEPT_ENCODING, Answer, Limits, exchange
from ._fields import CONTACT_FIELDS, KEY_RULES
from ._urls import KeyFormat, check_http_url, check_secure, display_url, render_path, segment_value, template_fields

_SUCCESS = frozenset({200, 201, 202, 204})
_THROTTLED = frozenset({429, 503})
_DETAIL_LIMIT = 500
_REASONS = {
    400: "validation failed",
    404: "contact not found",
    409: "conflict",
    422: "unprocessable entity",
}
_OPEN_ATTEMPTS = 3


class CxoneOptions(PluginOptions):
    """Options of the ``cxone`` sink."""

    base_url: str = pydantic.Field(
        description=(
            "Base URL of your tenant's CXone API, e.g. https://api-na1.niceincontact.com "
            "(may include a path prefix). Must be https:// unless the host is loopback or "
            "allow_insecure_http is set."
        )
    )
    token_url: str = pydantic.Field(
        description="Full URL of the OAuth 2.0 token endpoint that issues client-credentials tokens."
    )
    client_id: str = pydantic.Field(description="OAuth client id, usually ${CXONE_CLIENT_ID}.")
    client_secret: pydantic.SecretStr = pydantic.Field(
        description="OAuth client secret, usually ${CXONE_CLIENT_SECRET}. Never logged."
    )
    scope: str = pydantic.Field(
        default="contact:write", description="Space-separated scopes to request; empty to request none."
    )
    grant_type: str = pydantic.Field(default="client_credentials", description="OAuth grant_type sent to token_url.")
    auth_method: Literal["basic", "form"] = pydantic.Field(
        default="basic",
        description="How the client id and secret reach token_url: an HTTP Basic header, or fields of the form body.",
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
    connect_timeout: float = pydantic.Field(default=10.0, gt=0, description="Seconds to wait for a connection.")
    max_connections: int = pydantic.Field(
        default=100, ge=1, description="Most connections kept open to the API (and reused across requests)."
    )
    ca_bundle: str | None = pydantic.Field(
        default=None,
        description="PEM file of CA certificates to trust instead of the system's (certificates are still verified).",
    )
    missing_file: str = pydantic.Field(
        default="missing-contacts.csv",
        description=(
            "CSV file (columns key,line) listing keys the API answered 404 for, relative to the "
            "run's output directory; empty to write none."
        ),
    )

    @pydantic.field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return check_http_url(value)

    @pydantic.field_validator("token_url")
    @classmethod
    def _check_token_url(cls, value: str) -> str:
        check_http_url(value, allow_query=True)
        return value

    @pydantic.field_validator("path_template")
    @classmethod
    def _check_path_template(cls, value: str) -> str:
        template_fields(value)
        return value


class CxoneSink(Sink):
    """Update NICE CXone records (contacts by default), one HTTP request per record.

    Authenticates with OAuth 2.0 client credentials, builds each URL from a validated
    key, sends the record's non-empty fields as JSON and classifies the answer for
    the runner: 2xx delivered; 400/404/409/422 and other 4xx refused for good (404
    keys are also listed in ``missing_file``); 429/503 throttled with the parsed
    Retry-After; other 5xx, timeouts, dropped connections and answers over
    ``request_timeout`` or ``max_response_bytes`` transient. A 401 gets one token
    refresh and one retry; a second 401, or a certificate that cannot be verified,
    stops the run.

    Args:
        options: The validated options.
        clock: Monotonic clock for token expiry, injectable for tests.
        transport: The httpx transport of every client the sink opens, e.g. the sandbox's
            in-process ``Sandbox.transport()`` in tests; httpx's own when None.
    """

    name = "cxone"
    Options = CxoneOptions

    def __init__(
        self,
        options: CxoneOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(options)
        self.options: CxoneOptions = options
        self._clock = clock
        self._transport = transport
        self._path_fields = template_fields(options.path_template)
        self._client: httpx.AsyncClient | None = None  # token requests
        self._pool: ClientPool | None = None  # API requests
        self._tokens: TokenProvider | None = None
        self._missing: CsvFile | None = None
        self._limits = Limits(deadline=options.request_timeout, max_bytes=options.max_response_bytes)
        # Built once per run (per token for the headers): what every API request shares.
        self._timeout_extension: dict[str, float | None] = {}
        self._static_headers = httpx.Headers()
        self._headers: tuple[str, httpx.Headers] | None = None  # (token, headers with it)

    def check(self) -> None:
        """Check the URLs and the path template.

        Raises:
            ConfigError: An option cannot work; ``path`` names it.
        """
        options = self.options
        checks: list[tuple[str, Callable[[], object]]] = [
            ("base_url", lambda: check_http_url(options.base_url)),
            ("base_url", lambda: check_secure(options.base_url, allow_insecure_http=options.allow_insecure_http)),
            ("token_url", lambda: check_http_url(options.token_url, allow_query=True)),
            ("token_url", lambda: check_secure(options.token_url, allow_insecure_http=options.allow_insecure_http)),
            ("path_template", lambda: template_fields(options.path_template)),
        ]
        for key, check in checks:
            try:
                check()
            except ValueError as exc:
                raise ConfigError(str(exc), path=f"sink.{key}") from None
        if options.ca_bundle is not None:
            # The path is not quoted: after interpolation, any value may be a secret.
            if not os.path.isfile(options.ca_bundle):
                raise ConfigError("not a file (a PEM file of CA certificates is expected)", path="sink.ca_bundle")
            try:
                ssl.create_default_context(cafile=options.ca_bundle)
            except (ssl.SSLError, ValueError):
                raise ConfigError("holds no certificate that can be read (a PEM file of CA certificates is expected)", path="sink.ca_bundle") from None

    async def open(self, context: RunContext) -> None:
        """Open the connection pool and fetch the first token.

        Bad credentials stop the run here, before any record is sent.

        Raises:
            ConfigError: The options fail :meth:`check`.
            FatalError: No token could be obtained.
        """
        self.check()
        if context.dry_run:
            return
        options = self.options
        register_secret(options.client_secret.get_secret_value())
        if options.missing_file:
            # One file per run, like the rejects file (which also lists these rows); flushed
            # per row so the list is complete even if the run is killed.
            self._missing = CsvFile(os.path.join(context.output_dir, options.missing_file), ("key", "line"), flush_rows=True)
        # One SSL context for every client: building one costs tens of milliseconds.
        if options.ca_bundle:
            verify = ssl.create_default_context(cafile=options.ca_bundle)
        else:
            verify = httpx.create_ssl_context(verify=True, trust_env=True)
        timeout = httpx.Timeout(options.timeout, connect=options.connect_timeout)
        headers = {"User-Agent": f"etl/{__version__}", "Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}
        self._timeout_extension = timeout.as_dict()
        self._client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=options.max_connections, max_keepalive_connections=options.max_connections
            ),
            verify=verify,
            trust_env=True,
            headers=headers,
            transport=self._transport,
        )
        # httpx's defaults (e.g. Connection: keep-alive) with ours, as every client sends them.
        self._static_headers = self._client.headers.copy()
        self._static_headers["Content-Type"] = "application/json"
        self._pool = ClientPool(
            lambda: httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                verify=verify,
                trust_env=True,
                headers=headers,
                transport=self._transport,
            ),
            options.max_connections,
        )
        self._tokens = TokenProvider(
            self._client,
            token_url=options.token_url,
            client_id=options.client_id,
            client_secret=options.client_secret,
            scope=options.scope,
            grant_type=options.grant_type,
            auth_method=options.auth_method,
            credentials_hint="check CXONE_CLIENT_ID / CXONE_CLIENT_SECRET",
            limits=self._limits,
            clock=self._clock,
        )
        for attempt in range(1, _OPEN_ATTEMPTS + 1):
            try:
                await self._tokens.token()
                return
            except TransientError as exc:
                if attempt == _OPEN_ATTEMPTS:
                    raise FatalError(f"could not get a token: {exc.reason}") from None
                await trio.sleep(0.5 * attempt)

    @classmethod
    def open_sandbox(cls) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
        """Serve the bundled CXone sandbox on 127.0.0.1 for ``etl run --sandbox``.

        Returns:
            An async context manager yielding the option values (``base_url``,
            ``token_url``, ``client_id``, ``client_secret``) that point the sink at it.
        """
        return _sandbox_overrides()

    @classmethod
    def guess_fields(cls) -> tuple[SinkField, ...]:
        """The key field and the contact fields a PATCH may set, with the default options.

        Returns:
            ``key_field`` (``contactId``, a uuid), then ``firstName``, ``lastName``, ``email``,
            ``phone`` (E.164), ``city``, ``country`` and ``externalId``.
        """
        fields = CxoneOptions.model_fields
        key_format = fields["key_format"].default
        return (SinkField(fields["key_field"].default, rules=KEY_RULES[key_format], key=True), *CONTACT_FIELDS)

    def destination(self) -> str:
        """The endpoint and the API client whose quota the sends count against."""
        options = self.options
        return f"{options.method} {options.base_url}{options.path_template} as {options.client_id} of {options.token_url}"

    async def check_auth(self) -> str:
        """Request one token with the configured credentials (``etl validate --check-auth``).

        Raises:
            FatalError: The token endpoint refused the credentials or could not be reached.
        """
        with tempfile.TemporaryDirectory() as scratch:
            try:
                await self.open(RunContext("check-auth", "check-auth", scratch))
            finally:
                await self.aclose()
        return f"a token was issued by {display_url(self.options.token_url)} for client {self.options.client_id!r}"

    async def aclose(self) -> None:
        """Close the connections and the missing-keys file."""
        if self._missing is not None:
            self._missing.close()
        if self._pool is not None:
            await self._pool.aclose()
        if self._client is not None:
            await self._client.aclose()

    def describe(self, record: Record) -> dict[str, Any]:
        """Return the request :meth:`send` would make: ``{"method", "url", "body"}``.

        Raises:
            RecordRejected: The key is invalid or there is nothing to send.
        """
        url, body = self._request_parts(record)
        return {"method": self.options.method, "url": url, "body": body}

    async def send(self, record: Record) -> SendResult:
        """Send one record and classify the answer (see the class docstring)."""
        url, body = self._request_parts(record)
        content = json.dumps(body, ensure_ascii=False, default=str).encode()
        answer, token = await self._authorized(url, content)
        status = answer.status
        if 200 <= status < 300:
            return SendResult(status=status, rate_limit=parse_rate_limit(answer.headers), sent_at=answer.sent_at)
        headers = answer.headers
        detail = _detail(answer, (token, self.options.client_secret.get_secret_value()))
        if status in _THROTTLED:
            # Clamped by the runner (run.retry.retry_after_max), the same for every sink.
            retry_after = parse_retry_after(headers.get("Retry-After"), date=headers.get("Date"), maximum=math.inf)
            phrase = "too many requests" if status == 429 else "service unavailable"
            raise ThrottledError(
                f"HTTP {status}: {phrase}", retry_after=retry_after, status=status, detail=detail, sent_at=answer.sent_at
            )
        if status >= 500:
            raise TransientError(f"HTTP {status}: server error", status=status, detail=detail)
        if status == 404 and self._missing is not None:
            self._missing.write((str(record.data.get(self.options.key_field)), record.line))
        if status == 403:
            reason = f"HTTP 403: forbidden; check that the token's scope grants {self.options.scope or 'access'}"
        elif status == 400:
            reason = f"HTTP 400: {_validation_reason(answer)}"
        elif status in _REASONS:
            reason = f"HTTP {status}: {_REASONS[status]}"
        elif 300 <= status < 400:
            reason = f"HTTP {status}: redirected, which is not followed; check base_url"
        else:
            reason = f"HTTP {status}: {answer.reason_phrase.lower() or 'refused'}"
        raise PermanentError(reason, status=status, detail=detail)

    def _request_parts(self, record: Record) -> tuple[str, dict[str, Any]]:
        options = self.options
        if options.key_field not in self._path_fields:
            # The key is validated even when the template does not use it.
            segment_value(record.data, options.key_field, options.key_format)
        path = render_path(
            options.path_template, record.data, key_field=options.key_field, key_format=options.key_format
        )
        names = options.body_fields if options.body_fields is not None else [
            name for name in record.data if name not in self._path_fields
        ]
        body = {name: record.data[name] for name in names if record.data.get(name) not in (None, "")}
        # Identifiers alone (when body_fields lists them) would change nothing.
        if all(name == options.key_field or name in self._path_fields for name in body):
            raise RecordRejected("nothing to update")
        return options.base_url + path, body

    async def _authorized(self, url: str, content: bytes) -> tuple[Answer, str]:
        """Send with the current token; on 401, refresh it once and retry."""
        if self._tokens is None:
            raise FatalError("the cxone sink was not opened")
        token = await self._tokens.token()
        answer = await self._request(url, content, token)
        if answer.status != 401:
            return answer, token
        self._tokens.invalidate(token)
        token = await self._tokens.token()
        answer = await self._request(url, content, token)
        if answer.status == 401:
            raise FatalError(
                "the API refused a freshly issued token (HTTP 401): "
                "check that the API client still has access to this tenant"
            )
        return answer, token

    async def _request(self, url: str, content: bytes, token: str) -> Answer:
        pool = self._pool
        assert pool is not None
        headers = self._headers
        if headers is None or headers[0] != token:
            with_token = self._static_headers.copy()
            with_token["Authorization"] = f"Bearer {token}"
            headers = self._headers = (token, with_token)
        # What client.build_request would make, without merging the client's defaults
        # into a new request each time: the headers and timeout above already hold them.
        request = httpx.Request(
            self.options.method, url, content=content, headers=headers[1], extensions={"timeout": self._timeout_extension}
        )
        client = await pool.take()
        try:
            if client.cookies:  # as build_request would: cookies a server set on this client
                client.cookies.set_cookie_header(request)
            return await exchange(client, request, self._limits, what="", oversize=TransientError)
        finally:
            pool.give(client)


def _detail(answer: Answer, secrets: tuple[str, ...]) -> str | None:
    if answer.unreadable:
        return f"(the body could not be read: {answer.unreadable})"
    text = answer.text.strip()
    if not text:
        return None
    # Defence in depth: never let an echoed token or secret reach the rejects file.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:_DETAIL_LIMIT]


def _validation_reason(answer: Answer) -> str:
    """``validation failed`` plus the names of the rejected fields, when the body lists them."""
    payload = answer.json()
    fields = payload.get("fields") if isinstance(payload, dict) else None
    if isinstance(fields, dict) and fields:
        names = sorted(str(name) for name in fields)
        return f"validation failed: {', '.join(names[:5])}" + (", ..." if len(names) > 5 else "")
    return _REASONS[400]


@contextlib.asynccontextmanager
async def _sandbox_overrides() -> AsyncIterator[dict[str, Any]]:
    # Imported here: the server is only needed for --sandbox runs.
    from .sandbox import SandboxSettings, open_sandbox

    settings = SandboxSettings()
    async with open_sandbox(settings) as sandbox:
        yield {
            "base_url": sandbox.url,
            "token_url": sandbox.url + "/oauth/token",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
        }
