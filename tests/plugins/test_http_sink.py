"""The ``http`` sink against the bundled CXone sandbox on 127.0.0.1 (real HTTP, no mocks)."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from etl_core import (
    Batching,
    BatchRejected,
    ConfigError,
    FatalError,
    PermanentError,
    Record,
    RecordRejected,
    RunContext,
    SendResult,
    ThrottledError,
    TransientError,
)
from etl_cxone.sandbox import Sandbox, SandboxSettings, contact_id, open_sandbox
from etl_http import HttpSink

ADMIN = "/inContactAPI/services/v34.0"
BOOK_PATH = f"{ADMIN}/address-books/7/dynamic-entries"
BATCH = {
    "size": 50,
    "body": {"addressBookEntries": "{items}"},
    "results": {"pointer": "/entryResults", "match": "externalId"},
}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with open_sandbox(SandboxSettings(seed_count=100, random_seed=1)) as sb:
        yield sb


def sink_for(sb: Sandbox, **options: Any) -> HttpSink:
    values: dict[str, Any] = {
        "base_url": sb.url,
        "auth": {
            "type": "client_credentials",
            "token_url": sb.url + "/oauth/token",
            "client_id": sb.settings.client_id,
            "client_secret": sb.settings.client_secret,
            "scope": sb.settings.required_scope,
        },
    }
    values.update(options)
    return HttpSink(HttpSink.Options.model_validate(values))


def context(tmp_path: Any, *, dry_run: bool = False) -> RunContext:
    return RunContext(run_id="run-1", pipeline="http", output_dir=str(tmp_path), dry_run=dry_run)


def record(line: int, **data: Any) -> Record:
    return Record(data=data, line=line)


class Headers:
    """The headers of every API request one sandbox receives."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.seen: list[dict[bytes, bytes]] = []
        handler = sandbox._api

        async def recording(request: Any) -> Any:
            self.seen.append(dict(request.headers))
            return await handler(request)

        sandbox._api = recording  # type: ignore[method-assign]


# ----------------------------------------------------------------- one record per request


async def test_one_request_per_record_with_path_query_body_and_headers(sandbox, tmp_path):
    headers = Headers(sandbox)
    sink = sink_for(
        sandbox,
        method="PATCH",
        path="/api/v2/contacts/{contactId}",
        body={"firstName": "{first}", "email": "{email}", "city": "{city}"},
        headers={"X-Tenant-Note": "bulk load"},
        key_field="contactId",
        key_format="uuid",
    )
    await sink.open(context(tmp_path))
    try:
        cid = contact_id(3)
        result = await sink.send(record(2, contactId=cid, first="Ada", email="ada@example.com", city=""))
    finally:
        await sink.aclose()
    assert isinstance(result, SendResult) and result.status == 200
    # The empty city was left out: the contact keeps its own.
    assert sandbox.contact(cid) == {"contactId": cid, "firstName": "Ada", "email": "ada@example.com"}
    [sent] = headers.seen
    assert sent[b"accept"] == b"application/json"
    assert sent[b"content-type"] == b"application/json"
    assert sent[b"x-tenant-note"] == b"bulk load"
    assert sent[b"authorization"].startswith(b"Bearer ")


async def test_default_body_is_every_field_not_in_the_path_and_hostile_keys_stay_one_segment(sandbox, tmp_path):
    sandbox.settings.extra_ids = ("../admin",)
    sink = sink_for(sandbox, method="PATCH", path="/api/v2/contacts/{contactId}", key_field="contactId")
    await sink.open(context(tmp_path))
    try:
        await sink.send(record(2, contactId="../admin", city="Leeds", phone=""))
        with pytest.raises(RecordRejected, match="nothing to send"):
            await sink.send(record(3, contactId="../admin", city=""))
    finally:
        await sink.aclose()
    assert sandbox.contact("../admin") == {"contactId": "../admin", "city": "Leeds"}
    assert sandbox.stats()["paths"] == ["/api/v2/contacts/..%2Fadmin", "/oauth/token"]


