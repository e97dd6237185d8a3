"""One reused HTTP/1.1 connection, as an httpx transport: h11 over a trio stream.

httpx's default transport (httpcore) spends most of a small request's CPU in its
connection pool, its request and event objects and its locks; a sink's API requests
each go out on a client of one connection anyway (:class:`ClientPool`). This transport
is that one connection and nothing else: h11 parses the protocol, trio carries the
bytes, TLS is the shared SSL context's (verification on). On a keep-alive request to
a local server it costs a fifth of the CPU of httpcore's (``bench/latency.py``).

What it keeps of httpcore's behaviour, for the client above it: the request's
``timeout`` extension (connect, read, write), its ``trace`` callback for
``http11.send_request_headers.started``, httpx's exceptions (``ConnectError``,
``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``, ``ReadError``, ``WriteError``,
``RemoteProtocolError``, with the :mod:`ssl` error as the cause of a refused
certificate), a connection dropped after a cancelled or half-read exchange, and an idle
connection that the server closed replaced before it is used. Proxies are not its
business: a client sends a proxied URL through the proxy transport httpx mounts for it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx
import trio

#: The most bytes of a status line and headers (httpcore's own limit).
_MAX_HEAD = 100 * 1024
_READ_SIZE = 64 * 1024
_DEFAULT_PORTS = {b"http": 80, b"https": 443}


class ConnectionTransport(httpx.AsyncBaseTransport):
    """An httpx transport of one HTTP/1.1 connection, reused while the server keeps it open.

    One request at a time: a client of one connection (``max_connections=1``) waits
    for the last answer to be read or closed before it sends the next.

    Args:
        ssl_context: The context of ``https`` connections (certificates are verified
            as it says).
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        self._origin: tuple[bytes, str, int] | None = None
        self._stream: trio.abc.Stream | None = None
        self._socket: trio.socket.SocketType | None = None
        self._h11: h11.Connection | None = None
        self._busy = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return its response, whose body streams from the connection."""
        if self._busy:
            raise RuntimeError("one request at a time on a ConnectionTransport")
        self._busy = True
        try:
            timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
            connection = await self._connection(request.url, timeouts.get("connect"))
            body = await request.aread()
            trace = request.extensions.get("trace")
            if trace is not None:
                await trace("http11.send_request_headers.started", {"request": request})
            try:
                head = h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
                data = connection.send(head) + (connection.send(h11.Data(data=body)) if body else b"")
                data += connection.send(h11.EndOfMessage())
            except h11.LocalProtocolError as exc:  # e.g. a header value h11 will not send
                raise httpx.LocalProtocolError(str(exc)) from exc
            await self._write(data, timeouts.get("write"))
            response = await self._response_head(timeouts.get("read"))
        except BaseException:
            self._busy = False
            await self._drop()
            raise
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw_items(),
            stream=_Body(self, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
        )

    async def _connection(self, url: httpx.URL, connect_timeout: float | None) -> h11.Connection:
        """The open connection to ``url``'s origin: kept if the server still holds it, else a new one."""
        scheme = url.raw_scheme
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS.get(scheme, 80))
        if self._h11 is not None and (origin != self._origin or self._closed_by_server()):
            await self._drop()
        if self._h11 is None:
            self._stream = await _connect(origin, self._ssl_context, connect_timeout)
            socket_stream = self._stream.transport_stream if isinstance(self._stream, trio.SSLStream) else self._stream
            assert isinstance(socket_stream, trio.SocketStream)
            self._socket = socket_stream.socket
            self._origin, self._h11 = origin, h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        return self._h11

    def _closed_by_server(self) -> bool:
        """An idle connection that has something to read was closed (or broken) by the server."""
        assert self._socket is not None  # set with the connection
        return self._socket.is_readable()

    async def _write(self, data: bytes, timeout: float | None) -> None:
        assert self._stream is not None
        try:
            with trio.fail_after(_seconds(timeout)):
                await self._stream.send_all(data)
        except trio.TooSlowError:
            raise httpx.WriteTimeout("timed out writing the request") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.WriteError(f"the connection broke while writing: {exc!r}") from exc

    async def _response_head(self, timeout: float | None) -> h11.Response:
        while True:
            event = await self.next_event(timeout)
            if isinstance(event, h11.Response):
                return event
            # An informational answer (100 Continue, 103 Early Hints) comes before the real one.

    async def next_event(self, timeout: float | None) -> Any:
        """The next h11 event of the answer, reading from the connection as needed."""
        connection, stream = self._h11, self._stream
        assert connection is not None and stream is not None
        try:
            while (event := connection.next_event()) is h11.NEED_DATA:
                with trio.fail_after(_seconds(timeout)):
                    data = await stream.receive_some(_READ_SIZE)
                connection.receive_data(bytes(data))  # b"": the server closed; h11 says if that was too soon
        except trio.TooSlowError:
            raise httpx.ReadTimeout("timed out reading the answer") from None
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.ReadError(f"the connection broke while reading: {exc!r}") from exc
        return event

    async def answered(self) -> None:
        """The whole answer was read: keep the connection for the next request if both sides may."""
        connection = self._h11
        self._busy = False
        if connection is not None and connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
        else:
            await self._drop()  # e.g. the server said ``Connection: close``

    async def abandon(self) -> None:
        """The answer was not read to its end: the connection cannot carry another request."""
        self._busy = False
        await self._drop()

    async def _drop(self) -> None:
        stream, self._stream, self._socket, self._h11, self._origin = self._stream, None, None, None, None
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._drop()


class _Body(httpx.AsyncByteStream):
    """The body of an answer, read from the connection as the client iterates it."""

    def __init__(self, transport: ConnectionTransport, timeout: float | None) -> None:
        self._transport, self._timeout = transport, timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        transport = self._transport
        try:
            while True:
                event = await transport.next_event(self._timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._done = True
                    await transport.answered()
                    return
        except BaseException:
            if not self._done:
                self._done = True
                await transport.abandon()
            raise

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            await self._transport.abandon()


async def _connect(origin: tuple[bytes, str, int], ssl_context: ssl.SSLContext, timeout: float | None) -> trio.abc.Stream:
    """Open a connection to ``origin`` (TLS for ``https``), as httpx's errors say a failure."""
    scheme, host, port = origin
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(_seconds(timeout)):
            stream = await trio.open_tcp_stream(host, port)
            if scheme == b"https":
                stream = trio.SSLStream(stream, ssl_context, server_hostname=host, https_compatible=True)
                await stream.do_handshake()
            return stream
    except trio.TooSlowError:
        error: httpx.TransportError = httpx.ConnectTimeout(f"timed out connecting to {host}:{port}")
        cause: BaseException | None = None
    except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
        # A refused certificate comes as the cause of trio's BrokenResourceError.
        error, cause = httpx.ConnectError(f"could not connect to {host}:{port}: {exc.__cause__ or exc!r}"), exc
    if stream is not None:
        await trio.aclose_forcefully(stream)
    raise error from cause


def _seconds(timeout: float | None) -> float:
    return float("inf") if timeout is None else timeout
