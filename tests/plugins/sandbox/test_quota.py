"""The sandbox's rate limit: who gets 429, and what the answer says."""

from __future__ import annotations

import email.utils

import httpx
import pytest
import trio

from etl_cxone.sandbox import Sandbox, open_sandbox
from tests.plugins.sandbox.conftest import CID, IMF_FIXDATE, authed, get_token, settings


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


# --------------------------------------------------------------------------- quota shapes
# The sandbox's clock is stopped: only advance_clock moves it, so every wait is exact. Each
# test runs over real HTTP on 127.0.0.1 and in-process through the transport.

URL = f"/api/v2/contacts/{CID}"


@pytest.fixture(params=["http", "in-process"])
async def frozen(request):
    """A sandbox on a stopped clock and a client holding a token."""
    if request.param == "http":
        async with open_sandbox(settings(), clock=lambda: 0.0) as sb:
            async with httpx.AsyncClient(base_url=sb.url, timeout=10) as c:
                yield sb, await authed(c)
    else:
        sb = Sandbox(settings(), clock=lambda: 0.0)
        async with httpx.AsyncClient(transport=sb.transport(), base_url="http://127.0.0.1:9") as c:
            yield sb, await authed(c)


def configure(sb: Sandbox, **changes) -> None:
    for name, value in changes.items():
        setattr(sb.settings, name, value)


async def statuses(c: httpx.AsyncClient, count: int) -> list[int]:
    return [(await c.get(URL)).status_code for _ in range(count)]


async def refusal(c: httpx.AsyncClient) -> dict[str, str]:
    """Send one request that must be refused; return its status and retry headers."""
    r = await c.get(URL)
    assert r.status_code in (429, 503), r.text
    retry = {name: r.headers[name] for name in ("retry-after", "retry-after-ms") if name in r.headers}
    return {"status": str(r.status_code), **retry}


async def admitted_over(sb: Sandbox, c: httpx.AsyncClient, seconds: float, step: float) -> int:
    """Send one request every ``step`` seconds of sandbox time for ``seconds``; count the admitted."""
    admitted = 0
    for _ in range(round(seconds / step)):
        admitted += (await c.get(URL)).status_code == 200
        sb.advance_clock(step)
    return admitted


async def test_strict_spacing_admits_one_request_per_interval(frozen):
    sb, c = frozen
    configure(sb, rate_limit=100, burst=1, retry_after="fractional")
    assert await statuses(c, 1) == [200]
    assert await refusal(c) == {"status": "429", "retry-after": "0.010"}
    sb.advance_clock(0.004)
    assert await refusal(c) == {"status": "429", "retry-after": "0.006"}
    sb.advance_clock(0.006)
    assert await statuses(c, 2) == [200, 429]
    sb.advance_clock(1)
    assert await admitted_over(sb, c, 0.2, 0.001) == 20


async def test_token_bucket_burst(frozen):
    sb, c = frozen
    configure(sb, rate_limit=10, burst=5)
    assert await statuses(c, 8) == [200] * 5 + [429] * 3
    sb.advance_clock(0.1)
    assert await statuses(c, 2) == [200, 429]
    sb.advance_clock(60)  # refilled up to the burst, no further
    assert await statuses(c, 8) == [200] * 5 + [429] * 3
    assert sb.stats()["rate_limited"] == 7


async def test_fixed_window_admits_its_count_then_refuses_until_the_window_ends(frozen):
    sb, c = frozen
    configure(sb, limit_shape="fixed_window", rate_limit=2, window=5, rate_limit_headers=True)
    r = await c.get(URL)
    assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"], r.headers["x-ratelimit-reset"]) == (
        "10",
        "9",
        "5",
    )
    assert await statuses(c, 10) == [200] * 9 + [429]
    assert await refusal(c) == {"status": "429", "retry-after": "5"}
    sb.advance_clock(3.2)
    sb.settings.retry_after = "fractional"
    assert await refusal(c) == {"status": "429", "retry-after": "1.800"}
    sb.advance_clock(1.8)  # the next window: a full count again
    assert await statuses(c, 11) == [200] * 10 + [429]
    sb.advance_clock(5 * 7)  # windows follow each other from the first request
    assert await admitted_over(sb, c, 20, 0.25) == 40


