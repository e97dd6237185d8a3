"""Case 3: latency-bound sending (and case 4 on it: the naive client).

No rate limit; the sandbox answers each API request after 50 ms. With W workers the
ideal is W / 0.05 s updates/s, until the client runs out of CPU. Reported: updates/s
(from the sandbox's first to its last API request), the share of the ideal, the
client's CPU time per request (the etl process's RUSAGE_CHILDREN, start-up included)
and its CPU use (CPU seconds per wall second; 1.0 = one core busy). Targets: >= 90 %
of the ideal until CPU-bound; >= 1,000 updates/s at 128 workers.

    .venv/bin/python bench/latency.py [--quick] [--workers 8,32,128,256] [--seconds 15]
"""

from __future__ import annotations

import sys
from typing import Any

import _common as c

LATENCY = 0.05


def _figures(run: dict[str, Any], stats: dict[str, Any], workers: int) -> dict[str, Any]:
    goodput = c.api_rate(stats)
    ideal = workers / LATENCY
    return {
        "exit_code": run.get("exit_code"),
        "timed_out": run.get("timed_out"),
        "applied": stats["applied"],
        "requests": stats["requests"],
        "max_concurrency": stats.get("max_concurrency"),
        "goodput": goodput,
        "of_ideal": goodput / ideal if goodput else None,
        "cpu_us_per_request": 1e6 * run["cpu_s"] / stats["requests"] if stats["requests"] and "cpu_s" in run else None,
        "cpu_use": run["cpu_s"] / run["wall_s"] if run.get("wall_s") else None,
        "log_tail": run.get("log_tail"),
    }


def measure_one(workers: int, *, seconds: float, naive: bool) -> dict[str, Any]:
    ideal = workers / LATENCY
    rows = int(min(ideal, 1200) * seconds)
    result: dict[str, Any] = {"workers": workers, "ideal": ideal, "rows": rows}
    timeout = 6 * seconds + 60
    with c.workdir() as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", rows)
        with c.Sandbox(latency=LATENCY) as sandbox:
            run = c.run_etl(c.etl_run_args(workers=workers), cwd=wd, env=c.sandbox_env(sandbox, csv_path), timeout=timeout)
            result["etl"] = _figures(run, sandbox.stats(), workers)
        if naive:
            with c.Sandbox(latency=LATENCY) as sandbox:
                run = c.run_naive(csv_path, sandbox, workers=workers, cwd=wd, timeout=timeout)
                result["naive"] = _figures(run, sandbox.stats(), workers)
    return result


def measure(*, quick: bool = False, workers: list[int] | None = None, seconds: float | None = None, naive: bool = True) -> list[dict[str, Any]]:
    workers = workers or ([8, 128] if quick else [8, 32, 128, 256])
    seconds = seconds or (2.0 if quick else 15.0)
    results = []
    for w in workers:
        result = measure_one(w, seconds=seconds, naive=naive)
        results.append(result)
        print(f"  case 3: {w} workers: {c.fmt(result['etl']['goodput'])} updates/s", file=sys.stderr, flush=True)
    return results


def table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        etl, naive = r["etl"], r.get("naive")
        cpu_bound = etl["cpu_use"] is not None and etl["cpu_use"] >= 0.85
        if r["workers"] == 128:
            target, met = ">= 1,000/s", etl["goodput"] is not None and etl["goodput"] >= 1000
        else:
            target, met = ">= 90 % ideal", etl["of_ideal"] is not None and (etl["of_ideal"] >= 0.9 or cpu_bound)
        rows.append([
            r["workers"], c.fmt(r["ideal"]), c.fmt(etl["goodput"]), c.fmt(100 * etl["of_ideal"] if etl["of_ideal"] else None, 0, " %"),
            c.fmt(etl["cpu_us_per_request"]), c.fmt(etl["cpu_use"], 2), etl["max_concurrency"], target, c.verdict(met),
            c.fmt(naive["goodput"]) if naive else "-", c.fmt(naive["cpu_us_per_request"]) if naive else "-",
            c.fmt(etl["goodput"] / naive["goodput"], 2, "x") if naive and naive["goodput"] and etl["goodput"] else "-",
        ])
    return c.table(
        "Case 3: latency-bound (no rate limit, 50 ms per request); case 4: naive client on the same",
        ["workers", "ideal/s", "updates/s", "of ideal", "CPU us/req", "CPU use", "in flight", "target", "met",
         "naive/s", "naive CPU us/req", "ours/naive"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--workers", help="comma-separated worker counts (default 8,32,128,256)")
    p.add_argument("--seconds", type=float, help="rows = min(ideal, 1200/s) * seconds (default 15)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive client")
    args = p.parse_args(argv)
    workers = [int(x) for x in args.workers.split(",")] if args.workers else None
    results = measure(quick=args.quick, workers=workers, seconds=args.seconds, naive=not args.no_naive)
    print(table(results))
    c.save_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