async def test_answers_are_classified_by_the_status_policy(sandbox, tmp_path):
    bad = contact_id(5)
    sandbox.settings.failing_ids = (bad,)
    sink = sink_for(sandbox, method="PATCH", path="/api/v2/contacts/{contactId}", key_field="contactId", key_format="uuid")
    await sink.open(context(tmp_path))
    try:
        with pytest.raises(PermanentError) as refused:
            await sink.send(record(2, contactId=contact_id(1), email="nope"))
        assert (refused.value.status, refused.value.reason) == (400, "HTTP 400: invalid fields")
        assert "invalid email address" in refused.value.detail
        with pytest.raises(PermanentError, match="HTTP 404: contact .* not found"):
            await sink.send(record(3, contactId=contact_id(500), city="X"))
        with pytest.raises(TransientError, match="HTTP 500"):
            await sink.send(record(4, contactId=bad, city="X"))
        with pytest.raises(RecordRejected, match="contactId: not a valid uuid"):
            await sink.send(record(5, contactId="42", city="X"))
        sandbox.settings.rate_limit = 0.01
        sandbox.settings.burst = 1
        await sink.send(record(6, contactId=contact_id(2), city="X"))  # takes the one token
        with pytest.raises(ThrottledError) as throttled:
            await sink.send(record(7, contactId=contact_id(2), city="Y"))
        assert throttled.value.status == 429 and throttled.value.retry_after >= 1
    finally:
        await sink.aclose()
    # 404 means "missing": the key is listed, with its line.
    with open(tmp_path / "missing.csv", newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f)) == [{"key": contact_id(500), "line": "3"}]


async def test_a_configured_status_overrides_the_default(sandbox, tmp_path):
    sink = sink_for(
        sandbox, method="PATCH", path="/api/v2/contacts/{contactId}", status={"404": "ok", "400": "stop"}, missing_file=""
    )
    await sink.open(context(tmp_path))
    try:
        assert (await sink.send(record(2, contactId=contact_id(500), city="X"))).status == 404
        with pytest.raises(FatalError, match=r"HTTP 400: invalid fields, which stops the run"):
            await sink.send(record(3, contactId=contact_id(1), email="nope"))
    finally:
        await sink.aclose()
    assert not (tmp_path / "missing.csv").exists()


def test_describe_shows_the_request_without_sending(tmp_path):
    options = HttpSink.Options.model_validate(
        {"base_url": "https://api.example.com/v1", "method": "PUT", "path": "/people/{id}", "query": {"src": "{source}", "mode": "upsert"}}
    )
    described = HttpSink(options).describe(record(2, id="a b/c", source="crm 1", name="Ada", empty=""))
    assert described == {
        "method": "PUT",
        "url": "https://api.example.com/v1/people/a%20b%2Fc?src=crm%201&mode=upsert",
        "body": {"name": "Ada"},
    }


# ----------------------------------------------------------------- batches


def entry(line: int, external_id: str, **fields: Any) -> Record:
    return record(line, externalId=external_id, **fields)


async def test_a_batch_gives_each_record_its_own_outcome(sandbox, tmp_path):
    sink = sink_for(sandbox, method="PUT", path=BOOK_PATH, query={"fullLoad": "false"}, key_field="externalId", batch=BATCH)
    assert sink.batching() == Batching(max_records=50, max_bytes=None)
    records = [
        entry(2, "A", firstName="Ada", email="ada@example.com"),
        entry(3, "B", email="not-an-email"),
        entry(4, "C", firstName="Cy", phone="+14155550100"),
    ]
    await sink.open(context(tmp_path))
    try:
        outcomes = await sink.send_batch(records)
    finally:
        await sink.aclose()
    assert [type(outcome) for outcome in outcomes] == [SendResult, PermanentError, SendResult]
    assert outcomes[0].status == 202
    refused = outcomes[1]
    assert (refused.reason, refused.status) == ("HTTP 202: invalid email address", 202)
    assert json.loads(refused.detail)["externalId"] == "B"
    stored = sandbox.directory_entries("dynamic", 7)
    assert sorted(stored) == ["A", "C"]
    assert stored["C"]["phone"] == "+14155550100"
    assert sandbox.stats()["paths"] == [BOOK_PATH + "?fullLoad=false", "/oauth/token"]


