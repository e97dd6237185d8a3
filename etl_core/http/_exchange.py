"""One HTTP request and its whole answer, within a deadline and a byte budget.

httpx bounds each read (``timeout``), but neither the whole exchange nor the size of
the answer: a server trickling a byte a second could hold a request forever, and an
endless or highly compressed body (a "gzip bomb") could fill the memory. Here the
answer is streamed, its body decoded by hand so that decoded bytes are counted as they
come, and the whole exchange runs under one deadline.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from .._errors import EtlError, FatalError, TransientError

#: The content codings the clients accept (``Accept-Encoding``); the only one decoded here.
ACCEPT_ENCODING = "gzip"
# Closing a response only drops its connection; never let a stuck one hold the caller.
_CLOSE_TIMEOUT = 5.0
_IDENTITY = frozenset({"", "identity"})
_GZIP = frozenset({"gzip", "x-gzip"})


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """What one exchange may cost.

    Attributes:
        deadline: Seconds from sending the request to the last byte of the answer.
        max_bytes: Most bytes of body, counted after decoding.
    """

    deadline: float
    max_bytes: int


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, its body read whole.

    Attributes:
        status: The status code.
        reason_phrase: The status line's reason phrase.
        headers: The headers.
        body: The body, decoded from its content coding; empty when ``unreadable``.
        unreadable: Why the body could not be decoded, or ``""``.
        sent_at: When the request's headers started on the wire (``trio.current_time()``),
            after any wait for a connection; None when the transport does not say.
    """

    status: int
    reason_phrase: str
    headers: httpx.Headers
    body: bytes
    unreadable: str = ""
    sent_at: float | None = None

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """Return the body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


#: Sends a request and returns its response with the body still to be read, as
#: ``client.send(request, stream=True)`` does.
Send = Callable[[httpx.Request], Awaitable[httpx.Response]]


async def exchange(
    client: httpx.AsyncClient,
    request: httpx.Request,
    limits: Limits,
    *,
    what: str,
    oversize: type[EtlError],
    send: Send | None = None,
) -> Answer:
    """Send ``request`` and read its answer whole, within ``limits``.

    Args:
        client: The client to send with (redirects are not followed).
        request: The request (its ``extensions`` get the ``trace`` callback).
        limits: The deadline and the byte budget.
        what: The start of every error message (e.g. ``"token request to URL: "``), or ``""``.
        oversize: The error for an answer over the byte budget.
        send: Sends the request in place of ``client.send(request, stream=True)``, e.g.
            straight to the client's transport; its answer's body is still to be read.

    Returns:
        The answer; an undecodable body is an empty body with ``unreadable`` set.

    Raises:
        TransientError: No complete answer within the deadline, a read or write timed
            out, or the connection failed.
        FatalError: The server's certificate could not be verified.
        EtlError: ``oversize``, when the body is larger than ``limits.max_bytes``.
    """
    sent_at: float | None = None
    extensions = request.extensions  # the request's own dict, which httpcore reads too

    async def trace(event: str, info: dict[str, Any]) -> None:
        # The moment the request leaves, not the moment it was handed over: opening a
        # connection can take longer than a rate limit's spacing.
        nonlocal sent_at
        if event.endswith("send_request_headers.started"):
            sent_at = trio.current_time()
            # Nothing later is wanted: spare httpcore the calls for the other events.
            extensions.pop("trace", None)

    extensions["trace"] = trace
    with trio.move_on_after(limits.deadline):
        try:
            response = await (send(request) if send is not None else client.send(request, stream=True))
            try:
                body, unreadable = await _read_body(response, limits.max_bytes, what, oversize)
            finally:
                if not response.is_closed:  # reading the whole body closed it already
                    with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                        await response.aclose()
        except httpx.TransportError as exc:
            raise _transport_error(exc, request, what) from None
        return Answer(response.status_code, response.reason_phrase, response.headers, body, unreadable, sent_at)
    raise TransientError(f"{what}no complete answer within {limits.deadline:g} s (request_timeout)")


async def _read_body(response: httpx.Response, max_bytes: int, what: str, oversize: type[EtlError]) -> tuple[bytes, str]:
    """Read and decode the body, counting raw and decoded bytes against ``max_bytes``."""

    def too_large() -> EtlError:
        return oversize(f"{what}answer larger than {max_bytes:,} bytes (max_response_bytes)")

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large()
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if coding in _GZIP else None
    unreadable = "" if decoder is not None or coding in _IDENTITY else "in a content coding that was not asked for"
    parts: list[bytes] = []
    received = decoded = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise too_large()
        if unreadable:
            continue  # read on, within the budget, so the connection can be reused
        if decoder is not None:
            try:
                # Never more than one byte over the budget, however much the chunk expands.
                chunk = decoder.decompress(chunk, max_bytes - decoded + 1)
            except zlib.error:
                unreadable, parts = "not valid gzip", []
                continue
        decoded += len(chunk)
        if decoded > max_bytes:
            raise too_large()
        parts.append(chunk)
    if decoder is not None and received and not decoder.eof and not unreadable:
        unreadable, parts = "truncated gzip", []
    return b"".join(parts), unreadable


def _transport_error(exc: httpx.TransportError, request: httpx.Request, what: str) -> EtlError:
    """Classify a failure to exchange: a certificate that cannot be verified is fatal."""
    problem = _certificate_problem(exc)
    if problem is not None:
        # Retrying cannot help, and every retry would be the same refusal.
        return FatalError(f"{what}certificate verify failed for {request.url.host} ({problem})")
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{what}timeout ({type(exc).__name__})")
    # e.g. RemoteProtocolError when the server closes the connection mid-request.
    return TransientError(f"{what}connection error ({type(exc).__name__})")


def _certificate_problem(exc: BaseException) -> str | None:
    """Return why the certificate was refused, when ``exc`` comes from that."""
    cause: BaseException | None = exc
    for _ in range(8):  # httpx wraps httpcore's error, which wraps ssl's
        if cause is None:
            return None
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or "certificate verify failed"
        cause = cause.__cause__ or cause.__context__
    return None
