"""The HTTP/1.1 plumbing of the server: malformed input, disconnects, limits, keep-alive."""

from __future__ import annotations

import pytest
import trio

from tests.plugins.sandbox.conftest import CID, get_token, host_port, raw_exchange, status_of


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
    for partial in (b"", b"PATCH /api/v2/con", b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab"):
        stream = await trio.open_tcp_stream(*host_port(sandbox))
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
    received = []
    async with await trio.open_tcp_stream(*host_port(sandbox)) as stream:

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
