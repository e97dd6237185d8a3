"""Tests of one HTTP exchange within a deadline and a byte budget (``etl_core.http._exchange``).

httpx's mock transport stands in for the server: what is tested is how the answer is
read, not the socket (tests/hostile/ has real hostile servers).
"""

from __future__ import annotations

import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import trio

from etl_core import FatalError, PermanentError, TransientError
from etl_core.http import Limits, exchange

LIMITS = Limits(deadline=5.0, max_bytes=1000)


class Body(httpx.AsyncByteStream):
    """A response body served piece by piece, sleeping ``pause`` seconds before each."""

    def __init__(self, pieces: list[bytes], pause: float = 0.0) -> None:
        self.pieces = pieces
        self.pause = pause
        self.served = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            await trio.sleep(self.pause)
            self.served += 1
            yield piece


async def call(handler: Callable[[httpx.Request], httpx.Response], limits: Limits = LIMITS, **kwargs):
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        request = client.build_request("GET", "https://api.example.com/x")
        return await exchange(client, request, limits, what="", oversize=kwargs.pop("oversize", PermanentError), **kwargs)


def gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def gzipped(status: int, content: bytes) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering ``content`` (raw, as a gzip body would be sent) without a length."""
    return lambda request: httpx.Response(status, headers={"Content-Encoding": "gzip"}, stream=Body([content]))


async def test_a_gzip_body_is_decoded() -> None:
    answer = await call(gzipped(200, gzip(b'{"a": 1}')))
    assert (answer.status, answer.json(), answer.unreadable) == (200, {"a": 1}, "")


async def test_decoded_bytes_are_counted_however_small_the_compressed_body() -> None:
    bomb = gzip(bytes(100 << 20))  # 100 KB that expand to 100 MB
    limits = Limits(deadline=5.0, max_bytes=len(bomb) * 2)
    tracemalloc.start()
    try:
        with pytest.raises(PermanentError, match=r"^answer larger than [0-9,]+ bytes \(max_response_bytes\)$"):
            await call(gzipped(200, bomb), limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20  # never the 100 MB the bomb expands to


async def test_an_endless_body_stops_at_the_budget() -> None:
    body = Body([b"x" * 300] * 1000)
    with pytest.raises(TransientError, match="answer larger than 1,000 bytes"):
        await call(lambda request: httpx.Response(500, stream=body), oversize=TransientError)
    assert body.served == 4


async def test_a_declared_length_over_the_budget_is_refused_unread() -> None:
    body = Body([b"x" * 10])
    with pytest.raises(FatalError, match="answer larger than"):
        await call(lambda request: httpx.Response(200, headers={"Content-Length": "1001"}, stream=body), oversize=FatalError)
    assert body.served == 0


@pytest.mark.parametrize(
    ("coding", "content", "problem"),
    [
        ("gzip", b"not gzip", "not valid gzip"),
        ("gzip", gzip(b"x" * 100)[:-12], "truncated gzip"),
        ("br", b"\x1b\x03", "in a content coding that was not asked for"),
    ],
)
async def test_a_body_that_cannot_be_decoded_is_empty_and_says_why(coding: str, content: bytes, problem: str) -> None:
    answer = await call(lambda request: httpx.Response(400, headers={"Content-Encoding": coding}, stream=Body([content])))
    assert (answer.status, answer.body, answer.unreadable) == (400, b"", problem)


async def test_the_deadline_bounds_a_trickled_body(autojump_clock: trio.abc.Clock) -> None:
    body = Body([b"x"] * 100, pause=1.0)  # each read is quick, the whole is not
    with pytest.raises(TransientError, match=r"^no complete answer within 5 s \(request_timeout\)$"):
        await call(lambda request: httpx.Response(200, stream=body))
    assert body.served == 4


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ReadTimeout("slow"), TransientError("timeout (ReadTimeout)")),
        (httpx.RemoteProtocolError("gone"), TransientError("connection error (RemoteProtocolError)")),
    ],
)
async def test_transport_failures_are_transient(error: Exception, expected: Exception) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(type(expected), match=f"^{str(expected).replace('(', '[(]').replace(')', '[)]')}$"):
        await call(fail)


async def test_a_certificate_that_cannot_be_verified_is_fatal() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        refusal = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
        refusal.verify_message = "Hostname mismatch, certificate is not valid for 'api.example.com'."
        raise httpx.ConnectError("handshake") from refusal

    with pytest.raises(FatalError) as caught:
        await call(fail)
    assert str(caught.value) == (
        "certificate verify failed for api.example.com "
        "(Hostname mismatch, certificate is not valid for 'api.example.com'.)"
    )
