"""A pool of single-connection HTTP clients."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio


class ClientPool:
    """Single-connection HTTP clients, each lent to one request at a time.

    httpx's shared connection pool spends CPU in proportion to the number of
    concurrent requests on every request; with one connection per client and one
    client per concurrent request, the cost per request stays flat however many
    workers send. Clients are created on demand, at most ``limit`` of them, and
    kept (with their open connection) for the next request.

    Args:
        factory: Makes a new client.
        limit: Most clients, hence most open connections.
    """

    def __init__(self, factory: Callable[[], httpx.AsyncClient], limit: int) -> None:
        self._factory = factory
        self._free: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []
        self._slots = trio.Semaphore(limit)

    async def take(self) -> httpx.AsyncClient:
        """Return a client for one request; give it back with :meth:`give`."""
        try:
            # No scheduling round trip when a slot is free: the request that follows
            # is full of checkpoints anyway.
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        if self._free:
            return self._free.pop()
        try:
            client = self._factory()
        except BaseException:
            self._slots.release()
            raise
        self._all.append(client)
        return client

    def give(self, client: httpx.AsyncClient) -> None:
        """Return a client taken with :meth:`take`."""
        self._free.append(client)
        self._slots.release()

    async def aclose(self) -> None:
        """Close every client (and its connection)."""
        clients, self._all, self._free = self._all, [], []
        for client in clients:
            await client.aclose()
