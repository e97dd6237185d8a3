"""Tests of the one-connection transport (``etl_core.http._connection``), against real servers.

Each server is a small HTTP/1.1 server on 127.0.0.1 (h11 over trio, TLS with a
self-signed certificate where said) that counts its connections and answers each
request as the test scripts it.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable

import h11
import httpx
import pytest
import trio

from etl_core import FatalError, TransientError
from etl_core.http import Limits, SinkConnections
from etl_core.http._connection import ConnectionTransport
from tests.hostile.conftest import self_signed, self_signed_pem  # noqa: F401 - fixtures for these tests

#: How the server answers a request: "ok" (keep-alive), "close" (``Connection: close``),
#: "hang up" (answers, then closes without saying so), "silent" (never answers),
#: "cookie" (keep-alive, and sets a cookie), "early hints" (a 103 first), "http/1.0" (an
#: HTTP/1.0 answer whose body ends with the connection).
Script = Callable[[int], str]


@dataclasses.dataclass
class Server:
    url: str = ""
    connections: int = 0
    targets: list[str] = dataclasses.field(default_factory=list)
    bodies: list[bytes] = dataclasses.field(default_factory=list)
    cookies: list[str | None] = dataclasses.field(default_factory=list)


async def serve(nursery: trio.Nursery, script: Script = lambda number: "ok", *, tls: ssl.SSLContext | None = None) -> Server:
    """Start a server in ``nursery``; request ``n`` (from 1) is answered as ``script(n)`` says."""
    server = Server()

    async def handle(stream: trio.abc.Stream) -> None:
        server.connections += 1
        connection = h11.Connection(h11.SERVER)
        while True:
            body = b""
            while not isinstance(event := connection.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    connection.receive_data(data)
                elif isinstance(event, h11.Request):
                    server.targets.append(event.target.decode())
                    server.cookies.append(next((v.decode() for k, v in event.headers if k == b"cookie"), None))
                elif isinstance(event, h11.Data):
                    body += event.data
            server.bodies.append(body)
            how = script(len(server.targets))
            if how == "silent":
                await trio.sleep_forever()
            if how == "http/1.0":  # a body that ends where the connection does
                await stream.send_all(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + b'{"number": %d}' % len(server.targets))
                await stream.aclose()
                return
            if how == "early hints":
                await stream.send_all(connection.send(h11.InformationalResponse(status_code=103, headers=[("Link", "</x>")])))
            answer = b'{"number": %d}' % len(server.targets)
            headers = [("Content-Length", str(len(answer)))] + ([("Connection", "close")] if how == "close" else [])
            if how == "cookie":
                headers.append(("Set-Cookie", "AWSALB=sticky-1; Path=/"))
            await stream.send_all(
                connection.send(h11.Response(status_code=200, headers=headers))
                + connection.send(h11.Data(data=answer))
                + connection.send(h11.EndOfMessage())
            )
            if how in ("close", "hang up"):
                await stream.aclose()
                return
            connection.start_next_cycle()

    if tls is None:
        listeners = await nursery.start(trio.serve_tcp, handle, 0)
    else:
        listeners = await nursery.start(trio.serve_ssl_over_tcp, handle, 0, tls)
    port = listeners[0].transport_listener.socket.getsockname()[1] if tls else listeners[0].socket.getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    return server


def client(context: ssl.SSLContext | None = None, **kwargs) -> httpx.AsyncClient:
    transport = ConnectionTransport(context or ssl.create_default_context())
    return httpx.AsyncClient(transport=transport, timeout=kwargs.pop("timeout", 5.0), **kwargs)


async def test_requests_reuse_one_connection_and_carry_their_bodies(nursery) -> None:
    server = await serve(nursery)
    async with client() as http:
        answers = [await http.patch(f"{server.url}/api/v2/contacts/{n}", json={"n": n}) for n in range(5)]
    assert [answer.json() for answer in answers] == [{"number": n} for n in range(1, 6)]
    assert server.targets == [f"/api/v2/contacts/{n}" for n in range(5)]
    assert server.bodies == [b'{"n":%d}' % n for n in range(5)]
    assert server.connections == 1


@pytest.mark.parametrize("how", ["close", "hang up"])
async def test_a_connection_the_server_ends_is_replaced_for_the_next_request(nursery, how: str) -> None:
    # "hang up": the server closes its idle side without a word; the next request must not
    # be sent into that closed connection (it would fail, and be retried for nothing).
    server = await serve(nursery, lambda number: how)
    async with client() as http:
        for _ in range(3):
            assert (await http.get(server.url + "/x")).status_code == 200
            await trio.sleep(0.05)  # the server's close arrives
    assert server.connections == 3


async def test_an_answer_not_read_to_its_end_drops_the_connection(nursery) -> None:
    server = await serve(nursery)
    async with client() as http:
        async with http.stream("GET", server.url + "/first") as response:
            assert response.status_code == 200  # the body is left unread
        assert (await http.get(server.url + "/second")).json() == {"number": 2}
    assert server.connections == 2


async def test_a_request_cancelled_mid_answer_leaves_the_transport_usable(nursery) -> None:
    server = await serve(nursery, lambda number: "silent" if number == 1 else "ok")
    async with client() as http:
        with trio.move_on_after(0.2) as waited:
            await http.get(server.url + "/silent")
        assert waited.cancelled_caught
        assert (await http.get(server.url + "/next")).json() == {"number": 2}
    assert server.connections == 2


async def test_the_read_timeout_is_httpx_s(nursery) -> None:
    server = await serve(nursery, lambda number: "silent")
    async with client(timeout=httpx.Timeout(5.0, read=0.2)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(server.url + "/silent")


async def test_a_refused_connection_is_httpx_s_connect_error() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nobody listens there now
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/x")


async def test_tls_with_a_trusted_certificate_reuses_its_connection(nursery, self_signed, self_signed_pem) -> None:  # noqa: F811
    server = await serve(nursery, tls=self_signed)
    async with client(ssl.create_default_context(cafile=self_signed_pem[0])) as http:
        answers = [await http.get(server.url + f"/{n}") for n in range(3)]
    assert [answer.json() for answer in answers] == [{"number": n} for n in range(1, 4)]
    assert server.connections == 1


async def test_a_certificate_that_cannot_be_verified_is_fatal_through_the_sink_connections(nursery, self_signed) -> None:  # noqa: F811
    server = await serve(nursery, tls=self_signed)
    connections = SinkConnections(limits=Limits(5.0, 10_000), timeout=5.0, connect_timeout=5.0, max_connections=2)
    try:
        with pytest.raises(FatalError, match=r"certificate verify failed for 127\.0\.0\.1 \(self-signed certificate\)"):
            await connections.request("GET", server.url + "/x", None, None)
    finally:
        await connections.aclose()
    assert server.targets == []


async def test_sink_connections_send_through_the_proxy_the_environment_names(nursery, monkeypatch) -> None:
    # A plain-HTTP proxy gets the absolute URL as its target; the API host is never resolved.
    proxy = await serve(nursery)
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    connections = SinkConnections(limits=Limits(5.0, 10_000), timeout=5.0, connect_timeout=5.0, max_connections=2)
    try:
        answer = await connections.request("PATCH", "http://api.example.invalid/api/v2/contacts/1", b"{}", None)
    finally:
        await connections.aclose()
    assert (answer.status, proxy.targets) == (200, ["http://api.example.invalid/api/v2/contacts/1"])


async def test_sink_connections_say_a_dropped_connection_is_transient(nursery) -> None:
    server = await serve(nursery, lambda number: "silent")
    connections = SinkConnections(limits=Limits(0.3, 10_000), timeout=5.0, connect_timeout=5.0, max_connections=1)
    try:
        with pytest.raises(TransientError, match="no complete answer within 0.3 s"):
            await connections.request("GET", server.url + "/x", None, None)
        assert server.connections == 1
    finally:
        await connections.aclose()


async def test_sink_connections_send_a_cookie_the_server_set_on_the_connection_s_client(nursery) -> None:
    # e.g. a load balancer's stickiness cookie: the client that got it sends it back.
    server = await serve(nursery, lambda number: "cookie" if number == 1 else "ok")
    connections = SinkConnections(limits=Limits(5.0, 10_000), timeout=5.0, connect_timeout=5.0, max_connections=1)
    try:
        for _ in range(3):
            assert (await connections.request("GET", server.url + "/x", None, None)).status == 200
    finally:
        await connections.aclose()
    assert server.cookies == [None, "AWSALB=sticky-1", "AWSALB=sticky-1"]
    assert server.connections == 1


async def test_a_request_h11_will_not_send_is_httpx_s_local_protocol_error(nursery) -> None:
    server = await serve(nursery)
    async with client() as http:
        request = http.build_request("GET", server.url + "/x")
        request.headers["Transfer-Encoding"] = "gzip"  # not a coding h11 can frame a body with
        with pytest.raises(httpx.LocalProtocolError):
            await http.send(request)
        assert (await http.get(server.url + "/y")).json() == {"number": 1}  # the transport is still usable
    assert server.targets == ["/y"]


@pytest.mark.parametrize("how", ["early hints", "http/1.0"])
async def test_an_informational_answer_or_a_body_ended_by_the_close_is_read_whole(nursery, how: str) -> None:
    server = await serve(nursery, lambda number: how)
    async with client() as http:
        answers = [await http.get(server.url + f"/{n}") for n in range(2)]
    assert [(answer.status_code, answer.json()) for answer in answers] == [(200, {"number": 1}), (200, {"number": 2})]
    assert server.connections == (1 if how == "early hints" else 2)
