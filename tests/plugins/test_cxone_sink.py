"""Tests of the ``cxone`` sink against the bundled sandbox on 127.0.0.1 (real HTTP, no mocks)."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pydantic
import pytest
import structlog.testing
import trio

from etl_core import (
    ConfigError,
    FatalError,
    PermanentError,
    RateLimitHint,
    Record,
    RecordRejected,
    RunContext,
    SendResult,
    ThrottledError,
    TransientError,
)
from etl_cxone import CxoneSink, TokenProvider
from etl_cxone.sandbox import Sandbox, SandboxSettings, contact_id, open_sandbox

SECRET = "sandbox-secret"
HOSTILE_KEYS = [
    "../admin",
    "a/b?x=1",
    "%2e%2e/",
    "%2e%2e",
    "#x",
    "with space",
    "ünïcødé-ключ",
    "line\r\nX-Injected: 1",
    "tab\tkey",
    "..;",
    "?",
    "a%2Fb",
]
CONTACT_PATH = re.compile(r"/api/v2/contacts/[^/?#]+")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with open_sandbox(SandboxSettings(seed_count=100, extra_ids=tuple(HOSTILE_KEYS))) as sb:
        yield sb


def make_options(sb: Sandbox, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "base_url": sb.url,
        "token_url": sb.url + "/oauth/token",
        "client_id": "sandbox-client",
        "client_secret": SECRET,
    }
    values.update(overrides)
    return CxoneSink.Options(**values)


def context(tmp_path: Any, *, dry_run: bool = False) -> RunContext:
    return RunContext(run_id="run-1", pipeline="contacts", output_dir=str(tmp_path), dry_run=dry_run)


@contextlib.asynccontextmanager
async def opened_sink(
    sb: Sandbox, tmp_path: Any, *, clock: Callable[[], float] = time.monotonic, **overrides: Any
) -> AsyncIterator[CxoneSink]:
    sink = CxoneSink(make_options(sb, **overrides), clock=clock)
    try:
        await sink.open(context(tmp_path))
        yield sink
    finally:
        await sink.aclose()


def record(key: Any = None, line: int = 2, **fields: Any) -> Record:
    data = {"contactId": contact_id(0) if key is None else key, **fields}
    return Record(data=data, line=line)


async def send_all(sink: CxoneSink, records: list[Record]) -> list[Any]:
    """Send records concurrently; return each result or the exception it raised."""
    results: list[Any] = [None] * len(records)

    async def one(index: int, rec: Record) -> None:
        try:
            results[index] = await sink.send(rec)
        except Exception as exc:
            results[index] = exc

    async with trio.open_nursery() as nursery:
        for index, rec in enumerate(records):
            nursery.start_soon(one, index, rec)
    return results


# --- tokens ------------------------------------------------------------------------


async def test_one_token_for_many_sends(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path) as sink:
        results = await send_all(sink, [record(contact_id(i), firstName=f"N{i}") for i in range(40)])
    assert all(result.status == 200 for result in results)
    stats = sandbox.stats()
    assert stats["tokens_issued"] == 1
    assert stats["by_status"] == {"200": 40}
    assert sandbox.contact(contact_id(7)) == {"contactId": contact_id(7), "firstName": "N7"}


async def test_form_auth_method(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path, auth_method="form") as sink:
        assert (await sink.send(record(firstName="Ann"))).status == 200


async def test_token_refreshed_before_expiry_without_a_401(sandbox: Sandbox, tmp_path: Any) -> None:
    clock = FakeClock()
    async with opened_sink(sandbox, tmp_path, clock=clock) as sink:
        # A 3600 s token is refreshed 360 s (10% of its lifetime) before it expires.
        clock.now += 3600 - 360 - 1
        await sink.send(record(firstName="A"))
        assert sandbox.stats()["tokens_issued"] == 1
        clock.now += 2
        await sink.send(record(firstName="B"))
    stats = sandbox.stats()
    assert stats["tokens_issued"] == 2
    assert stats["by_status"] == {"200": 2}


async def test_short_lived_token_refresh_margin(sandbox: Sandbox, tmp_path: Any) -> None:
    sandbox.settings.token_lifetime = 100
    clock = FakeClock()
    async with opened_sink(sandbox, tmp_path, clock=clock) as sink:
        # 60 s margin, capped at half the lifetime: refreshed after 50 s.
        clock.now += 49
        await sink.send(record(firstName="A"))
        assert sandbox.stats()["tokens_issued"] == 1
        clock.now += 2
        await sink.send(record(firstName="B"))
    assert sandbox.stats()["tokens_issued"] == 2


async def test_401_refreshes_once_and_retries(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path) as sink:
        sandbox.advance_clock(3601)  # the server expires the token; the client does not know
        assert (await sink.send(record(firstName="Ann"))).status == 200
    stats = sandbox.stats()
    assert stats["by_status"] == {"200": 1, "401": 1}
    assert stats["tokens_issued"] == 2
    assert sandbox.contact(contact_id(0)) == {"contactId": contact_id(0), "firstName": "Ann"}


async def test_concurrent_401s_cause_one_refresh(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path) as sink:
        sandbox.advance_clock(3601)
        results = await send_all(sink, [record(contact_id(i), firstName="X") for i in range(32)])
    assert all(result.status == 200 for result in results)
    stats = sandbox.stats()
    assert stats["token_requests"] == 2
    assert stats["by_status"]["200"] == 32


async def test_concurrent_sends_with_expired_token_cause_one_token_request(
    sandbox: Sandbox, tmp_path: Any
) -> None:
    clock = FakeClock()
    async with opened_sink(sandbox, tmp_path, clock=clock) as sink:
        clock.now += 3601
        sandbox.advance_clock(3601)
        results = await send_all(sink, [record(contact_id(i), firstName="X") for i in range(32)])
    assert all(result.status == 200 for result in results)
    stats = sandbox.stats()
    assert stats["token_requests"] == 2
    assert stats["by_status"] == {"200": 32}


async def test_refresh_window_keeps_using_the_valid_token(sandbox: Sandbox, tmp_path: Any) -> None:
    clock = FakeClock()
    async with opened_sink(sandbox, tmp_path, clock=clock) as sink:
        clock.now += 3500  # inside the refresh window, not yet expired
        results = await send_all(sink, [record(contact_id(i), firstName="X") for i in range(32)])
    assert all(result.status == 200 for result in results)
    assert sandbox.stats()["token_requests"] == 2


async def test_second_401_is_fatal(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path) as sink:
        sandbox.settings.token_lifetime = 0  # every new token is dead on arrival
        sandbox.advance_clock(3601)
        with pytest.raises(FatalError, match="refused a freshly issued token"):
            await sink.send(record(firstName="Ann"))
    assert sandbox.stats()["by_status"] == {"401": 2}


@pytest.mark.parametrize("auth_method", ["basic", "form"])
async def test_bad_credentials_stop_the_run_in_open(
    sandbox: Sandbox, tmp_path: Any, auth_method: str
) -> None:
    wrong = "wrong-secret-value"
    sink = CxoneSink(make_options(sandbox, client_secret=wrong, auth_method=auth_method))
    with pytest.raises(FatalError) as caught:
        await sink.open(context(tmp_path))
    await sink.aclose()
    message = str(caught.value)
    assert message == (
        f"token request to {sandbox.url}/oauth/token was refused (401 invalid_client): "
        "check CXONE_CLIENT_ID / CXONE_CLIENT_SECRET"
    )
    assert wrong not in message and wrong not in repr(caught.value)
    assert sandbox.stats()["token_requests"] == 1
    assert sandbox.stats()["requests"] == 0


async def test_invalid_scope_names_the_scope(sandbox: Sandbox, tmp_path: Any) -> None:
    sink = CxoneSink(make_options(sandbox, scope="contact:read"))
    with pytest.raises(FatalError, match=r"\(400 invalid_scope\): check the scope"):
        await sink.open(context(tmp_path))
    await sink.aclose()


async def test_unreachable_token_endpoint_is_fatal_in_open(tmp_path: Any) -> None:
    with trio.socket.socket() as sock:  # a port that is certainly closed
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    sink = CxoneSink(
        CxoneSink.Options(base_url=url, token_url=url + "/oauth/token", client_id="c", client_secret=SECRET)
    )
    with pytest.raises(FatalError, match=r"could not get a token: token request to .* connection error \(ConnectError\)"):
        await sink.open(context(tmp_path))
    await sink.aclose()


async def test_token_provider_classifies_endpoint_failures(sandbox: Sandbox) -> None:
    sandbox.settings.outage = True
    async with httpx.AsyncClient() as client:
        # The API path answers 503 during an outage: a token endpoint failing the same way.
        provider = TokenProvider(
            client, token_url=sandbox.url + "/api/v2/contacts/x", client_id="sandbox-client", client_secret=SECRET
        )
        failures: list[BaseException] = []

        async def ask() -> None:
            try:
                await provider.token()
            except TransientError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(ask)
    # Callers waiting for a failed request share its failure instead of repeating it.
    assert sandbox.stats()["requests"] == 1
    assert len(failures) == 32
    assert all(exc.status == 503 and "failed (HTTP 503" in str(exc) for exc in failures)
    assert len({id(exc) for exc in failures}) == 32
    assert SECRET not in repr(provider)


async def test_dry_run_open_fetches_no_token(sandbox: Sandbox, tmp_path: Any) -> None:
    sink = CxoneSink(make_options(sandbox))
    await sink.open(context(tmp_path, dry_run=True))
    assert sink.describe(record(firstName="Ann"))["body"] == {"firstName": "Ann"}
    await sink.aclose()
    assert sandbox.stats()["token_requests"] == 0


# --- outcome classification -----------------------------------------------------------


async def test_400_is_permanent_with_detail(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path) as sink:
        with pytest.raises(PermanentError) as caught:
            await sink.send(record(email="not-an-email", firstName="Ann"))
    error = caught.value
    assert error.status == 400
    assert error.reason == "HTTP 400: validation failed: email"
    assert error.detail is not None and "validation_failed" in error.detail and "invalid email" in error.detail
    assert not error.retryable


async def test_404_is_permanent_and_listed_in_missing_file(sandbox: Sandbox, tmp_path: Any) -> None:
    unknown = [f"00000000-0000-4000-8000-{i:012d}" for i in range(5)]
    async with opened_sink(sandbox, tmp_path) as sink:
        results = await send_all(sink, [record(key, line=10 + i, firstName="X") for i, key in enumerate(unknown)])
    for result in results:
        assert isinstance(result, PermanentError)
        assert result.status == 404
        assert result.reason == "HTTP 404: contact not found"
        assert result.detail is not None and "not_found" in result.detail
    with open(tmp_path / "missing-contacts.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["key", "line"]
    assert sorted(rows[1:]) == sorted([key, str(10 + i)] for i, key in enumerate(unknown))


async def test_missing_file_is_written_anew_by_each_run(sandbox: Sandbox, tmp_path: Any) -> None:
    unknown = "00000000-0000-4000-8000-000000000001"
    for _ in range(2):
        async with opened_sink(sandbox, tmp_path, missing_file="out/missing.csv") as sink:
            with pytest.raises(PermanentError):
                await sink.send(record(unknown, firstName="X"))
    lines = (tmp_path / "out" / "missing.csv").read_text(encoding="utf-8").splitlines()
    assert lines == ["key,line", f"{unknown},2"]


async def test_missing_file_guards_against_formulas(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path, key_format="any") as sink:
        with pytest.raises(PermanentError):
            await sink.send(record("=HYPERLINK(1)", firstName="X"))
    lines = (tmp_path / "missing-contacts.csv").read_text(encoding="utf-8").splitlines()
    assert lines[1] == "'=HYPERLINK(1),2"


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_is_throttled_with_retry_after(sandbox: Sandbox, tmp_path: Any, form: str) -> None:
    sandbox.settings.rate_limit = 1.0
    sandbox.settings.burst = 1.0
    sandbox.settings.retry_after = form
    async with opened_sink(sandbox, tmp_path) as sink:
        await sink.send(record(firstName="A"))
        with pytest.raises(ThrottledError) as caught:
            await sink.send(record(firstName="B"))
    error = caught.value
    assert error.status == 429
    assert error.reason == "HTTP 429: too many requests"
    assert error.retry_after is not None and 1.0 <= error.retry_after <= 2.0


async def test_429_long_retry_after_is_left_to_the_runner_to_cap(sandbox: Sandbox, tmp_path: Any) -> None:
    sandbox.settings.rate_limit = 0.001  # the next slot is ~1000 s away
    sandbox.settings.burst = 1.0
    async with opened_sink(sandbox, tmp_path) as sink:
        await sink.send(record(firstName="A"))
        with pytest.raises(ThrottledError) as caught:
            await sink.send(record(firstName="B"))
    # Beyond the default cap of 300 s: one cap for every sink, run.retry.retry_after_max.
    assert caught.value.retry_after is not None and 900 <= caught.value.retry_after <= 1000


async def test_rate_limit_headers_are_reported(sandbox: Sandbox, tmp_path: Any) -> None:
    sandbox.settings.rate_limit = 100.0
    sandbox.settings.burst = 10.0
    sandbox.settings.rate_limit_headers = True
    async with opened_sink(sandbox, tmp_path) as sink:
        result = await sink.send(record(firstName="A"))
    assert result.rate_limit is not None
    assert result.rate_limit.limit == 100
    assert result.rate_limit.remaining == 9
    assert isinstance(result.rate_limit, RateLimitHint)


async def test_503_outage_is_throttled(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path) as sink:
        sandbox.settings.outage = True
        with pytest.raises(ThrottledError) as caught:
            await sink.send(record(firstName="A"))
    assert caught.value.status == 503
    assert caught.value.retry_after is None
    assert caught.value.retryable


async def test_5xx_is_transient(sandbox: Sandbox, tmp_path: Any) -> None:
    sandbox.settings.random_seed = 7
    async with opened_sink(sandbox, tmp_path) as sink:
        sandbox.settings.error_rate = 1.0
        results = await send_all(sink, [record(firstName="A") for _ in range(20)])
    statuses = set()
    for error in results:
        assert isinstance(error, TransientError)
        assert isinstance(error, ThrottledError) == (error.status == 503)
        expected = "service unavailable" if error.status == 503 else "server error"
        assert error.reason == f"HTTP {error.status}: {expected}"
        statuses.add(error.status)
    assert statuses & {500, 502, 504}


async def test_dropped_connection_is_transient(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path) as sink:
        sandbox.settings.drop_rate = 1.0
        with pytest.raises(TransientError) as caught:
            await sink.send(record(firstName="A"))
        sandbox.settings.drop_rate = 0.0
        assert (await sink.send(record(firstName="B"))).status == 200
    error = caught.value
    assert not isinstance(error, ThrottledError)
    assert error.reason == "connection error (RemoteProtocolError)"
    assert sandbox.stats()["dropped"] == 1


async def test_timeout_is_transient(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path, timeout=0.2) as sink:
        sandbox.settings.latency = 2.0
        with pytest.raises(TransientError, match=r"^timeout \(ReadTimeout\)$"):
            await sink.send(record(firstName="A"))


# --- keys, URLs and bodies -------------------------------------------------------------


async def test_hostile_keys_stay_one_path_segment(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path, key_format="any") as sink:
        results = await send_all(sink, [record(key, firstName="X") for key in HOSTILE_KEYS])
    assert [result.status for result in results] == [200] * len(HOSTILE_KEYS)
    paths = [path for path in sandbox.stats()["paths"] if path != "/oauth/token"]
    assert len(paths) == len(HOSTILE_KEYS)
    for path in paths:
        assert CONTACT_PATH.fullmatch(path), path
    # Each key arrived intact: the server decoded the segment back to exactly that key.
    for key in HOSTILE_KEYS:
        assert sandbox.contact(key) == {"contactId": key, "firstName": "X"}


@pytest.mark.parametrize("key", [".", ".."])
async def test_dot_segments_are_rejected(key: str, sandbox: Sandbox) -> None:
    sink = CxoneSink(make_options(sandbox, key_format="any"))
    with pytest.raises(RecordRejected, match="contactId: not a valid path segment"):
        sink.describe(record(key, firstName="X"))


async def test_hostile_keys_are_rejected_as_uuids_and_never_sent(sandbox: Sandbox, tmp_path: Any) -> None:
    keys = [*HOSTILE_KEYS, contact_id(1) + "/x", " " + contact_id(1), contact_id(1).upper() + "\n", 12, True]
    async with opened_sink(sandbox, tmp_path) as sink:
        for key in keys:
            with pytest.raises(RecordRejected, match="^contactId: not a valid uuid$"):
                await sink.send(record(key, firstName="X"))
    stats = sandbox.stats()
    assert stats["requests"] == 0
    assert stats["paths"] == ["/oauth/token"]


@pytest.mark.parametrize(
    ("key", "valid"), [("12", True), (12, True), ("007", True), ("-1", False), ("1.5", False), ("١٢", False)]
)
def test_integer_keys(key: Any, valid: bool) -> None:
    sink = CxoneSink(
        CxoneSink.Options(
            base_url="https://api.example.com",
            token_url="https://auth.example.com/token",
            client_id="c",
            client_secret=SECRET,
            key_format="integer",
            path_template="/v1/agents/{contactId}",
        )
    )
    if valid:
        assert sink.describe(record(key, firstName="X"))["url"] == f"https://api.example.com/v1/agents/{key}"
    else:
        with pytest.raises(RecordRejected, match="contactId: not a valid integer"):
            sink.describe(record(key, firstName="X"))


@pytest.mark.parametrize("key", [None, ""])
def test_missing_key_is_rejected(key: Any) -> None:
    sink = CxoneSink(
        CxoneSink.Options(base_url="https://h", token_url="https://h/t", client_id="c", client_secret=SECRET)
    )
    with pytest.raises(RecordRejected, match="^contactId: missing$"):
        sink.describe(Record(data={"contactId": key, "firstName": "X"}, line=3))
    with pytest.raises(RecordRejected, match="^contactId: missing$"):
        sink.describe(Record(data={"firstName": "X"}, line=3))


async def test_body_omits_key_and_empty_values(sandbox: Sandbox, tmp_path: Any) -> None:
    async with opened_sink(sandbox, tmp_path) as sink:
        await sink.send(record(firstName="Ann", lastName="Lee", city="Oslo"))
        await sink.send(record(firstName="Bea", lastName="", city=None))
        with pytest.raises(RecordRejected, match="^nothing to update$"):
            await sink.send(record(firstName="", lastName=None))
    # The partial update kept what the second row did not set.
    assert sandbox.contact(contact_id(0)) == {
        "contactId": contact_id(0),
        "firstName": "Bea",
        "lastName": "Lee",
        "city": "Oslo",
    }
    assert sandbox.stats()["applied"] == 2


def test_body_fields_allow_list_and_other_placeholders() -> None:
    sink = CxoneSink(
        CxoneSink.Options(
            base_url="https://api.example.com/base/",
            token_url="https://auth.example.com/token",
            client_id="c",
            client_secret=SECRET,
            path_template="/units/{unit}/contacts/{contactId}",
            method="PUT",
            body_fields=["email", "phone", "contactId"],
        )
    )
    data = {"contactId": contact_id(3), "unit": "a/b", "email": "a@example.com", "phone": "", "city": "Oslo"}
    assert sink.describe(Record(data=data, line=5)) == {
        "method": "PUT",
        "url": f"https://api.example.com/base/units/a%2Fb/contacts/{contact_id(3)}",
        "body": {"email": "a@example.com", "contactId": contact_id(3)},
    }
    with pytest.raises(RecordRejected, match="^unit: missing$"):
        sink.describe(Record(data={**data, "unit": None}, line=5))
    with pytest.raises(RecordRejected, match="^nothing to update$"):
        sink.describe(Record(data={**data, "email": None}, line=5))


def test_describe() -> None:
    sink = CxoneSink(
        CxoneSink.Options(
            base_url="https://api-na1.niceincontact.com",
            token_url="https://auth.example.com/token",
            client_id="c",
            client_secret=SECRET,
        )
    )
    described = sink.describe(record(firstName="Ann", email="ann@example.com", city=""))
    assert described == {
        "method": "PATCH",
        "url": f"https://api-na1.niceincontact.com/api/v2/contacts/{contact_id(0)}",
        "body": {"firstName": "Ann", "email": "ann@example.com"},
    }
    with pytest.raises(RecordRejected, match="contactId: not a valid uuid"):
        sink.describe(record("../admin", firstName="Ann"))


# --- configuration -------------------------------------------------------------------------


def base(**overrides: Any) -> dict[str, Any]:
    return {
        "base_url": "https://api.example.com",
        "token_url": "https://auth.example.com/oauth/token",
        "client_id": "c",
        "client_secret": SECRET,
        **overrides,
    }


@pytest.mark.parametrize(("key", "url"), [("base_url", "http://api.example.com"), ("token_url", "http://10.0.0.1/t")])
async def test_plain_http_to_a_remote_host_is_refused(key: str, url: str, tmp_path: Any) -> None:
    sink = CxoneSink(CxoneSink.Options(**base(**{key: url})))
    with pytest.raises(ConfigError) as caught:
        sink.check()
    assert caught.value.path == f"sink.{key}"
    assert "allow_insecure_http" in str(caught.value)
    with pytest.raises(ConfigError):  # open() refuses too, whatever the caller checked
        await sink.open(context(tmp_path))
    CxoneSink(CxoneSink.Options(**base(**{key: url}, allow_insecure_http=True))).check()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "[::1]"])
def test_plain_http_to_loopback_is_allowed(host: str) -> None:
    CxoneSink(CxoneSink.Options(**base(base_url=f"http://{host}:8080", token_url=f"http://{host}:8080/t"))).check()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("base_url", "ftp://api.example.com", "http:// or https://"),
        ("base_url", "api.example.com", "http:// or https://"),
        ("base_url", "https://", "must name a host"),
        ("base_url", "https://user:pw@api.example.com", "must not contain credentials"),
        ("base_url", "https://api.example.com/?x=1", "must not contain a query"),
        ("base_url", "https://api.example.com/#top", "fragment"),
        ("base_url", "https://api.example.com:99999", "invalid port"),
        ("base_url", "https://api.exa mple.com", "spaces or control characters"),
        ("token_url", "https://auth.example.com/t#x", "fragment"),
        ("path_template", "api/v2/contacts/{contactId}", "must start with '/'"),
        ("path_template", "/api/v2/contacts/{contact id}", "simple field name"),
        ("path_template", "/api/v2/contacts/{}", "simple field name"),
        ("path_template", "/api/v2/contacts/{a.b}", "simple field name"),
        ("path_template", "/api/v2/contacts/{contactId", "unmatched braces"),
        ("path_template", "/api/v2/contacts/{contactId}#x", "'#'"),
        ("path_template", "/api/v2/my contacts/{contactId}", "without spaces"),
        ("path_template", "/api/v2/contacts/{contactId}/../../admin", "must not have a '.' or '..' segment"),
        ("request_timeout", 0, "greater than 0"),
        ("max_response_bytes", 0, "greater than or equal to 1"),
        ("max_connections", 0, "greater than or equal to 1"),
    ],
)
def test_invalid_options_are_refused(key: str, value: object, message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        CxoneSink.Options(**base(**{key: value}))
    errors = caught.value.errors()
    assert errors[0]["loc"] == (key,)
    assert message in errors[0]["msg"]


def test_token_url_may_have_a_query() -> None:
    CxoneSink(CxoneSink.Options(**base(token_url="https://auth.example.com/token?tenant=x"))).check()


def test_missing_ca_bundle_is_a_config_error(tmp_path: Any) -> None:
    sink = CxoneSink(CxoneSink.Options(**base(ca_bundle=str(tmp_path / "nope.pem"))))
    with pytest.raises(ConfigError) as caught:
        sink.check()
    assert caught.value.path == "sink.ca_bundle"
    assert str(caught.value) == "sink.ca_bundle: not a file (a PEM file of CA certificates is expected)"


@pytest.mark.parametrize("text", ["not a certificate\n", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", ""])
def test_a_ca_bundle_that_holds_no_certificate_is_a_config_error(tmp_path: Any, text: str) -> None:
    bundle = tmp_path / "s3cr3t-name.pem"
    bundle.write_text(text)
    sink = CxoneSink(CxoneSink.Options(**base(ca_bundle=str(bundle))))
    with pytest.raises(ConfigError) as caught:
        sink.check()
    assert caught.value.path == "sink.ca_bundle"
    assert str(caught.value) == (
        "sink.ca_bundle: holds no certificate that can be read (a PEM file of CA certificates is expected)"
    )


def test_unknown_option_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        CxoneSink.Options(**base(base_uri="https://x"))


def test_every_option_is_documented() -> None:
    for name, field in CxoneSink.Options.model_fields.items():
        assert field.description, name


def test_each_answer_is_bounded_by_default() -> None:
    options = CxoneSink.Options(**base())
    assert (options.request_timeout, options.max_response_bytes) == (60.0, 1_048_576)


# --- secrets ---------------------------------------------------------------------------------


async def test_no_secret_or_token_in_errors_or_repr(sandbox: Sandbox, tmp_path: Any) -> None:
    options = make_options(sandbox)
    assert SECRET not in repr(options) and SECRET not in str(options)
    errors: list[BaseException] = []
    async with opened_sink(sandbox, tmp_path) as sink:
        token = (await sink._auth.credential()).token  # type: ignore[union-attr]
        sandbox.settings.drop_rate = 1.0
        errors += await send_all(sink, [record(firstName="A")])
        sandbox.settings.drop_rate = 0.0
        unknown = "00000000-0000-4000-8000-000000000000"
        errors += await send_all(sink, [record(email="bad"), record(unknown, firstName="A")])
        sandbox.settings.outage = True
        errors += await send_all(sink, [record(firstName="A")])
        sandbox.settings.outage = False
        sandbox.settings.token_lifetime = 0
        sandbox.advance_clock(3601)
        errors += await send_all(sink, [record(firstName="A")])
    assert len(errors) == 5 and all(isinstance(error, Exception) for error in errors)
    for error in errors:
        text = " ".join(
            str(part) for part in (error, repr(error), getattr(error, "reason", ""), getattr(error, "detail", ""))
        )
        assert SECRET not in text
        assert token not in text
        assert "Bearer" not in text


# --- the sandbox hook --------------------------------------------------------------------------


async def test_open_sandbox_yields_options_pointing_at_it(tmp_path: Any) -> None:
    async with CxoneSink.open_sandbox() as overrides:
        assert set(overrides) == {"base_url", "auth", "token_url", "client_id", "client_secret"}
        assert overrides["auth"] is None  # the sandbox's own client credentials, whatever the config's auth
        assert overrides["base_url"].startswith("http://127.0.0.1:")
        assert overrides["token_url"] == overrides["base_url"] + "/oauth/token"
        sink = CxoneSink(CxoneSink.Options(**base(**overrides)))
        sink.check()
        try:
            await sink.open(context(tmp_path))
            assert (await sink.send(record(contact_id(99_999), firstName="Ann"))).status == 200
        finally:
            await sink.aclose()


def test_registered_as_a_sink() -> None:
    import etl_cxone

    assert etl_cxone.register_sinks() == [CxoneSink]
    assert CxoneSink.name == "cxone"


def test_url_segments_are_percent_encoded_once() -> None:
    sink = CxoneSink(CxoneSink.Options(**base(key_format="any")))
    url = sink.describe(record("a b/ü%", firstName="X"))["url"]
    assert url == "https://api.example.com/api/v2/contacts/" + urllib.parse.quote("a b/ü%", safe="")
    assert url.endswith("a%20b%2F%C3%BC%25")


async def test_the_sink_says_when_each_request_left(sandbox: Sandbox, tmp_path: Any) -> None:
    # The rate limiter measures the quota from these times, not from when send() was called.
    sandbox.settings.rate_limit = 1.0
    sandbox.settings.burst = 1.0
    async with opened_sink(sandbox, tmp_path) as sink:
        called = trio.current_time()
        result = await sink.send(record(firstName="A"))
        answered = trio.current_time()
        assert result.sent_at is not None and called < result.sent_at < answered
        with pytest.raises(ThrottledError) as caught:
            await sink.send(record(firstName="B"))
        assert caught.value.sent_at is not None and answered < caught.value.sent_at < trio.current_time()


async def test_each_request_carries_the_client_headers_the_current_token_and_its_cookies(tmp_path: Any) -> None:
    # Requests are built once per token, not per send: they must still hold what
    # client.build_request would have merged in, and follow a token change.
    tokens: list[str] = []
    seen: list[httpx.Request] = []
    # Answers are streams, as a server's are (the sink streams them; a mock's ready-made body cannot be).

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            tokens.append(f"token-{len(tokens) + 1}")
            payload = {"access_token": tokens[-1], "token_type": "Bearer", "expires_in": 3600}
            return httpx.Response(200, stream=httpx.ByteStream(json.dumps(payload).encode()))
        seen.append(request)
        if request.headers["Authorization"] == "Bearer token-1":
            return httpx.Response(401, stream=httpx.ByteStream(b""))
        return httpx.Response(200, headers={"Set-Cookie": "route=b7; Path=/"}, stream=httpx.ByteStream(b"{}"))

    options = CxoneSink.Options(
        base_url="https://api.example.com", token_url="https://api.example.com/oauth/token", client_id="c", client_secret=SECRET
    )
    sink = CxoneSink(options, transport=httpx.MockTransport(handler))
    try:
        await sink.open(context(tmp_path))
        for name in ("A", "B"):
            assert (await sink.send(record(firstName=name))).status == 200
    finally:
        await sink.aclose()
    assert [r.headers["Authorization"] for r in seen] == ["Bearer token-1", "Bearer token-2", "Bearer token-2"]
    for request in seen:
        assert request.method == "PATCH"
        assert request.url == f"https://api.example.com/api/v2/contacts/{contact_id(0)}"
        assert request.headers["User-Agent"].startswith("etl/")
        assert (request.headers["Accept"], request.headers["Accept-Encoding"]) == ("application/json", "gzip")
        assert request.headers["Content-Type"] == "application/json"
        assert request.extensions["timeout"] == {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}
    assert [json.loads(r.content) for r in seen[1:]] == [{"firstName": "A"}, {"firstName": "B"}]
    assert "Cookie" not in seen[1].headers and seen[2].headers["Cookie"] == "route=b7"


# --- auth: and base_url: discover --------------------------------------------------------


def access_key_auth(sb: Sandbox, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "password",
        "issuer": sb.url,
        "client_id": "sandbox-client",
        "client_secret": SECRET,
        "username": sb.settings.access_key_id,
        "password": sb.settings.access_key_secret,
    } | overrides


def auth_options(sb: Sandbox, **overrides: Any) -> Any:
    return CxoneSink.Options(**{"base_url": sb.url, "auth": access_key_auth(sb)} | overrides)


async def test_discover_finds_the_api_host_from_the_token_and_logs_it(sandbox: Sandbox, tmp_path: Any) -> None:
    sink = CxoneSink(auth_options(sandbox, base_url="discover"))
    assert sink.describe(record(firstName="Ann"))["url"].startswith("{api_endpoint}/api/v2/contacts/")
    with structlog.testing.capture_logs() as logs:
        await sink.open(context(tmp_path))
    try:
        assert (await sink.send(record(firstName="Ann"))).status == 200
        assert sink.describe(record(firstName="Ann"))["url"].startswith(sandbox.url + "/api/v2/contacts/")
    finally:
        await sink.aclose()
    [found] = [line for line in logs if line["event"] == "api_endpoint_discovered"]
    assert found["api_endpoint"] == sandbox.url and found["tenant_id"] == sandbox.settings.tenant_id
    assert sandbox.stats()["grants"] == {"password": 1}


async def test_an_explicit_base_url_wins_and_asks_for_no_discovery(sandbox: Sandbox, tmp_path: Any) -> None:
    sink = CxoneSink(auth_options(sandbox))
    await sink.open(context(tmp_path))
    try:
        assert (await sink.send(record(firstName="Ann"))).status == 200
    finally:
        await sink.aclose()
    assert not any("cxone-configuration" in path for path in sandbox.stats()["paths"])


async def test_discover_needs_a_token_that_names_its_tenant(sandbox: Sandbox, tmp_path: Any) -> None:
    # The tutorial's client-credentials tokens are opaque: no tenantId claim to read.
    sink = CxoneSink(make_options(sandbox, base_url="discover"))
    with pytest.raises(FatalError, match="needs a token with a tenantId claim"):
        await sink.open(context(tmp_path))
    await sink.aclose()


async def test_a_refused_access_key_stops_open_and_names_the_keys(sandbox: Sandbox, tmp_path: Any) -> None:
    sink = CxoneSink(auth_options(sandbox, auth=access_key_auth(sandbox, password="not-the-secret")))
    with pytest.raises(FatalError, match=r"refused \(400 invalid_grant\): check auth.client_id, auth.client_secret, auth.username and auth.password") as caught:
        await sink.open(context(tmp_path))
    await sink.aclose()
    assert "not-the-secret" not in str(caught.value)
    assert sandbox.stats()["requests"] == 0


async def test_auth_urls_are_checked_like_base_url(sandbox: Sandbox) -> None:
    options = auth_options(sandbox, auth=access_key_auth(sandbox, issuer="http://cxone.example.com"))
    with pytest.raises(ConfigError, match="plain http://") as caught:
        CxoneSink(options).check()
    assert caught.value.path == "sink.auth.issuer"


async def test_check_auth_names_who_signed_in(sandbox: Sandbox) -> None:
    assert await CxoneSink(auth_options(sandbox)).check_auth() == f"a token was issued to {sandbox.settings.access_key_id} (sandbox-client) of {sandbox.url}"
    fixed = CxoneSink(auth_options(sandbox, auth={"type": "bearer", "token": "some-token"}))
    assert "checked by the API's first answer" in await fixed.check_auth()


async def test_sandbox_overrides_replace_any_auth(tmp_path: Any) -> None:
    configured = {"base_url": "discover", "auth": {"type": "bearer", "token": "a-real-tenant-token"}}
    async with CxoneSink.open_sandbox() as overrides:
        options = CxoneSink.Options(**(configured | overrides))
        assert options.auth is None and options.base_url == overrides["base_url"]
        sink = CxoneSink(options)
        try:
            await sink.open(context(tmp_path))
            assert (await sink.send(record(contact_id(1), firstName="Ann"))).status == 200
        finally:
            await sink.aclose()


# --- connections -------------------------------------------------------------------


# Not all 120 need overlap on a busy machine, but more than the 100 connections of the
# old default must; 40 connections carry 40 at most (a connection's next send waits).
@pytest.mark.parametrize(("max_connections", "least", "most"), [(None, 101, 120), (40, 40, 40)])
async def test_the_sink_opens_a_connection_per_concurrent_send_unless_told_fewer(
    tmp_path: Any, max_connections: int | None, least: int, most: int
) -> None:
    # 120 sends at once, as a run of 120 workers makes: each waits a second for its answer.
    async with open_sandbox(SandboxSettings(seed_count=150, latency=1.0)) as sb:
        sink = CxoneSink(make_options(sb, max_connections=max_connections))
        try:
            await sink.open(RunContext(run_id="run-1", pipeline="contacts", output_dir=str(tmp_path), concurrency=120))
            results = await send_all(sink, [record(contact_id(i), line=i + 2, city="Lyon") for i in range(120)])
        finally:
            await sink.aclose()
        stats = sb.stats()
    assert all(isinstance(result, SendResult) for result in results), results[:3]
    assert least <= stats["max_concurrency"] <= most
