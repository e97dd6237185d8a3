"""Shared helpers of the sandbox tests: a sandbox on 127.0.0.1, clients and raw exchanges."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import trio

from etl_cxone.sandbox import Sandbox, SandboxSettings, contact_id, open_sandbox

CID = contact_id(7)
IMF_FIXDATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
CREDENTIALS = ("sandbox-client", "sandbox-secret")


def settings(**kwargs: Any) -> SandboxSettings:
    """Settings with few seeded contacts (quick to start) and a fixed random seed."""
    kwargs.setdefault("seed_count", 1000)
    kwargs.setdefault("random_seed", 1)
    return SandboxSettings(**kwargs)


@pytest.fixture
async def sandbox():
    async with open_sandbox(settings()) as sb:
        yield sb


@pytest.fixture
async def client(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as c:
        yield c


async def get_token(client: httpx.AsyncClient, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    r = await client.post("/oauth/token", data=data, auth=CREDENTIALS)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def authed(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.headers["Authorization"] = f"Bearer {await get_token(client)}"
    return client


def host_port(sandbox: Sandbox) -> tuple[str, int]:
    host, port = sandbox.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def raw_exchange(sandbox: Sandbox, data: bytes) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    stream = await trio.open_tcp_stream(*host_port(sandbox))
    async with stream:
        await stream.send_all(data)
        chunks = []
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


@contextmanager
def served_from_the_command_line(*options: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """Run ``python -m etl_cxone.sandbox --port 0 ...``; yield the process, its URL and first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl_cxone.sandbox", "--port", "0", "--seed-count", "10", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        yield proc, match.group(1), line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
