"""The HTTP stack alone: CPU per API request of each layer a sink's request goes through.

Starts the CXone sandbox (no latency, no quota) and sends the same PATCH requests to it,
``--tasks`` at a time on keep-alive connections, in this process, four ways:

- ``h11 over trio``: a bare loop of h11 on a trio stream per task (the floor: no
  objects but h11's, no timeouts, no checks);
- ``etl (SinkConnections)``: what the ``cxone`` and ``http`` sinks send with
  (``etl_core.http.SinkConnections.request``: the client pool, the prebuilt headers,
  the deadline and byte budget, the one-connection transport);
- ``etl, httpx's transport``: the same, with API clients on httpx's own transport
  (httpcore) and sent through the client's ``send``: how the sinks sent before;
- ``etl's transport under httpx.AsyncClient.send``: a single-connection client per task
  on etl's transport, requests built and sent by the client;
- ``httpx (default transport)``: the same on httpx's own transport.

Reported: CPU microseconds per request (this process's, so the sandbox's cost does not
count), requests/s, and each way's CPU against the ``etl, httpx's transport`` way
measured in the same run. Every request must be answered 200. Each way runs ``--rounds``
times, alternating; the medians are printed.

    .venv/bin/python bench/http_stack.py [--requests 6000] [--tasks 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator

import _common as c
import h11
import httpx
import trio

from etl_core.http import ClientPool, Credential, Limits, SinkConnections
from etl_core.http._connection import ConnectionTransport

BODY = json.dumps({"firstName": "Ann", "email": "ann@example.com"}).encode()
Way = Callable[[str, str, Iterator[str], int], Awaitable[None]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _tasks(count: int, work: Callable[[], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(work)


async def bare_h11(url: str, token: str, ids: Iterator[str], tasks: int) -> None:
    host, port = url.removeprefix("http://").split(":")

    async def work() -> None:
        stream = await trio.open_tcp_stream(host, int(port))
        connection = h11.Connection(h11.CLIENT)
        for contact in ids:
            head = h11.Request(method="PATCH", target=f"/api/v2/contacts/{contact}", headers=[
                ("Host", f"{host}:{port}"), ("Authorization", f"Bearer {token}"),
                ("Content-Type", "application/json"), ("Content-Length", str(len(BODY))),
            ])
            await stream.send_all(connection.send(head) + connection.send(h11.Data(data=BODY)) + connection.send(h11.EndOfMessage()))
            status = 0
            while not isinstance(event := connection.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
            assert status == 200, status
            connection.start_next_cycle()
        await stream.aclose()

    await _tasks(tasks, work)


async def sink_connections(url: str, token: str, ids: Iterator[str], tasks: int, *, httpx_transport: bool = False) -> None:
    connections = SinkConnections(limits=Limits(30.0, 1 << 20), timeout=30.0, connect_timeout=10.0, max_connections=tasks)
    credential = Credential("Authorization", f"Bearer {token}", token)
    if httpx_transport:
        # API clients as they were before etl's transport: httpx's own, through the client's send.
        context, timeout = httpx.create_ssl_context(), httpx.Timeout(30.0, connect=10.0)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        connections._pool = ClientPool(lambda: httpx.AsyncClient(timeout=timeout, limits=limits, verify=context), tasks)

    async def work() -> None:
        for contact in ids:
            answer = await connections.request("PATCH", f"{url}/api/v2/contacts/{contact}", BODY, credential)
            assert answer.status == 200, answer.status

    try:
        await _tasks(tasks, work)
    finally:
        await connections.aclose()


async def sink_connections_on_httpx(url: str, token: str, ids: Iterator[str], tasks: int) -> None:
    await sink_connections(url, token, ids, tasks, httpx_transport=True)


def _client_way(transport: bool) -> Way:
    async def way(url: str, token: str, ids: Iterator[str], tasks: int) -> None:
        headers = httpx.Headers({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        context = httpx.create_ssl_context()  # one for all, as the sinks share one: each costs milliseconds

        async def work() -> None:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30.0, verify=context) as client:
                if transport:
                    client._transport = ConnectionTransport(context)
                for contact in ids:
                    request = client.build_request("PATCH", f"{url}/api/v2/contacts/{contact}", content=BODY)
                    response = await client.send(request, stream=True)
                    await response.aread()
                    assert response.status_code == 200, response.status_code

        await _tasks(tasks, work)

    return way


WAYS: dict[str, Way] = {
    "h11 over trio": bare_h11,
    "etl (SinkConnections)": sink_connections,
    "etl, httpx's transport": sink_connections_on_httpx,
    "etl's transport under httpx.AsyncClient.send": _client_way(transport=True),
    "httpx (default transport)": _client_way(transport=False),
}
BASELINE = "etl, httpx's transport"


def measure(requests: int, tasks: int, rounds: int) -> dict[str, dict[str, float]]:
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in WAYS}
    with c.workdir() as wd, c.Sandbox(seed_count=requests) as sandbox:
        path = c.write_contacts_csv(wd / "contacts.csv", requests)
        with open(path, newline="", encoding="utf-8") as file:
            contacts = [row["contact_id"] for row in csv.DictReader(file)]
        token = httpx.post(
            sandbox.url + "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": c.CLIENT_ID, "client_secret": c.CLIENT_SECRET},
        ).json()["access_token"]
        for _ in range(rounds):
            for name, way in WAYS.items():
                cpu, wall = _cpu(), time.perf_counter()
                trio.run(way, sandbox.url, token, iter(contacts), tasks)
                cpu, wall = _cpu() - cpu, time.perf_counter() - wall
                figures[name].append((1e6 * cpu / requests, requests / wall))
    result = {}
    for name, runs in figures.items():
        result[name] = {"cpu_us": statistics.median(r[0] for r in runs), "per_s": statistics.median(r[1] for r in runs)}
    for name in result:
        result[name]["of_baseline"] = result[name]["cpu_us"] / result[BASELINE]["cpu_us"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=6000)
    p.add_argument("--tasks", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    result = measure(args.requests, args.tasks, args.rounds)
    print(f"{args.requests:,} PATCH requests, {args.tasks} at a time, median of {args.rounds} rounds")
    print(f"| way | CPU us / request | requests/s | CPU / {BASELINE} |")
    print("|---|---|---|---|")
    for name, figures in result.items():
        print(f"| {name} | {figures['cpu_us']:.0f} | {figures['per_s']:,.0f} | {figures['of_baseline']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
