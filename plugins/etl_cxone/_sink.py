"""The ``cxone`` sink: one HTTP request per record to the NICE CXone REST API."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from etl_core import (
    ConfigError,
    CsvFile,
    FatalError,
    Record,
    RecordRejected,
    RunContext,
    SendResult,
    Sink,
    SinkField,
    parse_rate_limit,
)
from etl_core.http import (
    Answer,
    ApiKeyAuth,
    Authenticator,
    BearerAuth,
    ClientCredentialsAuth,
    Credential,
    CxoneAccessKeyAuth,
    Limits,
    PasswordAuth,
    SinkConnections,
    TokenProvider,
    check_ca_bundle,
    check_http_url,
    check_secure,
    display_url,
    find_api_host,
    make_authenticator,
    render_path,
    retry_open,
    segment_value,
    send_authorized,
    template_fields,
)

from ._answers import refusal
from ._fields import CONTACT_FIELDS, KEY_RULES
from ._options import DISCOVER, CxoneOptions, option_secrets

__all__ = ["CxoneOptions", "CxoneSink"]


class CxoneSink(Sink):
    """Update NICE CXone records (contacts by default), one HTTP request per record.

    Authenticates as ``auth`` says (OAuth 2.0 client credentials by default), finds
    the API host from the token when ``base_url`` is ``discover``, builds each URL from a validated
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
        self._connections: SinkConnections | None = None
        self._auth: Authenticator | None = None
        # With base_url: discover, a placeholder until open() finds the host (dry runs show it).
        self._base_url = "{api_endpoint}" + options.base_path if options.base_url == DISCOVER else options.base_url
        self._missing: CsvFile | None = None
        self._secrets = option_secrets(options)
        # The scopes a 403 names.
        self._scope = options.scope if options.auth is None else getattr(options.auth, "scope", "")
        self._limits = Limits(deadline=options.request_timeout, max_bytes=options.max_response_bytes)

    def check(self) -> None:
        """Check the URLs and the path template.

        Raises:
            ConfigError: An option cannot work; ``path`` names it.
        """
        options = self.options
        insecure = options.allow_insecure_http
        checks: list[tuple[str, Callable[[], object]]] = [("path_template", lambda: template_fields(options.path_template))]
        if options.base_url != DISCOVER:
            checks.append(("base_url", lambda: check_http_url(options.base_url)))
            checks.append(("base_url", lambda: check_secure(options.base_url, allow_insecure_http=insecure)))
        for key, url in self._auth_urls().items():
            checks.append((key, functools.partial(check_http_url, url, allow_query=True)))
            checks.append((key, functools.partial(check_secure, url, allow_insecure_http=insecure)))
        for key, check in checks:
            try:
                check()
            except ValueError as exc:
                raise ConfigError(str(exc), path=f"sink.{key}") from None
        check_ca_bundle(options.ca_bundle)

    async def open(self, context: RunContext) -> None:
        """Open the connection pool, fetch the first token and, with ``base_url: discover``, find the API host.

        Bad credentials stop the run here, before any record is sent.

        Raises:
            ConfigError: The options fail :meth:`check`.
            FatalError: No token could be obtained, or no API host found.
        """
        self.check()
        if context.dry_run:
            return
        options = self.options
        if options.missing_file:
            # One file per run, like the rejects file (which also lists these rows); flushed
            # per row so the list is complete even if the run is killed.
            self._missing = CsvFile(os.path.join(context.output_dir, options.missing_file), ("key", "line"), flush_rows=True)
        self._connections = SinkConnections(
            limits=self._limits,
            timeout=options.timeout,
            connect_timeout=options.connect_timeout,
            max_connections=options.max_connections,
            ca_bundle=options.ca_bundle,
            transport=self._transport,
        )
        client = self._connections.client
        self._auth = self._authenticator(client)
        credential = await retry_open(self._auth.credential, "could not get a token")
        if options.base_url == DISCOVER:
            api_endpoint = await find_api_host(
                client,
                credential.token,
                self._limits,
                issuer=getattr(options.auth, "issuer", None),
                allow_insecure_http=options.allow_insecure_http,
                failure="could not find the API host",
            )
            self._base_url = api_endpoint + options.base_path

    def _authenticator(self, client: httpx.AsyncClient) -> Authenticator:
        options = self.options
        if options.auth is not None:
            return make_authenticator(options.auth, client, limits=self._limits, clock=self._clock)
        assert options.client_secret is not None and options.token_url and options.client_id is not None
        return TokenProvider(  # which registers the client secret for masking
            client,
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

    def _auth_urls(self) -> dict[str, str]:
        """``{option key: URL}`` of the token endpoints, e.g. ``{"auth.issuer": ...}``."""
        options = self.options
        if options.auth is not None:
            return {f"auth.{key}": url for key, url in options.auth.urls().items()}
        return {"token_url": options.token_url} if options.token_url else {}

    @classmethod
    def open_sandbox(cls) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
        """Serve the bundled CXone sandbox on 127.0.0.1 for ``etl run --sandbox``.

        Returns:
            An async context manager yielding the option values (``base_url``,
            ``token_url``, ``client_id``, ``client_secret``, and no ``auth``) that point
            the sink at it.
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
        return f"{options.method} {self._base_url}{options.path_template} as {self._identity()}"

    def _identity(self) -> str:
        """Who the sends authenticate as: the client (or key) id and where its tokens come from."""
        options, auth = self.options, self.options.auth
        if auth is None:
            return f"{options.client_id} of {options.token_url}"
        if isinstance(auth, ClientCredentialsAuth | PasswordAuth):
            who = auth.client_id if isinstance(auth, ClientCredentialsAuth) else f"{auth.username} ({auth.client_id})"
            return f"{who} of {display_url(auth.token_url or auth.issuer or '')}"
        if isinstance(auth, CxoneAccessKeyAuth):
            return f"{auth.access_key_id} of {display_url(auth.token_url)}"
        return f"a fixed {auth.type} credential"

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
        if isinstance(self.options.auth, BearerAuth | ApiKeyAuth):
            return f"nothing to ask for: {self._identity()} is checked by the API's first answer"
        return f"a token was issued to {self._identity()}"

    async def aclose(self) -> None:
        """Close the connections and the missing-keys file."""
        if self._missing is not None:
            self._missing.close()
        if self._connections is not None:
            await self._connections.aclose()

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
        if self._auth is None:
            raise FatalError("the cxone sink was not opened")
        answer, credential = await send_authorized(self._auth, lambda credential: self._request(url, content, credential))
        status = answer.status
        if 200 <= status < 300:
            return SendResult(status=status, rate_limit=parse_rate_limit(answer.headers), sent_at=answer.sent_at)
        error = refusal(answer, secrets=(credential.token, *self._secrets), scope=self._scope)
        if status == 404 and self._missing is not None:
            self._missing.write((str(record.data.get(self.options.key_field)), record.line))
        raise error

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
        return self._base_url + path, body

    async def _request(self, url: str, content: bytes, credential: Credential) -> Answer:
        assert self._connections is not None
        return await self._connections.request(self.options.method, url, content, credential)


@contextlib.asynccontextmanager
async def _sandbox_overrides() -> AsyncIterator[dict[str, Any]]:
    # Imported here: the server is only needed for --sandbox runs.
    from .sandbox import SandboxSettings, open_sandbox

    settings = SandboxSettings()
    async with open_sandbox(settings) as sandbox:
        # The sandbox's client-credentials endpoint, whatever auth the config gives.
        yield {
            "base_url": sandbox.url,
            "auth": None,
            "token_url": sandbox.url + "/oauth/token",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
        }
