"""Helpers of the etl_core.http tests: a sandbox answering in-process, its requests recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from etl_cxone.sandbox import Sandbox, SandboxSettings

#: The sandbox's URL as these tests reach it (the in-process transport ignores the host).
URL = "http://sandbox"
CLIENT = ("sandbox-client", "sandbox-secret")


class Recorder(httpx.AsyncBaseTransport):
    """Hands every request to the sandbox in-process and keeps a copy of it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.requests: list[httpx.Request] = []
        self.answers: list[bytes] = []
        self._inner = sandbox.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        self.answers.append(body)
        return httpx.Response(response.status_code, headers=response.headers, stream=httpx.ByteStream(body))

    def paths(self) -> list[str]:
        return [request.url.raw_path.decode() for request in self.requests]


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(SandboxSettings(seed_count=100))


@pytest.fixture
def recorder(sandbox: Sandbox) -> Recorder:
    return Recorder(sandbox)


@pytest.fixture
async def client(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=recorder) as http:
        yield http
