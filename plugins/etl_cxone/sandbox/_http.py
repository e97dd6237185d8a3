"""Minimal HTTP/1.1 server plumbing for the sandbox (trio + h11).

One task per connection, keep-alive and pipelining through h11, a hard cap on request bodies,
and no noise when a client goes away. Malformed requests are answered with 400 and the
connection is closed; nothing a client sends can crash the server.
"""

from __future__ import annotations

import email.utils
import http
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import trio

__all__ = [
    "DROP",
    "MAX_BODY",
    "Handler",
    "Headers",
    "Request",
    "Response",
    "http_date",
    "json_response",
    "response_headers",
    "serve_connection",
]

log = logging.getLogger("etl_cxone.sandbox")

#: Largest request body accepted, in bytes (larger ones get 413 and the connection is closed).
MAX_BODY = 1 << 20
_RECV_SIZE = 64 * 1024
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 16 * MAX_BODY

#: A header list: ``(lower-case name, value)`` pairs.
Headers = list[tuple[bytes, bytes]]

_REASONS = {s.value: s.phrase.encode("ascii") for s in http.HTTPStatus}
_JSON = b"application/json"
_SERVER = b"etl-cxone-sandbox"


class _Drop:
    """Marker returned by a handler to close the connection without any response."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


#: Return this from a handler to close the connection without responding.
DROP = _Drop()


class Request:
    """One parsed HTTP request.

    Attributes:
        method: Request method, e.g. ``b"PATCH"``.
        target: Raw request target exactly as sent, e.g. ``b"/api/v2/contacts/x?y=1"``.
        headers: Header list with lower-cased names.
        body: Full request body.
    """

    __slots__ = ("body", "headers", "method", "target")

    def __init__(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        """Return the first value of a header (``name`` lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Response:
    """A response to send.

    Attributes:
        status: HTTP status code.
        body: Response body (JSON unless headers say otherwise).
        headers: Extra headers; Content-Type, Content-Length and Date are added when absent.
        date: Wall-clock time (seconds since the epoch) for the Date header; now when None.
        close: Close the connection after sending.
    """

    __slots__ = ("body", "close", "date", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        date: float | None = None,
        close: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.date = date
        self.close = close


def json_response(
    status: int,
    payload: Any,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    date: float | None = None,
    close: bool = False,
) -> Response:
    """Build a JSON response.

    Args:
        status: HTTP status code.
        payload: JSON-serialisable body.
        headers: Extra headers.
        date: Wall-clock time for the Date header (None: now).
        close: Close the connection afterwards.

    Returns:
        The response.
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, headers, date=date, close=close)


_date_cache: tuple[int, bytes] = (0, b"")


def http_date(when: float | None = None) -> bytes:
    """Format a time as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``).

    Args:
        when: Seconds since the epoch; now when None. Fractions are truncated.

    Returns:
        The date as ASCII bytes.
    """
    global _date_cache
    now = int(time.time())
    second = now if when is None else int(when)
    cached_second, cached = _date_cache
    if second == cached_second:
        return cached
    value = email.utils.formatdate(second, usegmt=True).encode("ascii")
    if second == now:  # only the current second is worth caching
        _date_cache = (second, value)
    return value


def response_headers(response: Response) -> list[tuple[bytes, bytes]]:
    """Return every header of a response as sent: its own plus Content-Type, Date, Server, ...

    Args:
        response: The response.

    Returns:
        The header list (a new list).
    """
    headers = response.headers
    names = {name.lower() for name, _ in headers}
    out = list(headers)
    if b"content-type" not in names and response.body:
        out.append((b"content-type", _JSON))
    if b"date" not in names:
        out.append((b"date", http_date(response.date)))
    out.append((b"server", _SERVER))
    out.append((b"content-length", str(len(response.body)).encode("ascii")))
    if response.close:
        out.append((b"connection", b"close"))
    return out


def _encode(conn: h11.Connection, response: Response) -> bytes:
    head = h11.Response(
        status_code=response.status,
        headers=response_headers(response),
        reason=_REASONS.get(response.status, b""),
    )
    data = conn.send(head) or b""
    if response.body:
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    return data


#: Answers one request: a Response, or DROP to close the connection without answering.
Handler = Callable[[Request], Awaitable["Response | _Drop"]]


async def _send_error(
    stream: trio.abc.Stream, conn: h11.Connection, status: int, message: str
) -> None:
    """Answer a request we could not parse or accept, then give up on the connection."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    error = {413: "payload_too_large", 500: "server_error"}.get(status, "bad_request")
    response = json_response(status, {"error": error, "message": message}, close=True)
    try:
        await stream.send_all(_encode(conn, response))
        await _lingering_close(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        pass


async def _lingering_close(stream: trio.abc.Stream) -> None:
    """Half-close, then read and discard what the client still sends for a moment.

    Closing a socket with unread input makes the kernel send a reset, which can destroy the
    error response before the client reads it (e.g. a client still uploading a large body).
    """
    if isinstance(stream, trio.abc.HalfCloseableStream):
        await stream.send_eof()
    drained = 0
    with trio.move_on_after(_LINGER_SECONDS):
        while drained < _LINGER_BYTES:
            data = await stream.receive_some(_RECV_SIZE)
            if not data:
                break
            drained += len(data)


async def serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    """Serve HTTP/1.1 requests on one connection until either side closes it.

    Args:
        stream: The accepted connection.
        handler: Called once per request; returns a Response, or DROP to close the connection
            without answering.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    try:
        while True:
            request: h11.Request | None = None
            body = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if conn.they_are_waiting_for_100_continue:
                        await stream.send_all(
                            conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                            or b""
                        )
                    conn.receive_data(bytes(await stream.receive_some(_RECV_SIZE)))
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY:
                        await _send_error(stream, conn, 413, "request body too large")
                        return
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
                else:  # PAUSED cannot happen mid-request; be safe anyway
                    return
            assert request is not None
            result = await handler(
                Request(request.method, request.target, list(request.headers), bytes(body))
            )
            if isinstance(result, _Drop):
                return
            await stream.send_all(_encode(conn, result))
            if result.close or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        await _send_error(stream, conn, exc.error_status_hint, str(exc) or "malformed request")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:  # a bug in a handler must never take the server down
        log.exception("sandbox: unexpected error while serving a connection")
        await _send_error(stream, conn, 500, "internal error")
    finally:
        with trio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