async def test_a_whole_batch_refused_for_its_content_raises_batch_rejected(sandbox, tmp_path):
    sink = sink_for(sandbox, method="PUT", path=BOOK_PATH, batch=BATCH)
    await sink.open(context(tmp_path))
    try:
        with pytest.raises(BatchRejected) as rejected:
            await sink.send_batch([entry(2, "A"), entry(3, "B", phone="call me")])
        assert rejected.value.status == 400
        assert rejected.value.reason == "HTTP 400: addressBookEntries[1].phone is not a phone number"
        sandbox.settings.max_bulk_entries = 1
        with pytest.raises(BatchRejected) as too_large:
            await sink.send_batch([entry(2, "A"), entry(3, "B")])
        assert too_large.value.status == 413
    finally:
        await sink.aclose()
    assert sandbox.directory_entries("dynamic", 7) == {}


async def test_records_refused_before_sending_keep_their_place(sandbox, tmp_path):
    sink = sink_for(sandbox, method="PUT", path=BOOK_PATH, key_field="externalId", key_format="integer", batch=BATCH)
    await sink.open(context(tmp_path))
    try:
        outcomes = await sink.send_batch([entry(2, "12", firstName="A"), entry(3, "x1", firstName="B"), entry(4, "13", lastName="C")])
    finally:
        await sink.aclose()
    assert isinstance(outcomes[0], SendResult) and isinstance(outcomes[2], SendResult)
    assert isinstance(outcomes[1], RecordRejected) and outcomes[1].reason == "externalId: not a valid integer"
    assert sorted(sandbox.directory_entries("dynamic", 7)) == ["12", "13"]


async def test_results_matched_by_index_and_without_a_results_mapping(sandbox, tmp_path):
    by_index = {**BATCH, "results": {"pointer": "/recordResults", "match": "index"}}
    dnc = sink_for(sandbox, path=f"{ADMIN}/dnc-groups/3/records", batch={**by_index, "body": {"dncGroupRecords": "{items}"}})
    await dnc.open(context(tmp_path))
    try:
        outcomes = await dnc.send_batch([record(2, phoneNumber="+14155550100"), record(3, phoneNumber="bad")])
    finally:
        await dnc.aclose()
    assert isinstance(outcomes[0], SendResult)
    assert outcomes[1].reason == "HTTP 200: invalid phone number"
    # Without `results`, every record shares the answer's outcome.
    shared = sink_for(sandbox, method="PUT", path=BOOK_PATH, batch={"size": 10, "body": {"addressBookEntries": "{items}"}})
    await shared.open(context(tmp_path))
    try:
        outcomes = await shared.send_batch([entry(2, "A"), entry(3, "B", email="bad")])
    finally:
        await shared.aclose()
    assert [outcome.status for outcome in outcomes] == [202, 202]


async def test_throttled_and_failed_batches_raise_for_the_whole_request(sandbox, tmp_path):
    sink = sink_for(sandbox, method="PUT", path=BOOK_PATH, batch=BATCH)
    await sink.open(context(tmp_path))
    try:
        sandbox.settings.outage = True
        with pytest.raises(ThrottledError):
            await sink.send_batch([entry(2, "A")])
        sandbox.settings.outage = False
        broken = sink_for(sandbox, method="PUT", path=f"{ADMIN}/address-books/7/other", batch=BATCH, status={"404": "retry"})
        await broken.open(context(tmp_path))
        try:
            with pytest.raises(TransientError, match="HTTP 404"):
                await broken.send_batch([entry(2, "A")])
        finally:
            await broken.aclose()
    finally:
        await sink.aclose()


def test_batch_sizes_count_the_item_and_the_envelope_is_taken_off_max_bytes():
    options = HttpSink.Options.model_validate(
        {"base_url": "https://api.example.com", "batch": {"size": 500, "max_bytes": 1000, "body": {"addressBookEntries": "{items}"}}}
    )
    sink = HttpSink(options)
    envelope = len(b'{"addressBookEntries":[]}')
    assert sink.batching() == Batching(max_records=500, max_bytes=1000 - envelope)
    assert sink.batch_size_of(record(2, externalId="A", firstName="Zoë")) == len('{"externalId":"A","firstName":"Zoë"}'.encode()) + 1
    assert sink.describe(record(2, externalId="A")) == {"method": "POST", "url": "https://api.example.com/", "item": {"externalId": "A"}}