async def test_fixed_window_of_a_minute(frozen):
    sb, c = frozen
    configure(sb, limit_shape="fixed_window", rate_limit=100, window=60, rate_limit_headers=True)
    r = await c.get(URL)
    assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == ("6000", "5999")


async def test_sliding_window_admits_at_most_its_count_in_any_trailing_window(frozen):
    sb, c = frozen
    configure(sb, limit_shape="sliding_window", rate_limit=1, window=10, retry_after="fractional")
    assert await statuses(c, 5) == [200] * 5
    sb.advance_clock(6)
    assert await statuses(c, 5) == [200] * 5
    assert await refusal(c) == {"status": "429", "retry-after": "4.000"}  # when the first five leave
    sb.advance_clock(4)
    assert await statuses(c, 6) == [200] * 5 + [429]  # a fixed window would admit ten here
    assert await refusal(c) == {"status": "429", "retry-after": "6.000"}
    sb.advance_clock(100)
    assert await admitted_over(sb, c, 20, 0.25) == 20


async def test_hammering_extends_the_refusal_by_the_penalty(frozen):
    sb, c = frozen
    configure(sb, rate_limit=1, burst=1, throttle_penalty=5, retry_after="fractional")
    assert await statuses(c, 1) == [200]
    sb.advance_clock(0.5)
    assert await refusal(c) == {"status": "429", "retry-after": "5.000"}  # not the bucket's 0.5
    sb.advance_clock(3)
    assert await refusal(c) == {"status": "429", "retry-after": "5.000"}  # shut until 8.5 now
    sb.advance_clock(4.9)
    assert await refusal(c) == {"status": "429", "retry-after": "5.000"}  # 8.5 would have done
    sb.advance_clock(5)  # a client that waits as told gets in
    assert await statuses(c, 2) == [200, 429]
    assert sb.stats()["rate_limited"] == 4


async def test_the_schedule_moves_the_rate_after_the_first_request(frozen):
    sb, c = frozen
    configure(sb, rate_limit=100, burst=1, retry_after="fractional", rate_schedule=((20, 50), (40, 100)))
    assert await statuses(c, 1) == [200]
    assert await refusal(c) == {"status": "429", "retry-after": "0.010"}
    sb.advance_clock(19.9)
    assert await statuses(c, 2) == [200, 429]
    assert sb.settings.rate_limit == 100
    sb.advance_clock(0.1)
    assert await statuses(c, 1) == [200]
    assert await refusal(c) == {"status": "429", "retry-after": "0.020"}
    assert sb.settings.rate_limit == 50
    # A live change holds until the next entry.
    r = await c.post("/sandbox/settings", json={"rate_limit": 10})
    assert r.json()["rate_limit"] == 10
    assert await statuses(c, 1) == [200]
    assert await refusal(c) == {"status": "429", "retry-after": "0.100"}
    sb.advance_clock(20)
    assert await statuses(c, 1) == [200]
    assert await refusal(c) == {"status": "429", "retry-after": "0.010"}
    assert sb.settings.rate_limit == 100
    # A reset of the statistics starts the schedule over from the next request.
    assert (await c.post("/sandbox/reset")).status_code == 200
    sb.advance_clock(1)
    assert await statuses(c, 1) == [200]
    sb.advance_clock(19.99)
    assert await statuses(c, 1) == [200]
    assert sb.settings.rate_limit == 100
    sb.advance_clock(0.01)
    assert await statuses(c, 1) == [200]
    assert sb.settings.rate_limit == 50


