"""Case 1: goodput under a fixed rate limit (and case 4 on it: the naive client).

For each rate R and each Retry-After form, the sandbox limits the API to R requests/s
(burst R/10) and ``etl run`` sends R * --seconds rows with 64 workers. Reported: the
updates/s the sandbox applied (from its first to its last API request) divided by R,
the share of API requests answered 429, the pauses, and the client's CPU time per
request. Targets: >= 0.95 R and <= 3 % 429 with Retry-After in seconds; >= 0.90 R and
<= 5 % 429 without Retry-After.

    .venv/bin/python bench/rate_limit.py [--quick] [--rates 50,200,500] [--seconds 60]
"""

from __future__ import annotations

import sys
from typing import Any

import _common as c

TARGETS = {"seconds": (0.95, 0.03), "none": (0.90, 0.05)}


#: Goodput is also reported from this many seconds after the first request on (past the start-up).
STEADY_AFTER = 10.0


def measure_one(rate: float, retry_after: str, *, seconds: float, workers: int, naive: bool) -> dict[str, Any]:
    rows = int(rate * seconds)
    result: dict[str, Any] = {"rate": rate, "retry_after": retry_after, "rows": rows, "workers": workers}
    timeout = 4 * seconds + 60
    with c.workdir() as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", rows)
        with c.Sandbox(rate_limit=rate, burst=max(1.0, rate / 10), retry_after=retry_after) as sandbox:
            process = c.Run(c.etl_command(*c.etl_run_args(workers=workers)), cwd=wd, env=c.sandbox_env(sandbox, csv_path))
            steady_from = c.applied_after(sandbox, process, STEADY_AFTER)
            run = process.wait(timeout)
            stats = sandbox.stats()
        report = run.get("report", {})
        requests = report.get("requests", {})
        goodput = c.api_rate(stats)
        steady = None
        if steady_from is not None and stats["first_request_at"] is not None:
            span = stats["last_request_at"] - stats["first_request_at"] - STEADY_AFTER
            steady = (stats["applied"] - steady_from) / span if span > 1 else None
        result["etl"] = {
            "exit_code": run.get("exit_code"),
            "timed_out": run.get("timed_out"),
            "ok": report.get("records", {}).get("ok"),
            "applied": stats["applied"],
            "requests": stats["requests"],
            "goodput": goodput,
            "ratio": goodput / rate if goodput else None,
            "steady_ratio": steady / rate if steady else None,
            "share_429": c.share_429(stats),
            "pauses": requests.get("pauses"),
            "paused_s": requests.get("paused_s"),
            "final_rate_limit": requests.get("rate_limit_per_s"),
            "cpu_us_per_request": 1e6 * run["cpu_s"] / stats["requests"] if stats["requests"] and "cpu_s" in run else None,
            "log_tail": run.get("log_tail"),
        }
        if naive:
            with c.Sandbox(rate_limit=rate, burst=max(1.0, rate / 10), retry_after=retry_after) as sandbox:
                # The naive client can take several times as long: stop it after a while
                # and measure what it achieved until then.
                baseline = c.run_naive(csv_path, sandbox, workers=workers, cwd=wd, timeout=1.5 * seconds + min(15.0, seconds))
                stats = sandbox.stats()
            goodput = c.api_rate(stats)
            result["naive"] = {
                "exit_code": baseline.get("exit_code"),
                "timed_out": baseline.get("timed_out"),
                "applied": stats["applied"],
                "requests": stats["requests"],
                "goodput": goodput,
                "ratio": goodput / rate if goodput else None,
                "share_429": c.share_429(stats),
                "cpu_us_per_request": 1e6 * baseline["cpu_s"] / stats["requests"] if stats["requests"] and "cpu_s" in baseline else None,
                "finished": stats["applied"] >= rows,
            }
    return result


def measure(*, quick: bool = False, rates: list[float] | None = None, seconds: float | None = None, workers: int = 64,
            forms: tuple[str, ...] = ("seconds", "none"), naive: bool = True) -> list[dict[str, Any]]:
    rates = rates or ([200.0] if quick else [50.0, 200.0, 500.0])
    seconds = seconds or (3.0 if quick else 60.0)
    results = []
    for form in forms:
        for rate in rates:
            result = measure_one(rate, form, seconds=seconds, workers=workers, naive=naive)
            results.append(result)
            print(f"  case 1: R={rate:g} retry-after={form}: {_short(result)}", file=sys.stderr, flush=True)
    return results


def _short(result: dict[str, Any]) -> str:
    etl = result["etl"]
    return f"goodput {c.fmt(etl['ratio'], 3)} R, 429 {c.fmt(100 * etl['share_429'] if etl['share_429'] is not None else None, 2)} %"


def table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        etl, naive = r["etl"], r.get("naive")
        goal_ratio, goal_429 = TARGETS[r["retry_after"]]
        met = None
        if etl["ratio"] is not None and etl["share_429"] is not None:
            met = etl["ratio"] >= goal_ratio and etl["share_429"] <= goal_429
        rows.append([
            f"{r['rate']:g}",
            r["retry_after"],
            r["rows"],
            c.fmt(etl["goodput"], 1),
            c.fmt(etl["ratio"], 3),
            c.fmt(etl["steady_ratio"], 3),
            c.fmt(100 * etl["share_429"] if etl["share_429"] is not None else None, 2),
            etl["pauses"],
            c.fmt(etl["cpu_us_per_request"]),
            f">={goal_ratio} R, <={goal_429:.0%}",
            c.verdict(met),
            (c.fmt(naive["ratio"], 3) + ("" if naive["finished"] else "*")) if naive else "-",
            c.fmt(100 * naive["share_429"], 1) if naive and naive["share_429"] is not None else "-",
            c.fmt(etl["ratio"] / naive["ratio"], 2, "x") if naive and naive["ratio"] and etl["ratio"] else "-",
        ])
    return c.table(
        "Case 1: goodput under a rate limit (64 workers, burst R/10); case 4: naive client on the same",
        ["R/s", "Retry-After", "rows", "updates/s", "/R", f"/R after {STEADY_AFTER:g} s", "429 %", "pauses", "CPU us/req", "target", "met",
         "naive /R", "naive 429 %", "ours/naive"],
        rows,
    ) + ("\n  * the naive client was stopped after 1.5x the nominal time; figures up to then"
         if any(r.get("naive") and not r["naive"]["finished"] for r in results) else "")


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--rates", help="comma-separated rates (default 50,200,500)")
    p.add_argument("--seconds", type=float, help="rows = R * seconds (default 60)")
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--retry-after", default="seconds,none", help="forms to run (default seconds,none)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive client")
    args = p.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",")] if args.rates else None
    results = measure(quick=args.quick, rates=rates, seconds=args.seconds, workers=args.workers,
                      forms=tuple(args.retry_after.split(",")), naive=not args.no_naive)
    print(table(results))
    c.save_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
