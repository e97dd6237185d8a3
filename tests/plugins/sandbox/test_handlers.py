"""The API and ``/sandbox/*`` routes of the sandbox, over real HTTP."""

from __future__ import annotations

import httpx
import pytest
import trio

from etl_cxone.sandbox import contact_id
from tests.plugins.sandbox.conftest import CID, authed, get_token, raw_exchange, status_of


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
    assert stats["max_concurrency"] >= 25  # the requests overlapped (however slowly a loaded machine opens 250 connections)
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


async def test_quota_shapes_are_set_live(client, sandbox):
    changes = {
        "limit_shape": "fixed_window",
        "window": 60,
        "rate_limit": 100,
        "rate_schedule": [[20, 50], [40, 100]],
        "throttle_penalty": 1.5,
        "max_in_flight": 4,
        "latency_jitter": 0.01,
        "retry_after": "fractional",
        "throttle_status": 503,
    }
    r = await client.post("/sandbox/settings", json=changes)
    assert r.status_code == 200, r.text
    assert {name: r.json()[name] for name in changes} == changes
    assert sandbox.settings.rate_schedule == ((20.0, 50.0), (40.0, 100.0))
    assert (await client.get("/sandbox/settings")).json()["rate_schedule"] == [[20, 50], [40, 100]]

    r = await client.post(
        "/sandbox/settings",
        json={"rate_schedule": [[20, 50], [10, 100]], "throttle_status": 500, "limit_shape": "leaky", "window": 0},
    )
    assert r.status_code == 400
    assert r.json()["fields"] == {
        "rate_schedule": "the times must increase",
        "throttle_status": "Input should be 429 or 503",
        "limit_shape": "Input should be 'token_bucket', 'fixed_window' or 'sliding_window'",
        "window": "Input should be greater than 0",
    }
    assert sandbox.settings.limit_shape == "fixed_window"
