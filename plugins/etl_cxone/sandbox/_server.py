"""Running the sandbox: the :class:`Sandbox` object and its server's lifecycle."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any, TypeVar

import httpx
import trio

from ._contacts import ensure_seeded, is_indexed
from ._handlers import Handlers
from ._http import serve_connection
from ._settings import SandboxSettings
from ._transport import mock_transport

__all__ = ["Sandbox", "open_sandbox", "run_sandbox_in_thread", "serve_forever"]

_T = TypeVar("_T")


class Sandbox(Handlers):
    """A sandbox: returned running by :func:`open_sandbox` and :func:`run_sandbox_in_thread`,
    or built directly to answer requests in-process through :meth:`transport`.

    Args:
        settings: Knobs; defaults when None.
        clock: Monotonic clock in seconds (default :func:`time.monotonic`); a constant one makes
            the sandbox's time move only with :meth:`advance_clock`.

    Attributes:
        url: Base URL while it listens, e.g. ``"http://127.0.0.1:41234"``; empty otherwise.
        settings: The live knobs; changes take effect for the next request.
    """

    def __init__(self, settings: SandboxSettings | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings, clock=clock)
        self.url = ""
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._loop_thread: int | None = None
        self._serving: trio.Nursery | None = None  # where the listener runs
        self._serve_scope: trio.CancelScope | None = None  # set while listening
        self._address = ("", 0)

    def stats(self) -> dict[str, Any]:
        """Return what the sandbox has seen since it started or since the last reset.

        Returns:
            A JSON-serialisable dict: ``requests`` (API requests: every request outside
            ``/oauth/token`` and ``/sandbox/``), ``by_status`` (of API responses,
            ``{"200": n, ...}``), ``token_requests``, ``tokens_issued``, ``max_concurrency``
            (most API requests in progress at once), ``updates`` (``{id: applied PATCHes}``),
            ``applied``, ``paths`` (sorted distinct raw request targets outside
            ``/sandbox/``, at most 10,000), ``first_request_at`` / ``last_request_at``
            (sandbox monotonic clock, seconds, or None), ``rate_limited`` and ``dropped``.
        """
        return self._in_loop(lambda: self._stats.as_dict())

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        """Return the current fields of a contact.

        Args:
            contact_id: The contact id (decoded, as in the URL path segment).

        Returns:
            ``{"contactId": contact_id, ...fields}`` as GET returns it, or None when the id
            does not exist.
        """
        return self._in_loop(partial(self._contact_now, contact_id))

    def directory_entries(self, kind: str, container: str | int) -> dict[str, dict[str, Any]]:
        """Return what an address book or do-not-call group holds.

        Args:
            kind: ``"dynamic"`` (entries upserted by ``externalId``), ``"standard"`` (entries
                by ``addressBookEntryId``) or ``"dnc"`` (records by phone number).
            container: The address book or DNC group id, as in the URL.

        Returns:
            ``{key: fields}``, each entry's fields as last written.
        """
        return self._in_loop(partial(self._directory.entries, kind, str(container)))

    def directory_writes(self) -> dict[tuple[str, str, str], int]:
        """Return how many times each entry or record was written.

        Returns:
            ``{(kind, container id, key): writes}``, with ``kind`` and ``key`` as in
            :meth:`directory_entries`.
        """
        return self._in_loop(lambda: dict(self._directory.writes))

    def reset_stats(self) -> None:
        """Forget all statistics (contacts keep their fields, tokens stay valid)."""
        self._in_loop(self._reset_stats)

    def transport(self) -> httpx.MockTransport:
        """Return an httpx transport that answers requests in-process, with no socket.

        ``httpx.AsyncClient(transport=sandbox.transport(), base_url="http://sandbox")``
        gets the same answers as over HTTP (the host part of the URL is ignored); a
        dropped connection (``drop_rate``) raises ``httpx.RemoteProtocolError``. It runs
        in the caller's Trio run, where ``latency`` sleeps.

        Returns:
            The transport.
        """
        return mock_transport(self._handle)

    def _in_loop(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` in the thread that serves requests (it owns the state)."""
        token = self._trio_token
        if token is None or threading.get_ident() == self._loop_thread:
            return fn()
        try:
            return trio.from_thread.run_sync(fn, trio_token=token)
        except trio.RunFinishedError:
            return fn()
        except RuntimeError:
            # Called from inside some other Trio run: cannot block; the copies are atomic.
            return fn()

    def refuse_connections(self, refuse: bool) -> None:
        """Stop listening (new connections are refused, open ones closed), or listen again.

        Args:
            refuse: True to close the port, False to open it again on the same address.
        """
        self._in_loop(partial(self._set_listening, not refuse))

    def _set_listening(self, listen: bool) -> None:
        if self._serving is None or listen == (self._serve_scope is not None):
            return
        if listen:
            self._serving.start_soon(self._serve, self._address)
        else:
            assert self._serve_scope is not None
            self._serve_scope.cancel()
            self._serve_scope = None

    async def _serve(
        self, address: tuple[str, int], *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.CancelScope() as scope:
            self._serve_scope = scope
            host, port = address
            await trio.serve_tcp(self._serve_stream, port, host=host, task_status=task_status)

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        await serve_connection(stream, self._handle)


@asynccontextmanager
async def open_sandbox(
    settings: SandboxSettings | None = None, *, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[Sandbox]:
    """Run a sandbox server in the current Trio run while the context is open.

    Args:
        settings: Knobs; defaults when None. ``port=0`` picks a free port.
        clock: The sandbox's monotonic clock (see :class:`Sandbox`).

    Yields:
        The running sandbox; ``sandbox.url`` is its base URL.
    """
    sandbox = Sandbox(settings, clock=clock)
    config = sandbox.settings
    if not is_indexed(config.seed_count):
        await trio.to_thread.run_sync(ensure_seeded, config.seed_count)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sandbox._serve, (config.host, config.port))
        port = listeners[0].socket.getsockname()[1]
        sandbox._serving, sandbox._address = nursery, (config.host, port)
        host = f"[{config.host}]" if ":" in config.host else config.host
        sandbox.url = f"http://{host}:{port}"
        sandbox._trio_token = trio.lowlevel.current_trio_token()
        sandbox._loop_thread = threading.get_ident()
        try:
            yield sandbox
        finally:
            sandbox._trio_token = None
            sandbox._loop_thread = None
            sandbox._serving = None
            nursery.cancel_scope.cancel()


@contextmanager
def run_sandbox_in_thread(settings: SandboxSettings | None = None) -> Iterator[Sandbox]:
    """Run a sandbox server from a background thread with its own Trio loop.

    Meant for synchronous code, e.g. a test that runs the ``etl`` command in a subprocess.
    ``stats()``, ``contact()`` and ``reset_stats()`` are safe to call from any thread.

    Args:
        settings: Knobs; defaults when None.

    Yields:
        The running sandbox.

    Raises:
        OSError: The server could not listen (e.g. the port is taken).
    """
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        with trio.CancelScope() as scope:
            state["scope"] = scope
            state["token"] = trio.lowlevel.current_trio_token()
            async with open_sandbox(settings) as sandbox:
                state["sandbox"] = sandbox
                started.set()
                await trio.sleep_forever()

    def runner() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            state["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=runner, name="cxone-sandbox", daemon=True)
    thread.start()
    started.wait()
    if "sandbox" not in state:
        thread.join()
        error = state.get("error")
        if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        raise error if error is not None else RuntimeError("the sandbox did not start")
    try:
        yield state["sandbox"]
    finally:
        try:
            state["token"].run_sync_soon(state["scope"].cancel)
        except trio.RunFinishedError:
            pass
        thread.join()
    error = state.get("error")
    if error is not None:
        raise RuntimeError("the sandbox server stopped with an error") from error


def serve_forever(settings: SandboxSettings) -> None:
    """Serve until Ctrl-C (or SIGTERM), printing the URL and credentials first.

    Args:
        settings: Knobs.
    """

    async def main() -> None:
        signals = [signal.SIGINT]
        if hasattr(signal, "SIGTERM"):
            signals.append(signal.SIGTERM)
        with trio.open_signal_receiver(*signals) as received:
            async with open_sandbox(settings) as sandbox:
                s = sandbox.settings
                print(
                    f"CXone sandbox listening on {sandbox.url} "
                    f"client_id={s.client_id} client_secret={s.client_secret} "
                    f"scope={s.required_scope} access_key_id={s.access_key_id} "
                    f"access_key_secret={s.access_key_secret} (Ctrl-C to stop)",
                    flush=True,
                )
                async for _ in received:
                    break

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise
