"""Tests of the bundled CXone sandbox server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import argparse
import csv
import email.utils
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from etl_cxone import sample_data
from etl_cxone.sandbox import (

    NAMESPACE,
    Sandbox,
    SandboxSettings,
    add_arguments,
    contact_id,
    open_sandbox,
    run_sandbox_in_thread,
    settings_from_args,
)

#: The sample file shipped at the project root and used by configs/cxone-contacts.yaml.
BUNDLED_CSV = Path(__file__).parents[2] / "data" / "contacts.csv"

CID = contact_id(7)
IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$"
)
CREDENTIALS = ("sandbox-client", "sandbox-secret")


def settings(**kwargs) -> SandboxSettings:
    kwargs.setdefault("seed_count", 1000)
    kwargs.setdefault("random_seed", 1)
    return SandboxSettings(**kwargs)


@pytest.fixture
async def sandbox():
    async with open_sandbox(settings()) as sb:
        yield sb


@pytest.fixture
async def client(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as c:
        yield c


async def get_token(client: httpx.AsyncClient, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    r = await client.post("/oauth/token", data=data, auth=CREDENTIALS)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def authed(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.headers["Authorization"] = f"Bearer {await get_token(client)}"
    return client


async def raw_exchange(sandbox: Sandbox, data: bytes) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    host, port = sandbox.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(data)
        chunks = []
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


# --------------------------------------------------------------------------- ids


def test_contact_id_is_uuid5_in_the_namespace():
    import uuid

    assert contact_id(0) == str(uuid.uuid5(NAMESPACE, "contact-0"))
    assert contact_id(42) != contact_id(43)
    sb = Sandbox(settings(seed_count=50, extra_ids=("extra-1",)))
    assert sb.contact(contact_id(49)) == {"contactId": contact_id(49)}
    assert sb.contact(contact_id(50)) is None
    assert sb.contact("extra-1") == {"contactId": "extra-1"}


def test_settings_are_validated():
    with pytest.raises(ValueError, match="retry_after"):
        SandboxSettings(retry_after="minutes")
    with pytest.raises(ValueError, match="error_rate"):
        SandboxSettings(error_rate=1.5)
    with pytest.raises(ValueError, match="rate_limit"):
        SandboxSettings(rate_limit=0)


# --------------------------------------------------------------------------- /oauth/token


async def test_token_with_basic_auth(client, sandbox):
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "contact:write"},
        auth=("sandbox-client", "sandbox-secret"),
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert "date" in r.headers
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "contact:write"
    assert len(body["access_token"]) >= 32
    stats = sandbox.stats()
    assert stats["token_requests"] == 1
    assert stats["tokens_issued"] == 1
    assert stats["requests"] == 0  # token requests are not API requests


async def test_token_with_form_credentials(client):
    r = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        },
    )
    assert r.status_code == 200
    assert r.json()["scope"] == "contact:write"  # missing scope: the required one is granted
    other = await get_token(client)
    assert other != r.json()["access_token"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"auth": ("sandbox-client", "wrong")},
        {"auth": ("someone-else", "sandbox-secret")},
        {},
        {"headers": {"Authorization": "Basic !!!not-base64"}},
    ],
    ids=["wrong-secret", "wrong-id", "no-credentials", "garbled-basic"],
)
async def test_token_bad_credentials(client, sandbox, kwargs):
    r = await client.post("/oauth/token", data={"grant_type": "client_credentials"}, **kwargs)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "error_description" in r.json()
    assert sandbox.stats()["tokens_issued"] == 0


async def test_token_bad_grant_type(client):
    auth = ("sandbox-client", "sandbox-secret")
    r = await client.post("/oauth/token", data={"grant_type": "password"}, auth=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"
    r = await client.post("/oauth/token", data={}, auth=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    r = await client.get("/oauth/token")
    assert r.status_code == 405


async def test_token_scope(client):
    auth = ("sandbox-client", "sandbox-secret")
    data = {"grant_type": "client_credentials", "scope": "contact:read"}
    r = await client.post("/oauth/token", data=data, auth=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "contact:read contact:write"},
        auth=auth,
    )
    assert r.status_code == 200
    assert r.json()["scope"] == "contact:read contact:write"


async def test_token_expires_on_the_sandbox_clock(client, sandbox):
    sandbox.settings.token_lifetime = 60
    token = await get_token(client)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code == 200
    sandbox.advance_clock(59)
    assert (await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code == 200
    sandbox.advance_clock(1.5)
    r = await client.get(f"/api/v2/contacts/{CID}", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "invalid_token", "message": r.json()["message"]}
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    # a fresh token works again
    headers = {"Authorization": f"Bearer {await get_token(client)}"}
    assert (await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code == 200


async def test_token_with_zero_lifetime_is_expired_at_once(client, sandbox):
    sandbox.settings.token_lifetime = 0
    r = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=CREDENTIALS
    )
    assert r.json()["expires_in"] == 0
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get(f"/api/v2/contacts/{CID}", headers=headers)).status_code == 401


async def test_token_expires_in_real_time(client, sandbox):
    sandbox.settings.token_lifetime = 0.05
    token = await get_token(client)
    await trio.sleep(0.1)  # a slow machine only makes the token older
    r = await client.get(f"/api/v2/contacts/{CID}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


# --------------------------------------------------------------------------- contacts


async def test_patch_partial_update_and_get(client, sandbox):
    await authed(client)
    r = await client.patch(
        f"/api/v2/contacts/{CID}", json={"firstName": "Ada", "email": "ada@example.com"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"contactId": CID, "firstName": "Ada", "email": "ada@example.com"}
    r = await client.patch(
        f"/api/v2/contacts/{CID}", json={"city": "London", "phone": "+447700900123"}
    )
    assert r.json() == {
        "contactId": CID,
        "firstName": "Ada",
        "email": "ada@example.com",
        "city": "London",
        "phone": "+447700900123",
    }
    r = await client.get(f"/api/v2/contacts/{CID}")
    assert r.status_code == 200
    assert r.json()["city"] == "London"
    assert sandbox.contact(CID) == r.json()
    stats = sandbox.stats()
    assert stats["applied"] == 2
    assert stats["updates"] == {CID: 2}
    assert stats["by_status"] == {"200": 3}
    assert stats["requests"] == 3
    assert stats["first_request_at"] <= stats["last_request_at"]


async def test_percent_encoded_id_is_decoded(client, sandbox):
    sandbox.settings.extra_ids = ("ext id/1",)
    await authed(client)
    r = await client.patch("/api/v2/contacts/ext%20id%2F1", json={"externalId": "E1"})
    assert r.status_code == 200
    assert r.json() == {"contactId": "ext id/1", "externalId": "E1"}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "not-an-email"}, {"email": "invalid email address"}),
        ({"email": "a@b"}, {"email": "invalid email address"}),
        ({"email": "a@@example.com"}, {"email": "invalid email address"}),
        ({"nickname": "Al"}, {"nickname": "unknown field"}),
        ({"firstName": 3}, {"firstName": "must be a string or null"}),
        (
            {"email": "x", "shoeSize": "9", "city": "Paris"},
            {"email": "invalid email address", "shoeSize": "unknown field"},
        ),
    ],
)
async def test_patch_validation_errors(client, sandbox, body, fields):
    await authed(client)
    r = await client.patch(f"/api/v2/contacts/{CID}", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == "validation_failed"
    assert r.json()["fields"] == fields
    assert sandbox.contact(CID) == {"contactId": CID}  # nothing applied
    assert sandbox.stats()["applied"] == 0


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\"x\"", b"\xff\xfe"])
async def test_patch_body_must_be_a_json_object(client, content):
    await authed(client)
    r = await client.patch(
        f"/api/v2/contacts/{CID}", content=content, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"] in ("invalid_json", "validation_failed")


async def test_unknown_contact_is_404(client):
    await authed(client)
    missing = contact_id(5000)
    r = await client.patch(f"/api/v2/contacts/{missing}", json={"city": "Oslo"})
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "message": f"contact {missing} not found"}
    r = await client.get(f"/api/v2/contacts/{missing}")
    assert r.status_code == 404


async def test_missing_or_unknown_token_is_401(client, sandbox):
    r = await client.patch(f"/api/v2/contacts/{CID}", json={"city": "Oslo"})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    r = await client.patch(
        f"/api/v2/contacts/{CID}", json={"city": "Oslo"}, headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    r = await client.get(f"/api/v2/contacts/{CID}", headers={"Authorization": "Basic eDp5"})
    assert r.status_code == 401
    assert sandbox.contact(CID) == {"contactId": CID}
    assert sandbox.stats()["by_status"] == {"401": 3}


async def test_other_methods_are_405(client):
    await authed(client)
    r = await client.delete(f"/api/v2/contacts/{CID}")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, PATCH"


@pytest.mark.parametrize(
    "target",
    [
        b"/api/v2/contacts/..%2Fadmin",
        b"/api/v2/contacts/a/b",
        b"/api/v2/contacts/x?y=1",
        b"/api/v2/contacts/../admin",
        b"/api/v2/contacts/",
        b"/api/v2/contacts",
        b"/admin",
        ("/api/v2/contacts/" + CID + "/extra").encode(),
        ("/api/v2/contacts/" + CID + "?fields=all").encode(),
    ],
)
async def test_path_traversal_and_odd_targets_are_404(client, sandbox, target):
    token = await get_token(client)
    raw = await raw_exchange(
        sandbox,
        b"PATCH " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"
        + b'{"city": "Paris"}',
    )
    assert status_of(raw) == 404, raw
    assert b'"error":"not_found"' in raw
    stats = sandbox.stats()
    assert target.decode() in stats["paths"]
    assert stats["applied"] == 0
    assert sandbox.contact(CID) == {"contactId": CID}


async def test_paths_are_recorded_sorted_and_sandbox_routes_are_not(client, sandbox):
    await authed(client)
    await client.get(f"/api/v2/contacts/{CID}")
    await client.get("/api/v2/contacts/zzz")
    await client.get("/sandbox/stats")
    assert sandbox.stats()["paths"] == sorted(
        ["/oauth/token", f"/api/v2/contacts/{CID}", "/api/v2/contacts/zzz"]
    )


# --------------------------------------------------------------------------- rate limit


async def test_429_with_retry_after_seconds(client, sandbox):
    await authed(client)
    sandbox.settings.rate_limit = 0.5
    sandbox.settings.burst = 1
    assert (await client.get(f"/api/v2/contacts/{CID}")).status_code == 200
    r = await client.patch(f"/api/v2/contacts/{CID}", json={"city": "Oslo"})
    assert r.status_code == 429
    assert r.json()["error"] == "rate_limited"
    assert r.headers["retry-after"] in ("1", "2")
    assert IMF_FIXDATE.match(r.headers["date"])
    assert sandbox.contact(CID) == {"contactId": CID}  # not applied
    sandbox.advance_clock(2)
    assert (await client.get(f"/api/v2/contacts/{CID}")).status_code == 200
    stats = sandbox.stats()
    assert stats["rate_limited"] == 1
    assert stats["by_status"] == {"200": 2, "429": 1}


async def test_429_retry_after_rounds_up_to_whole_seconds(client, sandbox):
    await authed(client)
    sandbox.settings.rate_limit = 0.1  # one request per 10 s
    assert (await client.get(f"/api/v2/contacts/{CID}")).status_code == 200
    r = await client.get(f"/api/v2/contacts/{CID}")
    assert r.status_code == 429
    assert 9 <= int(r.headers["retry-after"]) <= 10
    sandbox.settings.rate_limit = 1000  # bucket re-created, full again
    r = await client.get(f"/api/v2/contacts/{CID}")
    assert r.status_code == 200


async def test_429_with_retry_after_http_date(client, sandbox):
    await authed(client)
    sandbox.settings.rate_limit = 0.25
    sandbox.settings.burst = 1
    sandbox.settings.retry_after = "http-date"
    assert (await client.get(f"/api/v2/contacts/{CID}")).status_code == 200
    r = await client.get(f"/api/v2/contacts/{CID}")
    assert r.status_code == 429
    retry_at = r.headers["retry-after"]
    assert IMF_FIXDATE.match(retry_at), retry_at
    assert IMF_FIXDATE.match(r.headers["date"])
    delta = (
        email.utils.parsedate_to_datetime(retry_at)
        - email.utils.parsedate_to_datetime(r.headers["date"])
    ).total_seconds()
    # the real wait is just under 4 s; counted from the Date header it is never shorter
    assert 4 <= delta <= 6


async def test_429_without_retry_after(client, sandbox):
    await authed(client)
    sandbox.settings.rate_limit = 1
    sandbox.settings.retry_after = "none"
    assert (await client.get(f"/api/v2/contacts/{CID}")).status_code == 200
    r = await client.get(f"/api/v2/contacts/{CID}")
    assert r.status_code == 429
    assert "retry-after" not in r.headers


async def test_rate_limit_headers(client, sandbox):
    await authed(client)
    sandbox.settings.rate_limit = 10
    sandbox.settings.burst = 3
    sandbox.settings.rate_limit_headers = True
    remaining = []
    for _ in range(4):
        r = await client.get(f"/api/v2/contacts/{CID}")
        assert r.headers["x-ratelimit-limit"] == "10"
        assert int(r.headers["x-ratelimit-reset"]) >= 1
        remaining.append((r.status_code, int(r.headers["x-ratelimit-remaining"])))
    assert remaining[:3] == [(200, 2), (200, 1), (200, 0)]
    assert remaining[3] == (429, 0)
    sandbox.settings.rate_limit_headers = False
    sandbox.advance_clock(1)
    r = await client.get(f"/api/v2/contacts/{CID}")
    assert r.status_code == 200
    assert "x-ratelimit-limit" not in r.headers


async def test_rate_limit_does_not_apply_to_token_and_sandbox_routes(client, sandbox):
    sandbox.settings.rate_limit = 0.1
    for _ in range(3):
        await get_token(client)
        assert (await client.get("/sandbox/stats")).status_code == 200


async def test_rate_limit_is_checked_before_auth(client, sandbox):
    sandbox.settings.rate_limit = 0.1
    assert (await client.get(f"/api/v2/contacts/{CID}")).status_code == 401
    assert (await client.get(f"/api/v2/contacts/{CID}")).status_code == 429


# --------------------------------------------------------------------------- failures


async def test_outage(client, sandbox):
    await authed(client)
    sandbox.settings.outage = True
    r = await client.patch(f"/api/v2/contacts/{CID}", json={"city": "Oslo"})
    assert r.status_code == 503
    assert "retry-after" not in r.headers
    assert (await client.get("/api/v2/contacts/anything")).status_code == 503
    await get_token(client)  # the token endpoint keeps working
    sandbox.settings.outage = False
    assert (await client.patch(f"/api/v2/contacts/{CID}", json={"city": "Oslo"})).status_code == 200


async def test_error_rate_answers_5xx_without_applying(client, sandbox):
    await authed(client)
    sandbox.settings.error_rate = 1.0
    seen = set()
    for _ in range(20):
        r = await client.patch(f"/api/v2/contacts/{CID}", json={"city": "Oslo"})
        seen.add(r.status_code)
    assert seen <= {500, 502, 503, 504}
    assert len(seen) > 1
    assert sandbox.contact(CID) == {"contactId": CID}
    assert sandbox.stats()["applied"] == 0


async def test_drop_rate_applies_then_closes_the_connection(client, sandbox):
    await authed(client)
    sandbox.settings.drop_rate = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        await client.patch(f"/api/v2/contacts/{CID}", json={"city": "Oslo"})
    assert sandbox.contact(CID) == {"contactId": CID, "city": "Oslo"}
    stats = sandbox.stats()
    assert stats["dropped"] == 1
    assert stats["applied"] == 1
    assert stats["by_status"] == {}
    sandbox.settings.drop_rate = 0.0
    assert (await client.get(f"/api/v2/contacts/{CID}")).json()["city"] == "Oslo"


async def test_latency_and_max_concurrency(sandbox):
    sandbox.settings.latency = 0.3
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(base_url=sandbox.url, limits=limits, timeout=30) as c:
        await authed(c)
        statuses = []

        async def one(i: int) -> None:
            r = await c.patch(f"/api/v2/contacts/{contact_id(i)}", json={"city": f"C{i}"})
            statuses.append(r.status_code)

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(250):
                nursery.start_soon(one, i)
        elapsed = trio.current_time() - start
    assert statuses == [200] * 250
    assert elapsed >= 0.3
    stats = sandbox.stats()
    assert stats["max_concurrency"] >= 100  # the requests overlapped
    assert stats["applied"] == 250
    assert len(stats["updates"]) == 250


# --------------------------------------------------------------------------- /sandbox/*


async def test_sandbox_stats_settings_and_reset_routes(client, sandbox):
    await authed(client)
    await client.get(f"/api/v2/contacts/{CID}")
    r = await client.get("/sandbox/stats")
    assert r.status_code == 200
    assert r.json() == sandbox.stats()
    assert r.json()["requests"] == 1

    changes = {"rate_limit": 50, "latency": 0.01, "outage": True}
    r = await client.post("/sandbox/settings", json=changes)
    assert r.status_code == 200
    assert r.json()["rate_limit"] == 50
    assert sandbox.settings.rate_limit == 50
    assert sandbox.settings.outage is True
    assert (await client.get(f"/api/v2/contacts/{CID}")).status_code == 503
    r = await client.post("/sandbox/settings", json={"outage": False, "extra_ids": ["abc"]})
    assert sandbox.settings.extra_ids == ("abc",)
    assert (await client.get("/api/v2/contacts/abc")).status_code == 200
    assert (await client.get("/sandbox/settings")).json()["extra_ids"] == ["abc"]

    r = await client.post("/sandbox/settings", json={"retry_after": "never", "nope": 1, "port": 1})
    assert r.status_code == 400
    assert set(r.json()["fields"]) == {"retry_after", "nope", "port"}
    assert sandbox.settings.retry_after == "seconds"
    assert (await client.post("/sandbox/settings", content=b"[")).status_code == 400

    r = await client.post("/sandbox/reset")
    assert r.status_code == 200
    stats = sandbox.stats()
    assert stats["requests"] == 0
    assert stats["by_status"] == {}
    assert stats["paths"] == []
    assert stats["first_request_at"] is None
    assert (await client.get("/sandbox/nothing")).status_code == 404
    assert (await client.post("/sandbox/stats")).status_code == 405


def test_reset_stats_from_python():
    sb = Sandbox(settings())
    sb._requests = 5
    sb.reset_stats()
    assert sb.stats()["requests"] == 0


# --------------------------------------------------------------------------- HTTP robustness


@pytest.mark.parametrize(
    "garbage",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /x HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"PATCH /api/v2/contacts/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ],
)
async def test_malformed_request_gets_400_and_server_survives(client, sandbox, garbage):
    raw = await raw_exchange(sandbox, garbage)
    assert status_of(raw) == 400
    assert b"connection: close" in raw.lower()
    await get_token(client)


async def test_client_disconnects_are_quiet(client, sandbox):
    host, port = sandbox.url.removeprefix("http://").rsplit(":", 1)
    for partial in (b"", b"PATCH /api/v2/con", b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab"):
        stream = await trio.open_tcp_stream(host, int(port))
        if partial:
            await stream.send_all(partial)
        await stream.aclose()
    await get_token(client)


async def test_body_too_large_is_413(client, sandbox):
    token = (await get_token(client)).encode()
    size = 2 << 20
    head = (
        b"PATCH /api/v2/contacts/" + CID.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + token + b"\r\nContent-Length: %d\r\n\r\n" % size
    )
    host, port = sandbox.url.removeprefix("http://").rsplit(":", 1)
    received = []
    async with await trio.open_tcp_stream(host, int(port)) as stream:

        async def upload() -> None:
            try:
                await stream.send_all(head)
                for _ in range(size // 65536):
                    await stream.send_all(b"x" * 65536)
            except trio.BrokenResourceError:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload)
            with trio.fail_after(10):
                while chunk := await stream.receive_some(65536):
                    received.append(chunk)
    assert status_of(b"".join(received)) == 413
    assert sandbox.contact(CID) == {"contactId": CID}
    assert (await client.get("/sandbox/stats")).status_code == 200


async def test_keep_alive_and_pipelining(client, sandbox):
    token = (await get_token(client)).encode()
    one = (
        b"GET /api/v2/contacts/" + CID.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token + b"\r\n\r\n"
    )
    last = one.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    raw = await raw_exchange(sandbox, one * 3 + last)
    assert raw.count(b"HTTP/1.1 200 OK") == 4
    assert raw.lower().count(b"\r\ndate: ") == 4


# --------------------------------------------------------------------------- threads, CLI


def test_run_sandbox_in_thread_from_sync_code():
    with run_sandbox_in_thread(settings(rate_limit=1000)) as sb:
        assert sb.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=sb.url, timeout=10) as c:
            r = c.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("sandbox-client", "sandbox-secret"),
            )
            token = r.json()["access_token"]
            r = c.patch(
                f"/api/v2/contacts/{CID}",
                json={"lastName": "Lovelace"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200
        assert sb.contact(CID) == {"contactId": CID, "lastName": "Lovelace"}
        assert sb.stats()["applied"] == 1
        sb.reset_stats()
        assert sb.stats()["applied"] == 0
        url = sb.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/sandbox/stats", timeout=2)


def test_run_sandbox_in_thread_reports_a_taken_port():
    with run_sandbox_in_thread(settings()) as sb:
        port = int(sb.url.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            with run_sandbox_in_thread(settings(port=port)):
                pass


def test_command_line_arguments():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(
        [
            *("--port", "0", "--client-id", "cid", "--client-secret", "sec"),
            *("--token-lifetime", "30", "--rate-limit", "200", "--burst", "20"),
            *("--retry-after", "http-date", "--rate-limit-headers", "--latency", "0.01"),
            *("--error-rate", "0.1", "--drop-rate", "0.01"),
            *("--seed-count", "500", "--random-seed", "7"),
        ]
    )
    s = settings_from_args(ns)
    assert s == SandboxSettings(
        port=0, client_id="cid", client_secret="sec", token_lifetime=30.0, rate_limit=200.0,
        burst=20.0, retry_after="http-date", rate_limit_headers=True, latency=0.01,
        error_rate=0.1, drop_rate=0.01, seed_count=500, random_seed=7,
    )
    defaults = settings_from_args(parser.parse_args([]))
    assert defaults.rate_limit is None and defaults.host == "127.0.0.1"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_serve_forever_prints_url_and_stops_quietly_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl_cxone.sandbox", "--port", "0", "--seed-count", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        assert "sandbox-client" in line and "sandbox-secret" in line
        assert httpx.get(match.group(1) + "/sandbox/stats", timeout=5).status_code == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "Traceback" not in err, err


# --------------------------------------------------------------------------- sample data


def test_sample_csv_is_deterministic_and_matches_the_bundled_file(tmp_path):
    a = sample_data.write_sample_csv(tmp_path / "a.csv")
    b = sample_data.write_sample_csv(tmp_path / "b.csv", rows=300)
    assert a.read_bytes() == b.read_bytes()
    bundled = BUNDLED_CSV
    assert bundled.read_bytes() == a.read_bytes()
    other = sample_data.write_sample_csv(tmp_path / "c.csv", seed=1)
    assert other.read_bytes() != a.read_bytes()


def test_sample_csv_content():
    bundled = BUNDLED_CSV
    with bundled.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == sample_data.HEADER
        rows = list(reader)
    assert len(rows) == 300
    assert b'"Washington, D.C."' in bundled.read_bytes()
    sb = Sandbox(SandboxSettings())  # default seeding, not listening
    uuid_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    from etl_cxone.sandbox import _EMAIL_RE

    seeded = [r for r in rows if sb.contact(r["contact_id"]) is not None]
    unknown = [
        r for r in rows if uuid_re.match(r["contact_id"]) and sb.contact(r["contact_id"]) is None
    ]
    malformed = [r["contact_id"] for r in rows if not uuid_re.match(r["contact_id"])]
    bad_email = [r for r in rows if not _EMAIL_RE.fullmatch(r["email"])]
    assert len(seeded) == 300 - 6 - 2
    assert {r["contact_id"] for r in unknown} == {sample_data.unknown_id(i) for i in range(6)}
    assert sorted(malformed) == ["../admin", "not-a-uuid"]
    assert len(bad_email) == 8
    assert all(sb.contact(r["contact_id"]) is not None for r in bad_email)
    assert len({r["contact_id"] for r in rows}) == 300
    assert any(r["phone"] == "" for r in rows) and any(r["city"] == "" for r in rows)
    phones = [r["phone"] for r in rows if r["phone"]]
    assert all(re.fullmatch(r"\+(1[2-9]\d{9}|447\d{9})", p) for p in phones)
    assert any(p.startswith("+1") for p in phones) and any(p.startswith("+44") for p in phones)


def test_sample_data_module_entry_point(tmp_path):
    out = tmp_path / "x.csv"
    subprocess.run(
        [sys.executable, "-m", "etl_cxone.sample_data", str(out), "--rows", "50"], check=True
    )
    assert len(out.read_text(encoding="utf-8").splitlines()) == 51
