"""Batch mode: dynamic address-book entries per second at a quota of R requests/s.

The shipped ``configs/cxone-address-book.yaml`` (batches of 500, per-entry results)
loads N rows, 2 % of them bad (``--bad-share``) and scattered (half with a bad email address, refused
entry by entry; half with a bad phone number, which refuses its whole request and is
split down to the bad row), into the sandbox limited to R requests per second. Reported:
entries/s (good entries upserted, from the run's start to its end as the report says),
requests, batch splits, and the checks of the batch contract: every good row upserted
exactly once, every bad row rejected with its own error, no good row failed. One
``PATCH`` per row at the same quota goes at most R rows/s.

The sandbox runs in this process (a thread on 127.0.0.1) so that its entries can be
read; the ``etl`` command runs in a subprocess.

    .venv/bin/python bench/batch.py [--rows 10000] [--rate 10] [--bad-share 0.02] [--json out.json]
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import _common as c

from etl_cxone.sample_data import BAD_EMAIL, BAD_PHONE, HEADER, bulk_rows
from etl_cxone.sandbox import SandboxSettings, run_sandbox_in_thread

CONFIG = c.ROOT / "configs" / "cxone-address-book.yaml"
OUT = Path("out") / "cxone-address-book"
BOOK_ID = "42"


def measure(rows: int, rate: float, bad_share: float = 0.02) -> dict[str, Any]:
    data = bulk_rows(rows, bad_share=bad_share)
    bad_email = {i + 2 for i, row in enumerate(data) if row["email"] == BAD_EMAIL}
    bad_phone = {i + 2 for i, row in enumerate(data) if row["phone"] == BAD_PHONE}
    good = {row["contact_id"] for i, row in enumerate(data) if i + 2 not in bad_email | bad_phone}
    with c.workdir() as wd, run_sandbox_in_thread(SandboxSettings(rate_limit=rate, seed_count=10)) as sandbox:
        csv_path = wd / "people.csv"
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=HEADER)
            writer.writeheader()
            writer.writerows(data)
        settings = sandbox.settings
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(
            CXONE_ISSUER=sandbox.url,
            CXONE_CLIENT_ID=settings.client_id,
            CXONE_CLIENT_SECRET=settings.client_secret,
            CXONE_ACCESS_KEY_ID=settings.access_key_id,
            CXONE_ACCESS_KEY_SECRET=settings.access_key_secret,
            CXONE_ADDRESS_BOOK_ID=BOOK_ID,
            CONTACTS_CSV=str(csv_path),
            NO_PROXY="127.0.0.1,localhost",
        )
        run = c.run_etl(["run", str(CONFIG), "--log-format", "json", "--no-progress"], cwd=wd, env=env, timeout=3600)
        report = json.loads((wd / OUT / "report.json").read_text(encoding="utf-8"))
        rejects_file = wd / OUT / "rejects.csv"
        rejects = {}
        if rejects_file.exists():  # written only when a row is rejected
            with open(rejects_file, newline="", encoding="utf-8") as f:
                rejects = {int(row["_line"]): row["_reason"] for row in csv.DictReader(f)}
        entries = sandbox.directory_entries("dynamic", BOOK_ID)
        writes = sandbox.directory_writes()
    duration = report.get("duration_s") or 0.0
    requests = report["requests"]
    own_errors = all(
        "invalid email address" in rejects.get(line, "") for line in bad_email
    ) and all("phone is not a phone number" in rejects.get(line, "") for line in bad_phone)
    return {
        "rows": rows,
        "rate": rate,
        "bad_share": bad_share,
        "exit_code": run.get("exit_code"),
        "duration_s": duration,
        "entries_per_s": len(entries) / duration if duration else None,
        "requests": requests.get("attempts"),
        "batch_splits": requests.get("batch_splits"),
        "throttled": requests.get("throttled"),
        "good_upserted_once": set(entries) == good and set(writes.values()) == {1},
        "bad_rejected_with_own_error": set(rejects) == bad_email | bad_phone and own_errors,
        "good_failed": len(set(rejects) - bad_email - bad_phone),
        "log_tail": run.get("log_tail"),
    }


def table(results: list[dict[str, Any]]) -> str:
    """The figures of :func:`measure` runs, one row each."""
    first = results[0]
    return c.table(
        f"batch mode: {first['rows']:,} rows, batches of 500, quota {first['rate']:g} requests/s",
        ["bad rows", "entries/s", "PATCH ceiling", "duration s", "requests", "requests/s", "splits", "429s",
         "good once", "bad own error", "good failed"],
        [
            [
                f"{result['bad_share']:.0%}",
                c.fmt(result["entries_per_s"], 1),
                c.fmt(result["rate"], 1),
                c.fmt(result["duration_s"], 1),
                result["requests"],
                c.fmt(result["requests"] / result["duration_s"] if result["duration_s"] else None, 1),
                result["batch_splits"],
                result["throttled"],
                c.verdict(result["good_upserted_once"]),
                c.verdict(result["bad_rejected_with_own_error"]),
                result["good_failed"],
            ]
            for result in results
        ],
    )


def main() -> int:
    parser = c.parser(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the file (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=10.0, help="the sandbox's quota, requests/s (default: %(default)s)")
    parser.add_argument("--bad-share", type=float, default=0.02, help="share of bad rows (default: %(default)s)")
    args = parser.parse_args()
    if args.quick:
        args.rows = min(args.rows, 1_000)
    result = measure(args.rows, args.rate, args.bad_share)
    print(table([result]))
    if result["log_tail"]:
        print(result["log_tail"], file=sys.stderr)
    c.save_json(args.json, result)
    ok = result["good_upserted_once"] and result["bad_rejected_with_own_error"] and result["good_failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
