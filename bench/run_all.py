"""Run every benchmark, one at a time, and print all the tables.

    .venv/bin/python bench/run_all.py            # the full set: about 50 minutes
    .venv/bin/python bench/run_all.py --quick    # tiny sizes: a smoke check
    .venv/bin/python bench/run_all.py --only 1,3 --json results.json

Cases: 1 goodput under a rate limit, 2 a limit that moves, 3 latency-bound,
4 the naive client (inside cases 1, 3 and 8), 5 engine speed, 6 memory, 7 start-up,
8 rate control against the sandbox's quota shapes, 9 run.processes 1 vs 2 (CPU-bound),
10 batch mode (address-book entries/s, 2 % and no bad rows), 12 shards sharing one quota.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _common as c
import batch
import engine
import latency
import moving_limit
import processes
import rate_limit
import rate_sandbox
import shared_quota
import startup


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated case numbers (default: all)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive client (case 4)")
    p.add_argument("--no-10m", action="store_true", help="skip the 10M-row dry run of case 6")
    args = p.parse_args(argv)
    only = {int(x) for x in args.only.split(",")} if args.only else {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12}
    naive = not args.no_naive and 4 in only
    results: dict[str, Any] = {"machine": c.machine(), "quick": args.quick}
    tables: list[str] = []
    started = time.monotonic()
    m = results["machine"]
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}", file=sys.stderr, flush=True)

    if 7 in only:
        results["startup"] = startup.measure(quick=args.quick)
        tables.append(startup.table(results["startup"]))
    if 1 in only or (4 in only and 3 not in only):
        results["rate_limit"] = rate_limit.measure(quick=args.quick, naive=naive)
        tables.append(rate_limit.table(results["rate_limit"]))
    if 2 in only:
        results["moving_limit"] = moving_limit.measure(quick=args.quick)
        tables.append(moving_limit.table(results["moving_limit"]))
    if 3 in only:
        results["latency"] = latency.measure(quick=args.quick, naive=naive)
        tables.append(latency.table(results["latency"]))
    if 8 in only:
        results["rate_sandbox"] = rate_sandbox.measure(quick=args.quick, naive=naive)
        tables.append(rate_sandbox.table(results["rate_sandbox"]))
    if 9 in only:
        results["processes"] = processes.measure(quick=args.quick)
        tables.append(processes.table(results["processes"]))
    if 10 in only:
        rows = 1_000 if args.quick else 10_000
        results["batch"] = [batch.measure(rows, 10.0, bad_share) for bad_share in (0.02, 0.0)]
        tables.append(batch.table(results["batch"]))
    if 12 in only:
        results["shared_quota"] = shared_quota.measure_all(quick=args.quick)
        tables.append(shared_quota.table(results["shared_quota"]))
    if 5 in only or 6 in only:
        results["engine"] = engine.measure(quick=args.quick, big=6 in only and not args.no_10m)
        tables.append(engine.table(results["engine"]))

    results["elapsed_s"] = round(time.monotonic() - started, 1)
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}; took {results['elapsed_s']:.0f} s"
          + (" (--quick: sizes too small for the targets)" if args.quick else ""))
    for text in tables:
        print()
        print(text)
    c.save_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
