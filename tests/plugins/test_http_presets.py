"""The hooks a preset of the ``http`` sink overrides, and the ``cxone`` sink as one (sandbox on 127.0.0.1)."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from etl_core import ConfigError, FatalError, PermanentError, Record, RecordRejected, RunContext
from etl_core.http import Answer, Authenticator, Credential, check_http_url
from etl_cxone import CxoneSink
from etl_cxone._sink import http_options
from etl_cxone.sandbox import Sandbox, SandboxSettings, contact_id, open_sandbox
from etl_http import Action, HttpOptions, HttpSink, RequestBuilder


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with open_sandbox(SandboxSettings(seed_count=20, random_seed=1)) as sb:
        yield sb


def record(line: int, **data: Any) -> Record:
    return Record(data=data, line=line)


def context(tmp_path: Any) -> RunContext:
    return RunContext(run_id="run-1", pipeline="preset", output_dir=str(tmp_path))


def http_values(sb: Sandbox, **options: Any) -> dict[str, Any]:
    return {
        "base_url": sb.url,
        "method": "PATCH",
        "path": "/api/v2/contacts/{contactId}",
        "key_field": "contactId",
        "auth": {
            "type": "client_credentials",
            "token_url": sb.url + "/oauth/token",
            "client_id": sb.settings.client_id,
            "client_secret": sb.settings.client_secret,
            "scope": sb.settings.required_scope,
        },
        **options,
    }


class Bodies:
    """The bodies of every API request one sandbox receives."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.seen: list[bytes] = []
        handler = sandbox._api

        async def recording(request: Any) -> Any:
            self.seen.append(request.body)
            return await handler(request)

        sandbox._api = recording  # type: ignore[method-assign]


class Preset(HttpSink):
    """A preset with every hook overridden."""

    name = "preset"
    json_separators = (", ", ": ")

    def __init__(self, options: HttpOptions, **kwargs: Any) -> None:
        requests = RequestBuilder(options, body_fields=["city"], nothing="nothing to change")
        super().__init__(options, requests=requests, **kwargs)
        self.wording: list[tuple[int, Action, str | None]] = []

    def describe_error(self, answer: Answer, action: Action, credential: Credential | None) -> PermanentError:
        self.wording.append((answer.status, action, credential.token if credential else None))
        if action == "missing":
            return PermanentError(f"HTTP {answer.status}: no such person", status=answer.status)
        return super().describe_error(answer, action, credential)

    def config_checks(self) -> list[tuple[str, Callable[[], object]]]:
        return [("own_url", functools.partial(check_http_url, "ftp://nope")), *super().config_checks()]


async def test_a_preset_words_refusals_and_sees_the_credential(sandbox, tmp_path):
    sink = Preset(HttpOptions.model_validate(http_values(sandbox)))
    sink.config_checks = lambda: []  # type: ignore[method-assign]
    await sink.open(context(tmp_path))
    try:
        with pytest.raises(PermanentError, match=r"^HTTP 404: no such person$"):
            await sink.send(record(2, contactId=contact_id(500), city="Oslo"))
    finally:
        await sink.aclose()
    status, action, token = sink.wording[0]
    assert (status, action) == (404, "missing") and token


async def test_a_preset_body_rules_and_json_spacing(sandbox, tmp_path):
    bodies = Bodies(sandbox)
    sink = Preset(HttpOptions.model_validate(http_values(sandbox)))
    sink.config_checks = lambda: []  # type: ignore[method-assign]
    await sink.open(context(tmp_path))
    try:
        await sink.send(record(2, contactId=contact_id(1), city="Oslo", email="not sent"))
        with pytest.raises(RecordRejected, match="^nothing to change$"):
            await sink.send(record(3, contactId=contact_id(1), city="", email="x@example.com"))
    finally:
        await sink.aclose()
    assert bodies.seen == [b'{"city": "Oslo"}']


def test_a_preset_config_check_names_its_own_key():
    sink = Preset(HttpOptions.model_validate({"base_url": "https://api.example.com"}))
    with pytest.raises(ConfigError) as error:
        sink.check()
    assert error.value.path == "sink.own_url"


async def test_an_authenticator_hook_replaces_auth(sandbox, tmp_path):
    class NoAuth(HttpSink):
        asked = 0

        def authenticator(self, client: httpx.AsyncClient) -> Authenticator | None:
            NoAuth.asked += 1
            return None

    sink = NoAuth(HttpOptions.model_validate(http_values(sandbox)))
    await sink.open(context(tmp_path))
    try:
        with pytest.raises(FatalError, match="HTTP 401"):
            await sink.send(record(2, contactId=contact_id(1), city="Oslo"))
    finally:
        await sink.aclose()
    assert NoAuth.asked == 1


def test_base_path_is_appended_to_the_discovered_host():
    class Prefixed(HttpSink):
        base_path = "/inContactAPI/services/v34.0"

    options = HttpOptions.model_validate(
        {"base_url": "discover", "auth": {"type": "bearer", "token": "t"}, "path": "/contacts/{id}"}
    )
    described = Prefixed(options).describe(record(2, id="7", city="Oslo"))
    assert described["url"] == "{api_endpoint}/inContactAPI/services/v34.0/contacts/7"


# ----------------------------------------------------------------- the cxone sink as a preset


def cxone_options(sb: Sandbox, **options: Any) -> Any:
    return CxoneSink.Options.model_validate(
        {
            "base_url": sb.url,
            "token_url": sb.url + "/oauth/token",
            "client_id": sb.settings.client_id,
            "client_secret": sb.settings.client_secret,
            **options,
        }
    )


async def test_the_cxone_sink_is_a_preset_sending_spaced_json(sandbox, tmp_path):
    bodies = Bodies(sandbox)
    sink = CxoneSink(cxone_options(sandbox))
    assert isinstance(sink, HttpSink)
    await sink.open(context(tmp_path))
    try:
        await sink.send(record(2, contactId=contact_id(1), city="Oslo", firstName="Åse"))
    finally:
        await sink.aclose()
    assert bodies.seen == ['{"city": "Oslo", "firstName": "Åse"}'.encode()]
    assert json.loads(bodies.seen[0]) == {"city": "Oslo", "firstName": "Åse"}


def test_cxone_options_translate_to_the_http_request_template():
    options = CxoneSink.Options.model_validate(
        {
            "base_url": "https://api.example.com",
            "token_url": "https://auth.example.com/token",
            "client_id": "id",
            "client_secret": "secret",
            "path_template": "/api/v2/contacts/{contactId}",
            "method": "PUT",
            "key_format": "any",
        }
    )
    http = http_options(options)
    assert (http.base_url, http.path, http.method) == ("https://api.example.com", "/api/v2/contacts/{contactId}", "PUT")
    assert (http.key_field, http.key_format, http.status, http.batch) == ("contactId", "any", {}, None)
    assert http.missing_file == "missing-contacts.csv" and http.auth is None
