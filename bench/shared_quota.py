"""Case 12: shards that share one quota: goodput and 429s of N shard processes at R.

`run.processes: N` starts N shards of the shipped config (`--shard k/N`), all sending with
one set of credentials to one sandbox started with `--rate-limit R --burst B`. They keep
together to the quota through the quota board in the state store (one shard measures
the quota while the others wait, then all send in slots claimed from the board).
Reported per cell, for a first run and a second one that starts from the quota the first
left (every row again, `--fresh`, against a fresh sandbox at the same address): updates/s
over R (the sandbox's, from its first to its last API request), the share of 429s,
whether every row was applied exactly once, and, beside it, one process
(`run.processes: 1`) on the same cell. Goals: >= 0.95 R, <= 1 % 429s.

    .venv/bin/python bench/shared_quota.py [--quick] [--json PATH]
"""

from __future__ import annotations

import sys
from typing import Any

import _common as c
from processes import config_with_processes

GOALS = {"goodput": 0.95, "share_429": 0.01}
#: (rate, burst, processes, rows)
CELLS = [(200, 20, 4, 6000), (200, 20, 2, 6000), (100, 10, 4, 3000)]
QUICK = [(200, 20, 4, 3000)]


def measure(rate: float, burst: float, processes: int, rows: int) -> dict[str, Any]:
    """The cell's first run, then a second run of every row against a fresh sandbox with the
    same quota at the same address: it starts from the quota the first one left."""
    runs = []
    with c.workdir() as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", rows)
        config = config_with_processes(wd, processes)
        port = None
        for which, extra in (("first", ()), ("second", ("--fresh",))):
            with c.Sandbox(rate_limit=rate, burst=burst, latency=0.02, seed_count=rows, port=port) as sandbox:
                port = sandbox.port
                run = c.run_etl(
                    ["run", str(config), "--log-format", "json", "--no-progress", *extra],
                    cwd=wd, env=c.sandbox_env(sandbox, csv_path), timeout=60 + 3 * rows / rate, name=f"{which}-run",
                )
                runs.append((run, sandbox._call("GET", "/sandbox/stats")))
    result = {"cell": f"R {rate:g}/s burst {burst:g}; {processes} processes; {rows} rows", "processes": processes, "rate": rate}
    for name, (run, stats) in zip(("first", "second"), runs, strict=True):
        updates = stats.pop("updates", {})
        goodput = c.api_rate(stats)
        result[name] = {
            "exit_code": run.get("exit_code"),
            "exactly_once": len(updates) == rows and all(count == 1 for count in updates.values()),
            "updates_per_s": goodput,
            "of_r": goodput / rate if goodput else None,
            "share_429": c.share_429(stats),
            "wall_s": run.get("wall_s"),
        }
    return result


def measure_all(*, quick: bool = False) -> list[dict[str, Any]]:
    """Each cell with its N shards, then with one process."""
    results = []
    for rate, burst, processes, rows in QUICK if quick else CELLS:
        for count in (processes, 1):
            result = measure(rate, burst, count, rows)
            results.append(result)
            for name in ("first", "second"):
                run = result[name]
                print(
                    f"  case 12: {result['cell']}, {name} run: {c.fmt(run['updates_per_s'], 1)}/s = {c.fmt(run['of_r'], 2)} R, "
                    f"429 {c.fmt(100 * (run['share_429'] or 0), 1)} %, exactly once: {run['exactly_once']}",
                    file=sys.stderr, flush=True,
                )
    return results


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["cell"], name, c.fmt(run["updates_per_s"], 1), c.fmt(run["of_r"], 2), f"{100 * (run['share_429'] or 0):.1f}%",
            "yes" if run["exactly_once"] else "NO", run["exit_code"],
            c.verdict(run["of_r"] is not None and run["of_r"] >= GOALS["goodput"] and (run["share_429"] or 0) <= GOALS["share_429"]),
        ]
        for r in results
        for name, run in (("first", r["first"]), ("second", r["second"]))
    ]
    return c.table("Case 12: shards sharing one quota", ["cell", "run", "updates/s", "/ R", "429s", "exactly once", "exit", "goal met"], rows)


def main(argv: list[str]) -> int:
    args = c.parser(__doc__ or "").parse_args(argv)
    results = measure_all(quick=args.quick)
    print(table(results))
    c.save_json(args.json, {"machine": c.machine(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