# ----------------------------------------------------------------- credentials and URLs


async def test_refused_credentials_stop_before_any_record(sandbox, tmp_path):
    sink = sink_for(sandbox, path="/api/v2/contacts/{contactId}")
    sink = HttpSink(sink.options.model_copy(update={"auth": sink.options.auth.model_copy(update={"client_id": "intruder"})}))
    with pytest.raises(FatalError, match="check auth.client_id and auth.client_secret"):
        await sink.open(context(tmp_path))
    await sink.aclose()
    assert sandbox.stats()["requests"] == 0


def test_plain_http_to_another_host_is_refused_for_the_api_and_the_token_endpoint():
    for options, key in (
        ({"base_url": "http://api.example.com"}, "sink.base_url"),
        (
            {"base_url": "https://api.example.com", "auth": {"type": "client_credentials", "token_url": "http://id.example.com/token", "client_id": "a", "client_secret": "b"}},
            "sink.auth.token_url",
        ),
    ):
        with pytest.raises(ConfigError) as refused:
            HttpSink(HttpSink.Options.model_validate(options)).check()
        assert refused.value.path == key
    allowed = {"base_url": "http://api.example.com", "allow_insecure_http": True}
    HttpSink(HttpSink.Options.model_validate(allowed)).check()


def test_discover_needs_a_token_and_a_dry_run_shows_a_placeholder_host():
    with pytest.raises(ValueError, match="needs auth other than api_key"):
        HttpSink.Options.model_validate({"base_url": "discover"})
    options = HttpSink.Options.model_validate(
        {"base_url": "discover", "path": "/x/{id}", "auth": {"type": "bearer", "token": "t"}}
    )
    assert HttpSink(options).describe(record(2, id="7", a="b"))["url"] == "{api_endpoint}/x/7"


async def test_results_are_matched_on_the_item_sent_when_the_body_renames_the_field(sandbox, tmp_path):
    sink = sink_for(sandbox, method="PUT", path=BOOK_PATH, body={"externalId": "crm-{id}", "email": "{mail}"}, batch=BATCH)
    await sink.open(context(tmp_path))
    try:
        outcomes = await sink.send_batch([record(2, id="1", mail="bad"), record(3, id="2", mail="b@example.com")])
    finally:
        await sink.aclose()
    assert [type(outcome) for outcome in outcomes] == [PermanentError, SendResult]
    assert outcomes[0].reason == "HTTP 202: invalid email address"
    assert list(sandbox.directory_entries("dynamic", 7)) == ["crm-2"]


@pytest.mark.parametrize("batched", [False, True])
async def test_the_sink_keeps_the_plugin_contract(sandbox, batched):
    from etl_core.testing import check_sink_contract

    if batched:
        sink = sink_for(sandbox, method="PUT", path=BOOK_PATH, batch=BATCH)
        records = [entry(2, "A", email="a@example.com"), entry(3, "B", email="bad")]
    else:
        sink = sink_for(sandbox, method="PATCH", path="/api/v2/contacts/{contactId}", key_field="contactId", key_format="uuid")
        records = [record(2, contactId=contact_id(1), city="X"), record(3, contactId="nope", city="Y")]
    first, second = await check_sink_contract(sink, *records)
    assert isinstance(first, SendResult)
    assert isinstance(second, PermanentError if batched else RecordRejected)


async def test_check_auth_fetches_a_token_and_finds_the_api_host(sandbox):
    password = {
        "type": "password",
        "issuer": sandbox.url,
        "client_id": sandbox.settings.client_id,
        "client_secret": sandbox.settings.client_secret,
        "username": sandbox.settings.access_key_id,
        "password": sandbox.settings.access_key_secret,
    }
    sink = sink_for(sandbox, base_url="discover", auth=password)
    assert await sink.check_auth() == f"password credentials were accepted; the API host is {sandbox.url}"
    assert await sink_for(sandbox, auth=None).check_auth() is None
    assert sandbox.stats()["requests"] == 0
