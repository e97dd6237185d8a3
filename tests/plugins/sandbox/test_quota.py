"""The sandbox's rate limit: who gets 429, and what the answer says."""

from __future__ import annotations

import email.utils

from tests.plugins.sandbox.conftest import CID, IMF_FIXDATE, authed, get_token


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
