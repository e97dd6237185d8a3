"""The ``cxone`` sink: one HTTP request per record to the NICE CXone REST API, a preset of the ``http`` sink."""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from etl_core import PermanentError, RunContext, SinkField
from etl_core.http import (
    Answer,
    ApiKeyAuth,
    Authenticator,
    BearerAuth,
    ClientCredentialsAuth,
    Credential,
    CxoneAccessKeyAuth,
    PasswordAuth,
    TokenProvider,
    display_url,
    template_fields,
)
from etl_http import Action, HttpOptions, HttpSink, RequestBuilder

from ._answers import refusal
from ._fields import CONTACT_FIELDS, KEY_RULES
from ._options import CxoneOptions, option_secrets

__all__ = ["CxoneOptions", "CxoneSink", "http_options"]


class CxoneSink(HttpSink):
    """Update NICE CXone records (contacts by default), one HTTP request per record.

    A preset of the ``http`` sink: the options become the http sink's request template
    (``path_template`` its path, the record's non-empty fields or ``body_fields`` its JSON
    body) and default status policy; the preset adds CXone's wording of refusals, the flat
    client-credentials keys, ``base_path`` after discovery, and its own texts.

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
    options: CxoneOptions
    # Spaced JSON (", ", ": "), the bytes the cxone sink has always sent.
    json_separators = (", ", ": ")
    discovery_failure = "could not find the API host"

    def __init__(
        self,
        options: CxoneOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        http = http_options(options)
        self.base_path = options.base_path
        requests = RequestBuilder(http, body_fields=options.body_fields, nothing="nothing to update")
        super().__init__(http, clock=clock, transport=transport, requests=requests)
        self.options = options
        self._secrets = option_secrets(options)
        # The scopes a 403 names.
        self._scope = options.scope if options.auth is None else getattr(options.auth, "scope", "")

    def config_checks(self) -> list[tuple[str, Callable[[], object]]]:
        """The path template first, then the URLs (see :meth:`HttpSink.config_checks`)."""
        check_path = functools.partial(template_fields, self.options.path_template)
        return [("path_template", check_path), *super().config_checks()]

    def auth_urls(self) -> dict[str, str]:
        """``{option key: URL}`` of the token endpoints: ``auth``'s, or the flat ``token_url``."""
        options = self.options
        if options.auth is not None:
            return super().auth_urls()
        return {"token_url": options.token_url} if options.token_url else {}

    def authenticator(self, client: httpx.AsyncClient) -> Authenticator:
        """``auth``'s authenticator, or client credentials from the flat token_url, client_id and client_secret."""
        options = self.options
        if options.auth is not None:
            authenticator = super().authenticator(client)
            assert authenticator is not None
            return authenticator
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

    def describe_error(self, answer: Answer, action: Action, credential: Credential | None) -> PermanentError:
        """CXone's wording (contact not found, the fields of a 400, the scope of a 403), secrets masked.

        The default status policy gives the same actions as the status alone (a 401 never
        gets here: it is answered by a new token, then stops the run).
        """
        token = (credential.token,) if credential is not None else ()
        return refusal(answer, secrets=(*token, *self._secrets), scope=self._scope)

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


def http_options(options: CxoneOptions) -> HttpOptions:
    """The ``cxone`` options as the ``http`` sink's: its request template and the default status policy.

    Built without the http sink's validation: the cxone options were validated by their own
    rules (``base_url: discover`` with the flat client-credentials keys, for one).
    """
    return HttpOptions.model_construct(
        base_url=options.base_url,
        auth=options.auth,
        method=options.method,
        path=options.path_template,
        query={},
        body=None,
        headers={},
        key_field=options.key_field,
        key_format=options.key_format,
        status={},
        batch=None,
        allow_insecure_http=options.allow_insecure_http,
        timeout=options.timeout,
        request_timeout=options.request_timeout,
        connect_timeout=options.connect_timeout,
        max_response_bytes=options.max_response_bytes,
        max_connections=options.max_connections,
        ca_bundle=options.ca_bundle,
        missing_file=options.missing_file,
    )


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
