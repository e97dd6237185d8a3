"""The sandbox in-process, as an httpx transport: no socket, the same answers as over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from etl_core import Record, RunContext, ThrottledError
from etl_cxone import CxoneSink
from etl_cxone.sandbox import Sandbox, contact_id
from tests.plugins.sandbox.conftest import CID, CREDENTIALS, settings

#: Never connected to: every request goes through the transport.
BASE_URL = "http://127.0.0.1:9"


def in_process(sandbox: Sandbox) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=sandbox.transport(), base_url=BASE_URL)


async def script(client: httpx.AsyncClient) -> list[tuple[int, Any, list[str]]]:
    """A few requests of every kind; each answer as (status, body, header names)."""
    answers = []

    async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
        r = await client.request(method, url, **kwargs)
        body = r.json()
        if "access_token" in body:
            body["access_token"] = len(body["access_token"])  # random, but always as long
        answers.append((r.status_code, body, sorted(r.headers)))
        return r

    token = (await call("POST", "/oauth/token", data={"grant_type": "client_credentials"}, auth=CREDENTIALS)).json()
    await call("POST", "/oauth/token", data={"grant_type": "password"}, auth=CREDENTIALS)
    await call("GET", f"/api/v2/contacts/{CID}")
    client.headers["Authorization"] = f"Bearer {token['access_token']}"
    await call("PATCH", f"/api/v2/contacts/{CID}", json={"city": "Oslo", "email": "ada@example.com"})
    await call("PATCH", f"/api/v2/contacts/{CID}", json={"email": "nope"})
    await call("GET", f"/api/v2/contacts/{CID}")
    await call("DELETE", f"/api/v2/contacts/{CID}")
    await call("GET", "/api/v2/contacts/unknown%20id")
    await call("POST", "/sandbox/settings", json={"rate_limit": 0.5, "burst": 1})
    await call("GET", f"/api/v2/contacts/{CID}")
    await call("GET", f"/api/v2/contacts/{CID}")
    await call("POST", "/sandbox/reset")
    return answers


async def test_transport_answers_like_the_server(sandbox, client):
    expected = await script(client)
    async with in_process(Sandbox(settings())) as c:
        assert await script(c) == expected
    assert [status for status, _, _ in expected] == [200, 400, 401, 200, 400, 200, 405, 404, 200, 200, 429, 200]


async def test_a_dropped_update_is_a_closed_connection():
    sandbox = Sandbox(settings(drop_rate=1.0))
    async with in_process(sandbox) as c:
        r = await c.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=CREDENTIALS)
        c.headers["Authorization"] = "Bearer " + r.json()["access_token"]
        with pytest.raises(httpx.RemoteProtocolError):
            await c.patch(f"/api/v2/contacts/{CID}", json={"city": "Oslo"})
    assert sandbox.contact(CID) == {"contactId": CID, "city": "Oslo"}
    assert sandbox.stats()["dropped"] == 1


async def test_latency_sleeps_in_the_callers_trio_run(autojump_clock):
    sandbox = Sandbox(settings(latency=30.0))
    async with in_process(sandbox) as c:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(c.get, f"/api/v2/contacts/{CID}")
        assert trio.current_time() - start == pytest.approx(30.0)  # concurrent, on the mock clock
    stats = sandbox.stats()
    assert stats["by_status"] == {"401": 5}
    assert stats["max_concurrency"] == 5


async def test_reset_stats_from_python():
    sandbox = Sandbox(settings())
    async with in_process(sandbox) as c:
        await c.get(f"/api/v2/contacts/{CID}")
        await c.post("/oauth/token")
    assert sandbox.stats()["requests"] == 1
    assert sandbox.stats()["token_requests"] == 1
    sandbox.reset_stats()
    stats = sandbox.stats()
    assert (stats["requests"], stats["token_requests"], stats["paths"], stats["by_status"]) == (0, 0, [], {})


async def test_the_cxone_sink_runs_through_the_transport(tmp_path):
    sandbox = Sandbox(settings(), clock=lambda: 0.0)
    options = CxoneSink.Options(
        base_url=BASE_URL,
        token_url=BASE_URL + "/oauth/token",
        client_id="sandbox-client",
        client_secret="sandbox-secret",
    )
    sink = CxoneSink(options, transport=sandbox.transport())
    try:
        await sink.open(RunContext(run_id="run-1", pipeline="contacts", output_dir=str(tmp_path)))
        for i in range(3):
            record = Record(data={"contactId": contact_id(i), "firstName": f"N{i}"}, line=i + 2)
            assert (await sink.send(record)).status == 200
        sandbox.settings.rate_limit = 2
        sandbox.settings.burst = 1
        await sink.send(Record(data={"contactId": contact_id(3), "city": "Oslo"}, line=5))
        with pytest.raises(ThrottledError) as caught:
            await sink.send(Record(data={"contactId": contact_id(4), "city": "Oslo"}, line=6))
    finally:
        await sink.aclose()
    assert caught.value.status == 429
    assert caught.value.retry_after == 1.0  # half a second, in whole seconds
    assert sandbox.contact(contact_id(1)) == {"contactId": contact_id(1), "firstName": "N1"}
    assert sandbox.contact(contact_id(4)) == {"contactId": contact_id(4)}
    stats = sandbox.stats()
    assert stats["tokens_issued"] == 1
    assert stats["by_status"] == {"200": 4, "429": 1}
