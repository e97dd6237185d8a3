"""The ``http`` sink: records to any JSON REST API, one per request or in batches."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

import httpx

from etl_core import (
    Batching,
    BatchRejected,
    ConfigError,
    CsvFile,
    FatalError,
    PermanentError,
    PluginOptions,
    Record,
    RecordError,
    RunContext,
    SendResult,
    Sink,
    parse_rate_limit,
)
from etl_core.http import (
    Answer,
    Authenticator,
    Credential,
    Limits,
    SinkConnections,
    check_ca_bundle,
    check_http_url,
    check_secure,
    connection_limit,
    display_url,
    find_api_host,
    make_authenticator,
    retry_open,
    send_authorized,
)

from ._answers import answer_detail, item_outcomes, match_key, reason, refusal
from ._options import DISCOVER, HttpOptions
from ._requests import COMPACT, RequestBuilder, json_bytes
from ._results import ResultMapper
from ._status import Action, StatusPolicy
from ._templates import ITEMS, Template

# A whole batch refused with one of these is refused for its content: split it.
_SPLIT_STATUSES = frozenset({400, 413})
_MAPPER_KEYS = {"pointer", "match", "success", "error"}


class HttpSink(Sink):
    """Send records to a JSON REST API: one request per record, or batches with per-item results.

    Each request is built from templates (method, path, query, headers, JSON body) filled
    from the record's fields; path values are validated and percent-encoded as one segment
    each. The answer's status is classified by the status policy (ok, retry, throttle,
    reject, missing, stop). In batch mode a whole batch refused with 400 or 413 is split by
    the runner down to single records, so one bad record never fails its neighbours, and a
    batch answer's per-item results give each record its own outcome.

    Args:
        options: The validated options.
        clock: Monotonic clock for token expiry, injectable for tests.
        transport: The httpx transport of every client the sink opens (e.g. the CXone
            sandbox's in-process ``Sandbox.transport()`` in tests); httpx's own when None.
        requests: How requests are built; from ``options`` when None (a preset's own body rules).

    A preset (the ``cxone`` sink) subclasses it with options translated to :class:`HttpOptions`
    and overrides the hooks (``describe_error``, ``authenticator``, ``config_checks``, ``auth_urls``)
    and the class attributes below.
    """

    name = "http"
    Options: ClassVar[type[PluginOptions]] = HttpOptions
    json_separators: tuple[str, str] = COMPACT  #: of the JSON bodies
    base_path: str = ""  #: appended to a discovered API host (base_url: discover)
    discovery_failure = "could not discover the API host"  #: the start of its error

    def __init__(
        self,
        options: HttpOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        requests: RequestBuilder | None = None,
    ) -> None:
        super().__init__(options)
        # The options the sink works from (a preset's own stay in self.options).
        self._http = options
        self._clock = clock
        self._transport = transport
        self._requests = requests if requests is not None else RequestBuilder(options)
        self._policy = StatusPolicy(options.status)
        batch = options.batch
        self._envelope = Template(batch.body) if batch is not None else None
        results = batch.results if batch is not None else None
        self._results = None if results is None else ResultMapper(**results.model_dump(include=_MAPPER_KEYS))
        self._match = results.match if results is not None and results.match != "index" else None
        self._limits = Limits(deadline=options.request_timeout, max_bytes=options.max_response_bytes)
        # For base_url: discover, the host found when the sink opens (a dry run shows a placeholder).
        self._base_url = "{api_endpoint}" + self.base_path if options.base_url == DISCOVER else options.base_url
        self._connections: SinkConnections | None = None
        self._auth: Authenticator | None = None
        self._missing: CsvFile | None = None

    # ----------------------------------------------------------------- lifecycle

    def check(self) -> None:
        """Check the URLs and the CA bundle.

        Raises:
            ConfigError: An option cannot work; ``path`` names it.
        """
        for key, check in self.config_checks():
            try:
                check()
            except ValueError as exc:
                raise ConfigError(str(exc), path=f"sink.{key}") from None
        check_ca_bundle(self._http.ca_bundle)

    def config_checks(self) -> list[tuple[str, Callable[[], object]]]:
        """Hook: ``(option key, check)`` pairs :meth:`check` runs; by default the base URL and :meth:`auth_urls`."""
        options = self._http
        urls = {} if options.base_url == DISCOVER else {"base_url": options.base_url}
        urls.update(self.auth_urls())
        checks: list[tuple[str, Callable[[], object]]] = []
        for key, url in urls.items():
            checks.append((key, functools.partial(check_http_url, url, allow_query=key != "base_url")))
            checks.append((key, functools.partial(check_secure, url, allow_insecure_http=options.allow_insecure_http)))
        return checks

    def auth_urls(self) -> dict[str, str]:
        """Hook: ``{option key: URL}`` of the token endpoints, e.g. ``{"auth.issuer": ...}``."""
        auth = self._http.auth
        return {} if auth is None else {f"auth.{key}": url for key, url in auth.urls().items()}

    def authenticator(self, client: httpx.AsyncClient) -> Authenticator | None:
        """Hook: where the credentials come from (``auth``); None: requests go without."""
        auth = self._http.auth
        return None if auth is None else make_authenticator(auth, client, limits=self._limits, clock=self._clock)

    async def open(self, context: RunContext) -> None:
        """Open the connection pool, fetch the first token and find the API host (``base_url: discover``).

        Bad credentials stop the run here, before any record is sent.

        Raises:
            ConfigError: The options fail :meth:`check`.
            FatalError: No token could be obtained, or the API host could not be discovered.
        """
        self.check()
        if context.dry_run:
            return
        options = self._http
        if options.missing_file:
            self._missing = CsvFile(os.path.join(context.output_dir, options.missing_file), ("key", "line"), flush_rows=True)
        self._connections = SinkConnections(
            limits=self._limits,
            timeout=options.timeout,
            connect_timeout=options.connect_timeout,
            max_connections=connection_limit(options.max_connections, context.concurrency),
            ca_bundle=options.ca_bundle,
            headers=options.headers,
            transport=self._transport,
        )
        client = self._connections.client
        self._auth = self.authenticator(client)
        if self._auth is not None:
            credential = await retry_open(self._auth.credential, "could not get a token")
            if options.base_url == DISCOVER:
                api_endpoint = await find_api_host(
                    client,
                    credential.token,
                    self._limits,
                    issuer=getattr(options.auth, "issuer", None),
                    allow_insecure_http=options.allow_insecure_http,
                    failure=self.discovery_failure,
                )
                self._base_url = api_endpoint + self.base_path

    @classmethod
    def open_sandbox(cls) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
        """Serve the bundled NICE CXone sandbox on 127.0.0.1 for ``etl run --sandbox``.

        Returns:
            An async context manager yielding ``base_url`` and ``auth`` (an access-key
            password grant found by discovery) that point the sink at it.
        """
        return _sandbox_overrides()

    async def check_auth(self) -> str | None:
        """Fetch one token with the configured credentials (``etl validate --check-auth``).

        Returns:
            What was checked, or None without ``auth``.

        Raises:
            FatalError: The token endpoint refused the credentials or could not be reached.
        """
        auth = self._http.auth
        if auth is None:
            return None
        with tempfile.TemporaryDirectory() as scratch:
            try:
                await self.open(RunContext("check-auth", "check-auth", scratch))
            finally:
                await self.aclose()
        found = f"; the API host is {self._base_url}" if self._http.base_url == DISCOVER else ""
        return f"{auth.type} credentials were accepted{found}"

    async def aclose(self) -> None:
        """Close the connections and the missing-keys file."""
        if self._missing is not None:
            self._missing.close()
        if self._connections is not None:
            await self._connections.aclose()

    def destination(self) -> str:
        """The endpoint whose quota the sends count against."""
        options = self._http
        who = ""
        if options.auth is not None:
            # The API client (and user) whose quota it is; never a secret.
            names = [getattr(options.auth, name, None) for name in ("client_id", "username", "access_key_id")]
            who = " as " + "/".join(name for name in names if name) if any(names) else ""
        return f"{options.method} {display_url(options.base_url)}{options.path}{who}"

    # ----------------------------------------------------------------- batches

    def batching(self) -> Batching | None:
        """The batch limits from ``batch``, or None (one record per request)."""
        batch = self._http.batch
        if batch is None:
            return None
        max_bytes = None if batch.max_bytes is None else max(1, batch.max_bytes - len(self._envelope_bytes([])))
        return Batching(max_records=batch.size, max_bytes=max_bytes)

    def batch_size_of(self, record: Record) -> int:
        """The bytes a record's item adds to a batch body (its JSON and a comma)."""
        try:
            return len(self._json(self._requests.item(record))) + 1
        except RecordError:
            return 0  # refused without a request: it takes no room

    async def send_batch(self, records: Sequence[Record]) -> Sequence[SendResult | RecordError]:
        """Send records in one request; one outcome per record, in order.

        Raises:
            BatchRejected: The whole request was refused with 400 or 413 (the runner splits it).
            ThrottledError, TransientError, FatalError: What the whole answer means for
                every record in it.
        """
        outcomes: list[SendResult | RecordError | None] = [None] * len(records)
        items: list[Any] = []
        sent: list[int] = []
        for index, record in enumerate(records):
            try:
                items.append(self._requests.item(record))
            except RecordError as exc:
                outcomes[index] = exc
            else:
                sent.append(index)
        if sent:
            url = self._requests.url(self._base_url, {})
            answer, credential = await self._send(url, self._envelope_bytes(items))
            results = self._batch_outcomes(answer, credential, [records[i] for i in sent], items)
            for index, outcome in zip(sent, results, strict=True):
                outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def _batch_outcomes(
        self, answer: Answer, credential: Credential | None, records: list[Record], items: list[Any]
    ) -> list[SendResult | RecordError]:
        status = answer.status
        action = self._policy.action(status)
        if action != "ok":
            if action in ("reject", "missing") and status in _SPLIT_STATUSES:
                raise BatchRejected(reason(answer), status=status, detail=answer_detail(answer))
            error = self.describe_error(answer, action, credential)  # raises unless reject/missing
            for record in records:
                self._note_missing(record, action)
            return [error] * len(records)
        delivered = SendResult(status=status, rate_limit=parse_rate_limit(answer.headers), sent_at=answer.sent_at)
        if self._results is None:
            return [delivered] * len(records)
        keys = [match_key(self._match, record, item) for record, item in zip(records, items, strict=True)]
        return item_outcomes(answer, self._results.results(answer.json(), keys), delivered)

    def _envelope_bytes(self, items: list[Any]) -> bytes:
        assert self._envelope is not None
        return self._json(self._envelope.render({ITEMS: items}))

    def _json(self, value: Any) -> bytes:
        return json_bytes(value, self.json_separators)

    # ----------------------------------------------------------------- one record

    def describe(self, record: Record) -> dict[str, Any]:
        """Return the request :meth:`send` would make: ``{"method", "url", "body"}`` (in batch mode, the item).

        Raises:
            RecordRejected: The key or a path value is invalid, or there is nothing to send.
        """
        requests, method = self._requests, self._http.method
        if self._envelope is not None:
            return {"method": method, "url": requests.url(self._base_url, {}), "item": requests.item(record)}
        path, body = requests.request(record)
        return {"method": method, "url": self._base_url + path, "body": body}

    async def send(self, record: Record) -> SendResult:
        """Send one record (in batch mode, as a batch of one) and classify the answer."""
        if self._envelope is not None:
            outcome = (await self.send_batch([record]))[0]
            if isinstance(outcome, RecordError):
                raise outcome
            return outcome
        path, body = self._requests.request(record)
        answer, credential = await self._send(self._base_url + path, None if body is None else self._json(body))
        action = self._policy.action(answer.status)
        if action == "ok":
            return SendResult(status=answer.status, rate_limit=parse_rate_limit(answer.headers), sent_at=answer.sent_at)
        error = self.describe_error(answer, action, credential)
        self._note_missing(record, action)
        raise error

    def describe_error(self, answer: Answer, action: Action, credential: Credential | None) -> PermanentError:
        """Hook: the error of an answer whose ``action`` is not ``ok`` (``credential``: what it went with, to mask).

        Returns the error of ``reject`` and ``missing``; raises ThrottledError, TransientError or
        FatalError for ``throttle``, ``retry`` and ``stop``.
        """
        return refusal(answer, action)

    # ----------------------------------------------------------------- the exchange

    async def _send(self, url: str, content: bytes | None) -> tuple[Answer, Credential | None]:
        connections = self._connections
        if connections is None:
            raise FatalError(f"the {self.name} sink was not opened")
        method = self._http.method
        if self._auth is None:
            return await connections.request(method, url, content, None), None
        return await send_authorized(self._auth, lambda credential: connections.request(method, url, content, credential))

    def _note_missing(self, record: Record, action: Action) -> None:
        key_field = self._http.key_field
        if action == "missing" and self._missing is not None and key_field is not None:
            self._missing.write((str(record.data.get(key_field)), record.line))


@contextlib.asynccontextmanager
async def _sandbox_overrides() -> AsyncIterator[dict[str, Any]]:
    # Imported here: the server is only needed for --sandbox runs.
    from etl_cxone.sandbox import SandboxSettings, open_sandbox

    settings = SandboxSettings()
    async with open_sandbox(settings) as sandbox:
        yield {
            "base_url": DISCOVER,
            "auth": {
                "type": "password",
                "issuer": sandbox.url,
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
                "username": settings.access_key_id,
                "password": settings.access_key_secret,
            },
        }