@pytest.mark.parametrize(
    ("form", "short", "long"),
    [
        ("seconds", {"retry-after": "1"}, {"retry-after": "3"}),
        ("fractional", {"retry-after": "0.012"}, {"retry-after": "2.500"}),
        ("milliseconds", {"retry-after-ms": "12"}, {"retry-after-ms": "2500"}),
        ("none", {}, {}),
    ],
)
async def test_retry_after_forms(frozen, form, short, long):
    sb, c = frozen
    configure(sb, rate_limit=1, burst=1, retry_after=form)
    assert await statuses(c, 1) == [200]
    sb.advance_clock(0.988)
    assert await refusal(c) == {"status": "429", **short}
    sb.settings.rate_limit = 0.4  # a new bucket, full
    assert await statuses(c, 1) == [200]
    assert await refusal(c) == {"status": "429", **long}


async def test_retry_after_http_date_on_a_stopped_clock(frozen):
    sb, c = frozen
    configure(sb, rate_limit=0.4, burst=1, retry_after="http-date")
    assert await statuses(c, 1) == [200]
    r = await c.get(URL)
    assert r.status_code == 429 and "retry-after-ms" not in r.headers
    wait = email.utils.parsedate_to_datetime(r.headers["retry-after"]) - email.utils.parsedate_to_datetime(
        r.headers["date"]
    )
    assert wait.total_seconds() in (3, 4)  # 2.5 s from a Date truncated to the second, rounded up


async def test_overload_answered_with_503(frozen):
    sb, c = frozen
    configure(sb, rate_limit=1, burst=1, throttle_status=503)
    assert await statuses(c, 1) == [200]
    r = await c.get(URL)
    assert (r.status_code, r.headers["retry-after"], r.json()["error"]) == (503, "1", "service_unavailable")
    assert sb.stats()["rate_limited"] == 1
    assert sb.stats()["by_status"] == {"200": 1, "503": 1}


# --------------------------------------------------------------------------- requests in flight


async def test_max_in_flight_over_http(sandbox, client):
    await authed(client)
    configure(sandbox, max_in_flight=2, latency=0.5, retry_after="fractional")
    results = []

    async def one() -> None:
        results.append((await client.get(URL)).status_code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
        with trio.fail_after(5):
            while sandbox.stats()["max_concurrency"] < 2:
                await trio.sleep(0.01)
        assert await refusal(client) == {"status": "429", "retry-after": "0.500"}
        assert results == []  # refused while the two were still being handled
    assert results == [200, 200]
    assert await statuses(client, 1) == [200]
    stats = sandbox.stats()
    assert (stats["max_concurrency"], stats["rate_limited"]) == (2, 1)


async def test_max_in_flight_refuses_the_extra_request_at_once(autojump_clock):
    sb = Sandbox(settings(max_in_flight=3, latency=1.0, throttle_status=503))
    answered = []
    async with httpx.AsyncClient(transport=sb.transport(), base_url="http://127.0.0.1:9") as c:
        await authed(c)

        async def one() -> None:
            r = await c.get(URL)
            answered.append((trio.current_time(), r.status_code, r.headers.get("retry-after")))

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)
    assert sorted((round(at - start, 6), status, retry) for at, status, retry in answered) == [
        (0, 503, "1"),
        (0, 503, "1"),
        (1, 200, None),
        (1, 200, None),
        (1, 200, None),
    ]


async def test_latency_jitter_is_random_within_its_bounds_and_seeded(autojump_clock):
    async def durations(seed: int) -> list[float]:
        sb = Sandbox(settings(latency=1.0, latency_jitter=0.5, random_seed=seed))
        async with httpx.AsyncClient(transport=sb.transport(), base_url="http://127.0.0.1:9") as c:
            found = []
            for _ in range(20):
                start = trio.current_time()
                await c.get(URL)
                found.append(trio.current_time() - start)
        return found

    first = await durations(3)
    assert all(1.0 <= d <= 1.5 for d in first)
    assert max(first) - min(first) > 0.25  # spread over the range, not a constant
    assert await durations(3) == pytest.approx(first)
    assert await durations(4) != pytest.approx(first)
