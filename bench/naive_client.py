"""A plain client, written the way a user would without the framework (the baseline).

One httpx.AsyncClient with a fixed connection pool, N asyncio worker tasks taking rows
from a queue, one PATCH per row; a worker that gets a 429 sleeps for its own
Retry-After (seconds or an HTTP date; 1 s when there is none) and tries again. No
shared pause, no rate learning, no retry budget, no validation.

Usage::

    python bench/naive_client.py CSV --base-url URL --workers N

Reads the client credentials from CXONE_CLIENT_ID / CXONE_CLIENT_SECRET and prints one
JSON line: rows, ok, failed, requests, throttled, duration_s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import email.utils
import json
import os
import time

import httpx

FIELDS = {"first_name": "firstName", "last_name": "lastName", "email": "email", "phone": "phone", "city": "city"}


def retry_after(value: str | None) -> float:
    """Seconds a Retry-After header asks to wait: a number of seconds or an HTTP date (1 s when absent)."""
    if value is None:
        return 1.0
    try:
        return float(value)
    except ValueError:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()

    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    with open(args.csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            queue.put_nowait(row)
    rows = queue.qsize()
    counts = {"ok": 0, "failed": 0, "requests": 0, "throttled": 0}

    limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    async with httpx.AsyncClient(base_url=args.base_url, limits=limits, timeout=30) as client:
        auth = (os.environ["CXONE_CLIENT_ID"], os.environ["CXONE_CLIENT_SECRET"])
        token = (await client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "contact:write"}, auth=auth)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        async def worker() -> None:
            while True:
                try:
                    row = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = {name: row[column].strip() for column, name in FIELDS.items() if row[column].strip()}
                while True:
                    counts["requests"] += 1
                    response = await client.patch(f"/api/v2/contacts/{row['contact_id']}", json=body, headers=headers)
                    if response.status_code == 429:
                        counts["throttled"] += 1
                        await asyncio.sleep(retry_after(response.headers.get("Retry-After")))
                        continue
                    counts["ok" if response.status_code < 300 else "failed"] += 1
                    break

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.workers)))
        duration = time.perf_counter() - started
    print(json.dumps({"rows": rows, **counts, "duration_s": round(duration, 3)}))


if __name__ == "__main__":
    asyncio.run(main())
