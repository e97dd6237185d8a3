"""The sandbox as an httpx transport: the same answers as over HTTP, in-process, with no socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from ._http import Handler, Request, Response, response_headers

__all__ = ["mock_transport"]


def mock_transport(handler: Handler) -> httpx.MockTransport:
    """Wrap a sandbox's request handler as an ``httpx.MockTransport`` for async clients.

    Only the HTTP plumbing of the server is left out (keep-alive, malformed requests, the
    body size limit); every answer comes from the same handler.

    Args:
        handler: Answers one request (the handler the server uses).

    Returns:
        The transport. A request the handler drops raises ``httpx.RemoteProtocolError``,
        as a closed connection does over HTTP.
    """

    async def handle(request: httpx.Request) -> httpx.Response:
        headers = [(name.lower(), value) for name, value in request.headers.raw]
        body = await request.aread()
        result = await handler(Request(request.method.encode("ascii"), request.url.raw_path, headers, body))
        if not isinstance(result, Response):  # DROP
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        # A stream, as over HTTP: a client may read the body in chunks, raw.
        return httpx.Response(result.status, headers=response_headers(result), stream=_Body(result.body))

    return httpx.MockTransport(handle)


class _Body(httpx.AsyncByteStream):
    """A response body handed out as one chunk, not read in advance."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body
